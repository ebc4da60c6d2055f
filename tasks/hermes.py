"""Runbook steps 5-6, shared part: Hermes Agent (PyPI `hermes-agent`) in its own virtualenv,
and the houses it runs as (the backend and each wizard: one HERMES_HOME and one unit each).

The virtualenv is installed from files/hermes-requirements.txt with `--require-hashes` into a
folder named after the lock file's sha256: a wheel with a wrong hash stops the install before
anything else moves (the running units keep their own virtualenv), and a new lock makes a new
folder, which changes the units' ExecStart= and so restarts them.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.operations import files, server

from facts.markers import Marker
from facts.owners import NotOwnedBy
from phoenix import dispatch
from phoenix.errors import PhoenixError
from phoenix.secrets import read_secret
from tasks._ops import pip_index_args, secret_file
from tasks._units import run_unit

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "backend_host",
    "backend_port",
    "dispatch_events",
    "hermes_find_links",
    "hermes_hardening",
    "hermes_index_url",
    "hermes_install_dir",
    "hermes_model_base_url",
    "hermes_model_context_length",
    "hermes_model_name",
    "hermes_requirements",
    "hermes_root",
    "hermes_tirith_enabled",
    "hermes_user",
    "hermes_version",
    "hermes_watchdog_seconds",
    "secrets_dir",
)

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"


def _lock() -> Path:
    """The hash-locked requirements file (hermes_requirements; relative to the repository)."""
    path = REPO / Path(host.data.hermes_requirements).expanduser()
    if not path.is_file():
        raise DeployError(
            f"hermes_requirements {path} does not exist: point it at a "
            "requirements file with --hash lines (files/hermes-requirements.txt)"
        )
    return path


def _lock_sha256() -> str:
    return hashlib.sha256(_lock().read_bytes()).hexdigest()


def venv_dir() -> str:
    """The virtualenv of this lock file (bin/hermes)."""
    return posixpath.join(host.data.hermes_install_dir, f"venv-{_lock_sha256()[:16]}")


def house_home(name: str) -> str:
    """The HERMES_HOME of a house (`backend` or a wizard's name)."""
    return posixpath.join(host.data.hermes_root, name)


def _secret(name: str) -> str:
    try:
        return read_secret(name, folder=host.data.secrets_dir)
    except PhoenixError as exc:
        raise DeployError(str(exc)) from None


def _index_args() -> list[str | QuoteString]:
    return pip_index_args(host.data.hermes_find_links, host.data.hermes_index_url)


BACKGROUND = "phoenix-hermes-install.service"


def _install_paths() -> tuple[str, str, str]:
    """(the lock file on the host, the virtualenv, its marker: the lock's sha256 once complete)."""
    digest = _lock_sha256()
    venv = venv_dir()
    return (
        posixpath.join(host.data.hermes_install_dir, f"requirements-{digest[:16]}.txt"),
        venv,
        posixpath.join(venv, ".phoenix-installed"),
    )


def _lock_on_host() -> None:
    data = host.data
    lock, _, _ = _install_paths()
    files.directory(
        name=f"Ensure {data.hermes_install_dir} exists",
        path=data.hermes_install_dir,
        user="root",
        group="root",
        mode="0755",
    )
    files.put(
        name="Ensure the hash-locked Hermes requirements are on the host",
        src=str(_lock()),
        dest=lock,
        user="root",
        group="root",
        mode="0644",
    )


def _install_command() -> str:
    """The install (a shell line): a fresh venv from the lock, the marker written last; on a
    failure the venv removed and a line saying what failed.
    The system's pip (python3-pip) installs into a venv made without one of its own (its
    ensurepip would unpack and compile a pip nobody runs), without compiling file by file;
    then compileall writes the same .pyc on every core. A file that does not compile is left
    without its .pyc, as pip leaves it."""
    data = host.data
    lock, venv, marker = _install_paths()
    refusal = (
        f"installing hermes-agent {data.hermes_version} from {lock} failed (a wheel "
        f"missing or not matching its pinned sha256?): the running houses keep their "
        f"virtualenv; see pip's message above"
    )
    q = QuoteString
    python = q(f"{venv}/bin/python")
    return StringCommand(
        "rm",
        "-rf",
        q(venv),
        "&&",
        "python3",
        "-m",
        "venv",
        "--without-pip",
        q(venv),
        "&&",
        "python3",
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--isolated",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--require-hashes",
        "--only-binary=:all:",
        "--no-compile",
        *_index_args(),
        "-r",
        q(lock),
        "&&",
        "{",
        python,
        "-m",
        "compileall",
        "-q",
        "-j0",
        q(f"{venv}/lib"),
        ">/dev/null",
        "||",
        "true;",
        "}",
        "&&",
        "echo",
        _lock_sha256(),
        ">",
        q(marker),
        "||",
        "{",
        "rm",
        "-rf",
        q(venv),
        ";",
        "echo",
        q(refusal),
        ">&2;",
        "exit",
        "1;",
        "}",
    ).get_raw_value()


def start_hermes_install() -> None:
    """Start the Hermes install (pip) in the background, as the transient unit BACKGROUND, so
    it runs beside the package install; install_hermes waits for it, and installs in the
    foreground what it did not finish. Needs python3-pip and python3-venv. Call it inside a
    @deploy (install_base calls it between its two package operations)."""
    _lock_on_host()
    _, venv, marker = _install_paths()
    server.shell(
        name=f"Start the Hermes install into {venv} beside the package install",
        commands=[
            f"systemctl -q is-active {BACKGROUND} || systemd-run --quiet --collect "
            f"--unit={BACKGROUND} --description='Phoenix: install Hermes Agent' "
            f"/bin/sh -c {shlex.quote(_install_command())}"
        ],
        _if=lambda: host.get_fact(Marker, path=marker) != _lock_sha256(),
    )


@deploy("Install Hermes Agent")
def install_hermes() -> None:
    data = host.data
    user = data.hermes_user
    server.group(name=f"Ensure the {user} group exists", group=user, system=True)
    server.user(
        name=f"Ensure the {user} system user exists (the backend and wizards run as it)",
        user=user,
        group=user,
        home=data.hermes_root,
        shell="/usr/sbin/nologin",
        system=True,
        create_home=False,
    )
    files.directory(
        name=f"Ensure {data.hermes_root} exists, {user}'s own",
        path=data.hermes_root,
        user=user,
        group=user,
        mode="0750",
    )
    _lock_on_host()
    _, venv, marker = _install_paths()
    digest = _lock_sha256()
    # Imperative by nature (pip); gated on the marker written only after a complete install.
    # The background install (start_hermes_install) is waited for first; what it left
    # undone (cut off, failed, never started) is installed here, its errors shown.
    server.shell(
        name=f"Install hermes-agent {data.hermes_version} into {venv} (hashes required)",
        commands=[
            f"while systemctl -q is-active {BACKGROUND}; do sleep 0.3; done; "
            f'[ "$(head -n1 {shlex.quote(marker)} 2>/dev/null)" = {digest} ] || '
            f"{{ {_install_command()}; }}"
        ],
        _if=lambda: host.get_fact(Marker, path=marker) != digest,
    )


def _env_file(*, api_server: bool, webhook: dispatch.House | None) -> str:
    """A house's .env: its secrets (the model provider's key, the API server's key, its
    webhook route's secret, which Hermes reads only with WEBHOOK_ENABLED)."""
    lines = [f"PHOENIX_MODEL_API_KEY={_secret('hermes_model_api_key')}"]
    if api_server:
        lines.append(f"API_SERVER_KEY={_secret('hermes_api_server_key')}")
    if webhook:
        secret = dispatch.house_secret(_secret(dispatch.SECRET_NAME), webhook.name)
        lines += ["WEBHOOK_ENABLED=true", f"WEBHOOK_SECRET={secret}"]
    return "\n".join(lines) + "\n"


def run_house(
    name: str,
    *,
    unit: str,
    description: str,
    api_server: bool,
    running: bool = True,
    webhook: dispatch.House | None = None,
) -> None:
    """One Hermes house: its HERMES_HOME, config.yaml, .env, unit; running, enabled, and
    restarted when any of them changed (`running=False`: installed, stopped and disabled, as
    on an unpromoted standby). Started with the other houses by start_together (the last
    house's @deploy calls it: run_wizards). Call it inside a @deploy."""
    data = host.data
    user, home, venv = data.hermes_user, house_home(name), venv_dir()
    files.directory(
        name=f"Ensure the HERMES_HOME of {name} exists ({home}, 0700)",
        path=home,
        user=user,
        group=user,
        mode="0700",
    )
    # A restored house comes with the old host's numeric owners; asked when it runs, after
    # the restore of this converge.
    server.shell(
        name=f"Ensure everything in the HERMES_HOME of {name} is {user}'s",
        commands=[
            StringCommand(
                "chown", "-R", "--no-dereference", QuoteString(f"{user}:{user}"), QuoteString(home)
            )
        ],
        _if=lambda: host.get_fact(NotOwnedBy, path=home, user=user) is not None,
    )
    config = files.template(
        name=f"Ensure the Hermes config.yaml of {name} is current",
        src=str(TEMPLATES / "hermes-config.yaml.j2"),
        dest=posixpath.join(home, "config.yaml"),
        user=user,
        group=user,
        mode="0600",
        house=name,
        model_base_url=data.hermes_model_base_url,
        model_name=data.hermes_model_name,
        model_context_length=data.hermes_model_context_length,
        watchdog=data.hermes_watchdog_seconds,
        webhook=webhook,
        webhook_events=list(data.dispatch_events),
    )
    env = secret_file(
        name=f"Ensure the .env of {name} holds its secrets (0600)",
        content=_env_file(api_server=api_server, webhook=webhook),
        dest=posixpath.join(home, ".env"),
        user=user,
        group=user,
        mode="0600",
    )
    environment = {"TIRITH_ENABLED": "true" if data.hermes_tirith_enabled else "false"}
    if api_server:
        environment.update(
            API_SERVER_ENABLED="true",
            API_SERVER_HOST=data.backend_host,
            API_SERVER_PORT=str(data.backend_port),
        )
    service = files.template(
        name=f"Ensure the {unit} unit is current",
        src=str(TEMPLATES / "hermes-house.service.j2"),
        dest=f"/etc/systemd/system/{unit}.service",
        user="root",
        group="root",
        mode="0644",
        description=description,
        venv=venv,
        home=home,
        hermes_user=user,
        environment=environment,
        watchdog=data.hermes_watchdog_seconds,
        hermes_hardening=data.hermes_hardening,
    )
    # Not restarted right after a first start: a gateway takes seconds to come up.
    run_unit(
        f"{unit}.service",
        files=[service],
        restart_for=[service, config, env],
        running=running,
        what=f"{unit} unit",
        together=True,
        running_name=f"Ensure {unit} is running and enabled"
        if running
        else f"Ensure {unit} is stopped until promotion (standby)",
        restart_name=f"Restart {unit} for its new unit, config or secrets",
    )

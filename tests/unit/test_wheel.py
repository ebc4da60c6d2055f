"""The production path as the README gives it: a wheel built from the repository, installed
under its name (`phoenix-forge`) into an empty venv from the hash-checked runtime lock, runs
`phoenix check` against a project folder, and says plainly when there is none."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from phoenix.settings import REPO


def run(*args: str, cwd: Path | None = None, env: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_wheel_in_an_empty_venv_runs_check_on_a_project_folder(tmp_path):
    # built from a copy: a build writes build/ and *.egg-info beside its sources
    source = tmp_path / "src"
    shutil.copytree(REPO / "phoenix", source / "phoenix",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source / "pyproject.toml")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps",
                "-w", str(tmp_path / "dist"), str(source))
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("phoenix_forge-")
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # the README's two lines: the runtime lock (PyPI, every hash checked), then the wheel
    locked = run(*pip, "install", "--require-hashes", "--no-deps", "-r",
                 str(REPO / "requirements-runtime.lock"))
    assert locked.returncode == 0, locked.stderr[-2000:]
    assert run(*pip, "install", "--no-deps", str(wheel)).returncode == 0
    shown = run(*pip, "show", "phoenix-forge")
    assert "Name: phoenix-forge" in shown.stdout, shown.stdout + shown.stderr
    # no lint tool or contract validator came with it
    listed = run(*pip, "list", "--format=freeze").stdout.lower()
    assert "pyinfra==" in listed
    assert not any(tool in listed for tool in ("ruff==", "mypy==", "openapi-schema-validator=="))
    phoenix = str(venv / "bin" / "phoenix")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PHOENIX_", "DIGITALOCEAN", "CLOUDFLARE", "PYTHONPATH"))}
    env["HOME"] = str(tmp_path / "home")   # no operator's secrets or state of this machine
    # outside a project folder: one line that says how to name one
    elsewhere = run(phoenix, "check", cwd=tmp_path, env=env)
    assert elsewhere.returncode != 0
    assert "no Phoenix project folder at or above" in elsewhere.stderr, elsewhere.stderr
    # in one (this repository, a clone of it) and with --project: `check` does its work,
    # naming what is not set up rather than failing to start
    for where, extra in ((REPO, []), (tmp_path, ["--project", str(REPO)])):
        checked = run(phoenix, *extra, "check", cwd=where, env=env)
        text = checked.stdout + checked.stderr
        assert "Traceback" not in text, text[-3000:]
        assert "project folder" not in text, text[-3000:]
        assert "DIGITALOCEAN_TOKEN" in text, text[-3000:]

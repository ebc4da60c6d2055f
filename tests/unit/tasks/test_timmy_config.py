"""tasks.timmy_config (runbook step 3) run by pyinfra on this machine: deploy.sh runs as root,
so following a branch it runs only from a tip signed by a key the operator allows; an unsigned
tip, or one signed by another key, is refused before it is checked out; with neither a pinned
commit nor allowed signers nothing is changed at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.tasks.dry import run_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="deploy.sh runs as root: pyinfra @local needs root")


def git(repo: Path, *args: str, key: Path | None = None) -> str:
    sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x",
                           *sign, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f",
                    str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def commit(repo: Path, text: str, key: Path | None) -> str:
    (repo / "deploy.sh").write_text(f'#!/bin/sh\necho {text} >> "$HOME/deployed"\n')
    (repo / "deploy.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", *(["-S"] if key else []), "-m", text, key=key)
    return git(repo, "rev-parse", "HEAD")


def test_deploy_sh_runs_only_from_a_tip_signed_by_an_allowed_key(tmp_path):
    source, home, dest = tmp_path / "mirror", tmp_path / "home", tmp_path / "timmy-config"
    home.mkdir()
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    operator, intruder = tmp_path / "operator", tmp_path / "intruder"
    (tmp_path / "allowed").write_text(f"operator@example {keypair(operator)}\n")
    keypair(intruder)
    data = {"phoenix_state_dir": tmp_path / "state", "timmy_config_dest": dest,
            "timmy_config_url": source, "timmy_config_branch": "main",
            "timmy_config_home": home, "timmy_config_allowed_signers": tmp_path / "allowed"}

    first = commit(source, "first", operator)
    run_task(tmp_path, "timmy_config", "deploy_timmy_config", dry=False, data=data)
    assert (home / "deployed").read_text() == "first\n"
    assert git(dest, "rev-parse", "HEAD") == first

    for text, key in (("unsigned", None), ("intruders", intruder)):
        commit(source, text, key)
        with pytest.raises(RuntimeError, match="origin/main is not signed by a key in "
                                               "timmy_config_allowed_signers"):
            run_task(tmp_path, "timmy_config", "deploy_timmy_config", dry=False, data=data)
        assert git(dest, "rev-parse", "HEAD") == first   # never checked out
        assert (home / "deployed").read_text() == "first\n"   # nor run

    signed = commit(source, "signed", operator)
    run_task(tmp_path, "timmy_config", "deploy_timmy_config", dry=False, data=data)
    assert git(dest, "rev-parse", "HEAD") == signed
    assert (home / "deployed").read_text() == "first\nsigned\n"


def test_neither_a_pinned_commit_nor_allowed_signers_is_refused_before_anything(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    commit(source, "first", None)
    data = {"phoenix_state_dir": tmp_path / "state", "timmy_config_dest": tmp_path / "dest",
            "timmy_config_url": source, "timmy_config_home": tmp_path}
    with pytest.raises(RuntimeError, match="neither timmy_config_commit nor "
                                           "timmy_config_allowed_signers is set"):
        run_task(tmp_path, "timmy_config", "deploy_timmy_config", dry=False, data=data)
    assert not (tmp_path / "dest").exists() and not (tmp_path / "state").exists()

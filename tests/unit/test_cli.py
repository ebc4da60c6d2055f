"""The `phoenix` command: expected failures are one clear line and exit 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def phoenix(*args: str, env: dict | None = None, tmp=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DIGITALOCEAN", "CLOUDFLARE", "PHOENIX"))}
    if tmp is not None:
        base["PHOENIX_STATE_DIR"] = str(tmp / "state")
        base["HOME"] = str(tmp)
    return subprocess.run([sys.executable, "-c", "from phoenix.cli import main; main()", *args],
                          capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=60)


def test_help_lists_the_commands():
    out = phoenix("--help").stdout
    for command in ("lab", "provision", "validate", "cutover", "rollback", "recover"):
        assert command in out


def test_provision_without_a_token_says_so(tmp_path):
    result = phoenix("provision", tmp=tmp_path)
    assert result.returncode == 1
    assert "DIGITALOCEAN_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_cutover_without_a_provisioned_droplet_says_what_to_run(tmp_path):
    result = phoenix("cutover", tmp=tmp_path)
    assert result.returncode == 1
    assert "phoenix provision" in result.stderr and "Traceback" not in result.stderr


def test_lab_env_never_prints_a_token(tmp_path):
    secrets = tmp_path / "lab" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "do-token").write_text("lab-do-secret-value\n")
    (secrets / "cf-token").write_text("lab-cf-secret-value\n")
    result = phoenix("lab", "env", env={"PHOENIX_LAB_DIR": str(tmp_path / "lab")})
    assert result.returncode == 0
    assert "secret-value" not in result.stdout
    assert "export DIGITALOCEAN_TOKEN=" in result.stdout
    # and the exports, evaluated by a shell, do give the client its token
    shell = subprocess.run(["bash", "-c", result.stdout + '\necho "$DIGITALOCEAN_TOKEN"'],
                           capture_output=True, text=True)
    assert shell.stdout.strip() == "lab-do-secret-value"


def test_unknown_environment_is_a_clear_error(tmp_path):
    result = phoenix("cutover", "--force", tmp=tmp_path, env={"PHOENIX_ENV": "nowhere"})
    assert result.returncode == 1
    assert "no settings for environment 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr

"""The `phoenix` command: expected failures are one clear line and their exit code, never a
traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from phoenix import __version__
from phoenix.backup.restic import operator_restic_env
from phoenix.errors import NOT_CONFIGURED
from phoenix.provision.do import client as do_client
from phoenix.secrets import secrets_dir
from phoenix.state import state_dir

REPO = Path(__file__).resolve().parents[2]


def phoenix(*args: str, env: dict | None = None, tmp=None, cwd=None
            ) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DIGITALOCEAN", "CLOUDFLARE", "PHOENIX", "XDG_"))}
    if tmp is not None:
        base["PHOENIX_STATE_DIR"] = str(tmp / "state")
        base["HOME"] = str(tmp)
    return subprocess.run([sys.executable, "-c", "from phoenix.cli import main; main()", *args],
                          capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=60, cwd=cwd)


def test_help_lists_the_commands():
    out = phoenix("--help").stdout
    for command in ("lab", "provision", "validate", "cutover", "rollback", "recover"):
        assert command in out


def test_provision_without_a_token_says_so(tmp_path):
    result = phoenix("provision", tmp=tmp_path)
    assert result.returncode == 3  # not configured
    assert "set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN)" in result.stderr
    assert "Traceback" not in result.stderr


def test_cutover_without_a_provisioned_droplet_says_what_to_run(tmp_path):
    result = phoenix("cutover", tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED  # found by the checks, before anything moves
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
    assert result.returncode == NOT_CONFIGURED
    assert "no settings for environment 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_the_environment_are_in_the_help():
    assert phoenix("--version").stdout.strip() == f"phoenix {__version__}"
    out = phoenix("--help").stdout
    for name in ("DIGITALOCEAN_ACCESS_TOKEN", "DIGITALOCEAN_API_URL", "CLOUDFLARE_API_TOKEN",
                 "PHOENIX_PROJECT", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "RESTIC_*"):
        assert name in out


def test_outside_a_project_folder_is_one_line_naming_the_way_out(tmp_path):
    # PYTHONPATH keeps the package importable; the folder is not a project and neither is /
    result = phoenix("--project", str(tmp_path), "recover", "--dry", cwd=tmp_path,
                     env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 3
    assert result.stderr.startswith(f"phoenix: {tmp_path} is not a Phoenix project folder")
    assert len(result.stderr.splitlines()) == 1


def test_the_project_folder_is_found_from_below_it(tmp_path):
    result = phoenix("recover", "--dry", cwd=REPO / "tasks", env={"PYTHONPATH": str(REPO)})
    # found: the plan is printed; then this unconfigured machine's problems, all at once
    assert result.returncode == NOT_CONFIGURED, result.stderr
    assert "provision" in result.stdout and "before `phoenix recover`" in result.stderr


def test_doctl_names_for_the_digitalocean_token_and_url(monkeypatch):
    for name in ("DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", "doctl-token")
    monkeypatch.setenv("DIGITALOCEAN_API_URL", "http://127.0.0.1:9/")
    client = do_client()
    assert client.endpoint == "http://127.0.0.1:9/"
    monkeypatch.setenv("DIGITALOCEAN_ENDPOINT", "http://127.0.0.1:8/")
    assert do_client().endpoint == "http://127.0.0.1:8/"  # Phoenix's own name first


def test_xdg_folders_are_honoured(tmp_path, monkeypatch):
    for name in ("PHOENIX_STATE_DIR", "PHOENIX_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert state_dir() == tmp_path / "state" / "phoenix"
    assert secrets_dir() == tmp_path / "config" / "phoenix" / "secrets"
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path / "mine"))
    assert state_dir() == tmp_path / "mine"


def test_the_operators_restic_settings_pass_but_not_the_store_or_password(monkeypatch):
    monkeypatch.setenv("RESTIC_COMPRESSION", "max")
    monkeypatch.setenv("RESTIC_PACK_SIZE", "64")
    monkeypatch.setenv("RESTIC_REPOSITORY", "/somewhere/else")
    monkeypatch.setenv("RESTIC_PASSWORD", "not-this-one")
    env = operator_restic_env()
    assert env["RESTIC_COMPRESSION"] == "max" and env["RESTIC_PACK_SIZE"] == "64"
    assert "RESTIC_REPOSITORY" not in env and "RESTIC_PASSWORD" not in env


def test_backup_prune_and_store_setup_without_a_store_say_what_to_set(tmp_path):
    for command in ("prune", "store-setup"):
        result = phoenix("backup", command, tmp=tmp_path)
        assert result.returncode == 3
        assert "backup_repository is not set" in result.stderr
        assert "Traceback" not in result.stderr


def test_h_is_help_at_every_level():
    assert phoenix("-h").stdout == phoenix("--help").stdout != ""
    for command in (("backup", "status"), ("cutover",), ("lab",)):
        result = phoenix(*command, "-h")
        assert result.returncode == 0 and result.stdout.startswith("Usage: phoenix "), command


def test_the_help_fits_80_columns_and_keeps_every_variable():
    out = phoenix("--help", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in ("PHOENIX_FACT_BATCH=0", "PHOENIX_SECRETS_DIR", "PHOENIX_KNOWN_HOSTS",
                 "PHOENIX_LAB_*", "130"):
        assert name in out


def test_the_help_lists_the_disaster_first_in_its_order_and_the_lab_apart():
    out = phoenix("--help").stdout
    crisis = out.index("The forge is down")
    lab = out.index("The lab (")
    at = {name: out.index(f"\n  {name} ") for name in
          ("check", "recover", "rollback", "provision", "validate", "cutover", "backup",
           "adopt", "drill", "lab")}
    assert crisis < at["check"] < at["recover"] < at["rollback"] < at["provision"]
    assert at["provision"] < at["validate"] < at["cutover"] < at["backup"] < lab < at["drill"]
    assert "Other commands" not in out  # every command has its section
    assert out.index("Environment") > at["lab"]


def test_shell_completion_is_documented_and_works():
    assert "_PHOENIX_COMPLETE=bash_source phoenix" in phoenix("--help").stdout
    assert "_phoenix_completion" in phoenix(env={"_PHOENIX_COMPLETE": "bash_source"}).stdout
    done = phoenix(env={"_PHOENIX_COMPLETE": "bash_complete", "COMP_WORDS": "phoenix cut",
                        "COMP_CWORD": "1"})
    assert done.stdout.split() == ["plain,cutover"]


def test_quiet_leaves_out_the_progress_not_the_errors(tmp_path):
    assert "nothing to roll back" in phoenix("rollback", tmp=tmp_path).stderr
    quiet = phoenix("-q", "rollback", tmp=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    failed = phoenix("-q", "provision", tmp=tmp_path)
    assert failed.returncode == 3 and "DIGITALOCEAN_TOKEN" in failed.stderr
    both = phoenix("-v", "-q", "check", tmp=tmp_path)
    assert both.returncode == 2 and "choose one" in both.stderr

"""Each documented exit code (README, "Exit codes"), and what --json prints when a command fails:
through `phoenix.cli.main`, in this process, with the APIs and hosts stood in for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from phoenix import cli
from phoenix.errors import (
    FAILED,
    INTERRUPTED,
    NOT_CONFIGURED,
    OK,
    UNHEALTHY,
    USAGE,
    PhoenixError,
)


@pytest.fixture(autouse=True)
def operator(tmp_path, monkeypatch):
    """An operator with nothing set: no tokens, an empty state folder."""
    import os

    for name in list(os.environ):
        if name.startswith(("DIGITALOCEAN", "CLOUDFLARE", "PHOENIX", "XDG_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def run(capture, *args: str) -> tuple[int, str, str]:
    try:
        cli.main(list(args))
        code = OK
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capture.readouterr()
    return code, out.out, out.err


def status_world(monkeypatch, *, settings: dict, problems: bool) -> None:
    """`backup status` against a store and a forge that answer as told."""
    import datetime

    from phoenix import settings as settings_module
    from phoenix import sshconf
    from phoenix.backup import cli as cli_backup
    from phoenix.backup import replication
    from phoenix.backup import snapshots as backup
    from phoenix.backup.store import store_from_settings

    when = (datetime.datetime.now(datetime.UTC)
            - datetime.timedelta(hours=30 if problems else 0)).isoformat()
    monkeypatch.setattr(settings_module, "load", lambda *a, **k: settings)
    monkeypatch.setattr(cli_backup, "_store", lambda: SimpleNamespace(tag="phoenix")
                        if settings.get("backup_repository") else store_from_settings(settings))
    monkeypatch.setattr(backup, "list_snapshots", lambda store, all_hosts=False: [
        {"id": "a" * 64, "time": when, "tags": ["phoenix"]}])
    monkeypatch.setattr(sshconf, "role_target", lambda role: SimpleNamespace(host="forge"))
    monkeypatch.setattr(replication, "full_run_status", lambda target, s: {"time": when})


def test_0_done(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == OK and out.startswith("phoenix ")


def test_1_failed_and_recover_json_prints_its_report_with_the_error(capsys, monkeypatch,
                                                                     tmp_path):
    from phoenix import check
    from phoenix import recover as rec
    from phoenix import settings as settings_module
    from phoenix.provision import do
    from phoenix.provision import droplet as provision

    monkeypatch.setattr(settings_module, "project", lambda: tmp_path)
    monkeypatch.setattr(settings_module, "load", lambda *a, **k: {})
    monkeypatch.setattr(do, "client", lambda **k: SimpleNamespace())
    monkeypatch.setattr(provision, "operator_key", lambda: tmp_path / "id_ed25519")
    monkeypatch.setattr(provision, "provision",
                        lambda **k: {"name": "forge-recovery-20261207", "ip": "192.0.2.7"})

    def deploy(*args, **kwargs):
        raise PhoenixError("the deploy failed (pyinfra exit 1); last lines of x.log:\n"
                           "[192.0.2.7] Error: apt-get update failed")

    monkeypatch.setattr(rec, "run_deploy", deploy)
    # a configured operator's machine: its checks pass (tests/unit/test_check.py holds them)
    monkeypatch.setattr(check, "problems", lambda inputs: [])
    code, out, err = run(capsys, "recover", "--json", "--report-dir", str(tmp_path / "r"))
    assert code == FAILED
    report = json.loads(out)  # one document on stdout, the error line on stderr
    assert err.startswith("phoenix: the deploy failed (pyinfra exit 1)")
    assert report["exit_code"] == FAILED
    assert "apt-get update failed" in report["error"]
    assert [(s["name"], s["ok"]) for s in report["steps"]] == [("provision", True),
                                                              ("deploy", False)]
    assert report["steps"][1]["detail"] == "the deploy failed (pyinfra exit 1); last lines " \
                                           "of x.log"
    saved = json.loads((tmp_path / "r" / "recovery.report.json").read_text())
    assert saved["steps"][1]["detail"] == report["steps"][1]["detail"]
    assert "apt-get update failed" in saved["error"]


def test_2_usage_also_as_json(capsys):
    code, out, err = run(capsys, "backup", "list", "--json", "--no-such-option")
    assert code == USAGE
    assert json.loads(out)["exit_code"] == USAGE and "--no-such-option" in err


def test_3_not_configured_without_a_token(capsys):
    code, out, err = run(capsys, "provision")
    assert code == NOT_CONFIGURED and out == ""
    assert "set DIGITALOCEAN_TOKEN" in err


def test_3_backup_status_without_a_store_or_its_password_as_json(capsys, monkeypatch):
    status_world(monkeypatch, settings={"backup_max_age": 3600}, problems=False)
    code, out, _ = run(capsys, "backup", "status", "--json")
    assert code == NOT_CONFIGURED
    said = json.loads(out)
    assert said["exit_code"] == NOT_CONFIGURED
    assert said["problems"] and "backup_repository is not set" in said["problems"][0]
    from phoenix.backup.store import store_from_settings

    with pytest.raises(PhoenixError) as missing:  # a store, but no restic password
        store_from_settings({"backup_repository": "/srv/restic"})
    assert missing.value.exit_code == NOT_CONFIGURED
    assert "secret restic_password is missing" in str(missing.value)


def test_4_backup_status_past_its_threshold(capsys, monkeypatch):
    settings = {"backup_max_age": 3600, "backup_repository": "/srv/restic",
                "backup_status_file": "/var/lib/phoenix/backup/last-success.json"}
    status_world(monkeypatch, settings=settings, problems=False)
    assert run(capsys, "backup", "status")[0] == OK
    status_world(monkeypatch, settings=settings, problems=True)
    code, out, err = run(capsys, "backup", "status", "--json")
    assert code == UNHEALTHY
    said = json.loads(out)  # the status and the error, one document
    assert said["exit_code"] == UNHEALTHY and said["snapshot_age_seconds"] > 3600
    assert said["problems"] and said["problems"] == [p for p in said["problems"] if p]
    assert "past a threshold" in said["error"] and "past a threshold" in err


def test_4_validation_failed(capsys, monkeypatch, tmp_path):
    from phoenix import validate

    known = tmp_path / "known_hosts"
    known.write_text("192.0.2.7 ssh-ed25519 AAAA\n")
    monkeypatch.setenv("PHOENIX_HOST", "192.0.2.7")
    monkeypatch.setenv("PHOENIX_KNOWN_HOSTS", str(known))
    monkeypatch.setattr(validate, "run_validation", lambda **k: validate.ValidationResult(
        host="192.0.2.7", passed=False, steps={}, counts={"passed": 3, "failed": 1,
                                                           "skipped": 0},
        junit=k["junit"], duration=1.0))
    code, out, err = run(capsys, "validate", "--json")
    assert code == UNHEALTHY
    said = json.loads(out)
    assert said["passed"] is False and said["exit_code"] == UNHEALTHY
    assert "validation failed on 192.0.2.7" in err


def test_130_interrupted(capsys, monkeypatch):
    from phoenix.backup import cli as cli_backup

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_backup, "_store", interrupted)
    code, out, _ = run(capsys, "backup", "list", "--json")
    assert code == INTERRUPTED and json.loads(out)["exit_code"] == INTERRUPTED


def test_validate_with_a_missing_known_hosts_file_says_so(capsys, monkeypatch):
    monkeypatch.setenv("PHOENIX_HOST", "192.0.2.7")
    monkeypatch.setenv("PHOENIX_KNOWN_HOSTS", "/nonexistent")
    code, _, err = run(capsys, "validate")
    assert code == NOT_CONFIGURED
    assert "PHOENIX_KNOWN_HOSTS /nonexistent is missing" in err
    assert "ssh-keyscan -t ed25519 192.0.2.7 > /nonexistent" in err


def test_phoenix_host_without_known_hosts_says_how_to_make_one(capsys):
    from phoenix.context import Context
    from phoenix.sshconf import role_target

    with pytest.raises(PhoenixError, match="ssh-keyscan -t ed25519 192.0.2.7 > FILE") as exc:
        role_target("primary", Context(environ={"PHOENIX_HOST": "192.0.2.7"}))
    assert exc.value.exit_code == NOT_CONFIGURED


@pytest.mark.parametrize("command", [("adopt",), ("backup", "now")])
def test_no_primary_names_phoenix_host_not_provision(capsys, command):
    code, _, err = run(capsys, *command)
    assert code == NOT_CONFIGURED
    assert "PHOENIX_HOST=IP and PHOENIX_KNOWN_HOSTS=FILE" in err
    assert "ssh-keyscan -t ed25519 IP > FILE" in err and "phoenix provision" not in err


def test_rollback_with_nothing_to_roll_back_asks_for_no_token(capsys, monkeypatch):
    from phoenix.console import Console

    monkeypatch.setattr(cli, "_say", Console())  # progress, on the captured stderr
    code, out, err = run(capsys, "rollback")
    assert code == OK, err
    assert "nothing to roll back" in err and "DIGITALOCEAN_TOKEN" not in err


def test_the_exit_codes_are_in_the_help(capsys):
    _, out, _ = run(capsys, "--help")
    for line in ("0    done", "3    not configured", "4    unhealthy", "130  interrupted"):
        assert line in out
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "## Exit codes" in readme


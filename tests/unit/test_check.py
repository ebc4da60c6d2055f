"""`phoenix check` and the first phase of the commands that create or change something: every
problem at once, exit 3, and nothing asked of DigitalOcean or Cloudflare that changes a thing."""

from __future__ import annotations

import json

import pytest

from phoenix import check
from phoenix.errors import NOT_CONFIGURED
from tests.unit.test_cli import phoenix

# With nothing configured, what each check must find (one line per problem):
NOTHING = {
    "settings": ["gitea_sha256", "hermes_model_name"],        # CHANGE-ME left in all.py
    "secrets": ["restic_password", "hermes_model_api_key", "hermes_api_server_key",
                "hermes_webhook_secret", "gitea_api_token"],
    "operator SSH key": ["operator SSH key"],
    "pinned host key": [],                                    # no PHOENIX_HOST: nothing pinned
    "DigitalOcean": ["DigitalOcean token"],
    "Cloudflare": ["Cloudflare token"],
    "store": ["backup_repository"],
    "restore source": [],                                     # restic:latest: the store's say
    "timmy-config": ["neither timmy_config_commit nor timmy_config_allowed_signers"],
}


def test_the_expected_problems_cover_every_check_recover_runs():
    assert list(NOTHING) == check.needs(check.Inputs(command="recover"))


def test_check_with_nothing_configured_lists_every_problem_and_exits_3(tmp_path):
    result = phoenix("check", "--json", tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED, result.stderr
    found = json.loads(result.stdout)["problems"]
    wanted = [word for words in NOTHING.values() for word in words]
    assert len(found) == len(wanted), found
    for word in wanted:
        assert sum(word in line for line in found) >= 1, (word, found)


def test_recover_dry_with_nothing_configured_lists_every_problem_and_exits_3(tmp_path):
    result = phoenix("recover", "--dry", tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED, result.stderr
    assert "1. " in result.stdout  # the plan first, then every problem
    lines = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(lines) == sum(len(words) for words in NOTHING.values()), result.stderr
    assert "before `phoenix recover` changes anything" in result.stderr


def test_a_missing_restore_source_file_is_named_before_anything(tmp_path):
    result = phoenix("check", "--restore-source", str(tmp_path / "gone.zip"), tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED
    assert f"restore source {tmp_path / 'gone.zip'} does not exist" in result.stderr


def test_recover_stops_before_provision_when_a_check_fails(tmp_path):
    """A DigitalOcean token that does not answer: recover says so and provisions nothing
    (the endpoint is a closed port: any call, a create included, would fail loudly)."""
    env = {"DIGITALOCEAN_TOKEN": "t" * 64, "DIGITALOCEAN_ENDPOINT": "http://127.0.0.1:9",
           "CLOUDFLARE_API_TOKEN": "c" * 40, "CLOUDFLARE_BASE_URL": "http://127.0.0.1:9"}
    result = phoenix("recover", env=env, tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED, result.stderr
    assert "the DigitalOcean token does not work" in result.stderr
    assert "== provision" not in result.stderr and "new recovery attempt" not in result.stderr
    assert not (tmp_path / "state" / "recovery.json").exists()


def test_cutover_and_adopt_and_backup_init_check_first(tmp_path):
    for args in (["cutover"], ["adopt"], ["backup", "init"]):
        result = phoenix(*args, tmp=tmp_path)
        assert result.returncode == NOT_CONFIGURED, (args, result.stderr)
        assert "changes anything" in result.stderr, (args, result.stderr)


def test_a_pinned_host_file_that_is_missing_is_said(tmp_path):
    env = {"PHOENIX_HOST": "192.0.2.7", "PHOENIX_KNOWN_HOSTS": str(tmp_path / "none")}
    result = phoenix("check", "--for", "adopt", env=env, tmp=tmp_path)
    assert result.returncode == NOT_CONFIGURED
    assert f"PHOENIX_KNOWN_HOSTS {tmp_path / 'none'} does not exist: ssh-keyscan" in result.stderr


def test_settings_with_an_unknown_key_or_a_wrong_type_are_named(tmp_path, monkeypatch):
    from phoenix import settings

    real = settings._group_file

    def files(name: str) -> dict:
        if name == "standby":
            return {"backup_tag": 5, "bakup_schedule": "hourly"}
        return real(name)

    monkeypatch.setattr(settings, "_group_file", files)
    found = check.check_settings(check.Inputs(command="recover", role="standby"))
    assert any("sets 'bakup_schedule', which group_data/all.py does not define" in line
               for line in found), found
    assert any("sets backup_tag to 5 (int), where all.py's default is 'phoenix' (str)" in line for line in found), found


def test_check_says_how_deploy_sh_is_verified_and_refuses_a_missing_signers_file(tmp_path):
    from phoenix.configrepo import verification
    from phoenix.errors import NotConfigured

    assert verification({"timmy_config_commit": "0123456789abcdef"}) == \
        "pinned: deploy.sh runs only from commit 0123456789ab"
    allowed = tmp_path / "allowed"
    with pytest.raises(NotConfigured, match=f"{allowed} does not exist"):
        verification({"timmy_config_allowed_signers": str(allowed)})
    allowed.write_text("op@example ssh-ed25519 AAAA\n")
    assert verification({"timmy_config_allowed_signers": str(allowed),
                         "timmy_config_branch": "main"}) == \
        f"signed: deploy.sh runs only from a tip of main signed by a key in {allowed}"


def test_an_alert_url_that_is_not_one_is_named_and_a_missing_one_is_no_problem(tmp_path):
    bad = phoenix("check", "--json", tmp=tmp_path,
                  env={"PHOENIX_ALERT_URL": "hc-ping.com/abc",
                       "PHOENIX_ALERT_REPLICAS_URL": "https://hc-ping.com/5f0c3c1e"})
    found = json.loads(bad.stdout)["problems"]
    assert sum("alert_url is not an http(s) URL" in line for line in found) == 1, found
    assert not any("alert_replicas_url" in line for line in found), found
    wanted = [word for words in NOTHING.values() for word in words]
    assert len(found) == len(wanted) + 1

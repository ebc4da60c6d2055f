"""The validation suite on a real lab droplet (issue 4): it passes on a converged droplet;
broken on purpose one thing at a time, the matching test fails with a message naming the
problem while the others keep their result; an unreachable address fails in seconds."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.lab.nspawn import wait_ssh
from phoenix.settings import REPO, load
from phoenix.sshconf import Target, ssh_command
from phoenix.validate import ValidationResult, parse_junit, run_validation, summarise

DROPLET = "val-suite"
CONVERGE_TIMEOUT = 900


def on_host(target: Target, script: str) -> str:
    proc = subprocess.run(ssh_command(target, script), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"on {target.host}: `{script}` failed: {proc.stderr.strip()}"
    return proc.stdout


@pytest.fixture(scope="module")
def settings():
    return load("lab")


@pytest.fixture(scope="module")
def converged(lab, do_client, tmp_path_factory) -> Target:
    """A fresh lab droplet converged once by the deploy (as `phoenix recover` would)."""
    from phoenix.lab.client import certificate, droplet_target, wait_https
    from phoenix.lab.nspawn import BOOT_TIMEOUT
    from phoenix.provision.do import public_ip
    from phoenix.sshconf import public_half

    for old in do_client.droplets(name=DROPLET):  # ours, left by a run that was cut off
        do_client.destroy(old["id"])
    fingerprint = do_client.ensure_key("phoenix-lab-operator", public_half(lab.ssh_key).read_text())
    droplet = do_client.create({"name": DROPLET, "region": "nyc1", "size": "s-2vcpu-4gb",
                                "image": "debian-12-x64", "ssh_keys": [fingerprint],
                                "tags": ["phoenix-test"]})
    try:
        ip = public_ip(do_client.wait_active(droplet["id"], timeout=BOOT_TIMEOUT + 60))
        log = tmp_path_factory.mktemp("converge") / "deploy.log"
        with open(log, "w") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "pyinfra", "-y", "inventories/lab.py", "deploy.py"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=CONVERGE_TIMEOUT,
                env={**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_DROPLETS": DROPLET},
                check=False)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        assert proc.returncode == 0, f"the deploy did not converge {DROPLET}:\n{tail}"
        certificate(lab, droplet_target(lab, DROPLET))  # as `phoenix recover` does: DNS-01
        wait_https(load("lab"), ip)
        yield droplet_target(lab, DROPLET)
    finally:
        do_client.destroy(droplet["id"])


def validate(target: Target, junit: Path, *args: str) -> ValidationResult:
    return run_validation(target=target, settings_env="lab", junit=junit, extra_args=args)


def statuses(result: ValidationResult) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.message) for step in result.steps.values()
            for c in step.checks}


@pytest.fixture(scope="module")
def baseline(converged, tmp_path_factory) -> ValidationResult:
    """The whole suite on the converged droplet: every break is compared with it."""
    return validate(converged, tmp_path_factory.mktemp("baseline") / "junit.xml")


def test_suite_passes_on_a_converged_droplet(baseline):
    assert baseline.passed, baseline.render()
    assert baseline.counts["failed"] == 0 and baseline.counts["passed"] >= 30
    for step in ("step2", "step3", "step4", "step5", "step6", "step7", "step9", "security"):
        assert baseline.steps[step].status == "passed", baseline.render()
    print(baseline.render())


# ---- broken on purpose, one at a time --------------------------------------------------------

@dataclass
class Break:
    """What to break and repair on the host, and which tests must fail with which words.

    `fails` maps a test name to words its message must hold; `may_fail` are tests that the
    same break may also fail (a consequence, not another problem)."""
    id: str
    breaks: Callable[[Target, dict], str]   # returns a detail the messages must name, or ""
    repair: Callable[[Target, dict], None]
    fails: dict[str, list[str]]
    may_fail: set[str] = field(default_factory=set)


def _gitea_stop(t, s):
    on_host(t, "systemctl stop gitea")
    return ""


def _gitea_start(t, s):
    on_host(t, "systemctl start gitea && for i in $(seq 30); do curl -sf -o /dev/null "
               f"http://127.0.0.1:{s['gitea_http_port']}/api/v1/version && exit 0; sleep 1; "
               "done; exit 1")


def _unit_path(s):
    return f"/etc/systemd/system/hermes-{s['wizard_names'][1]}.service"


def _unit_remove(t, s):
    unit = _unit_path(s)
    on_host(t, f"cp -p {unit} /root/val-unit.saved && systemctl disable --now "
               f"$(basename {unit}) && rm {unit} && systemctl daemon-reload")
    return ""


def _unit_restore(t, s):
    unit = _unit_path(s)
    on_host(t, f"mv /root/val-unit.saved {unit} && systemctl daemon-reload && "
               f"systemctl enable --now $(basename {unit})")


def _cron_delete(t, s):
    """Delete the first job line of the cron file; its command is what the message names."""
    cron = s["cron_file"]
    jobs = [line for line in on_host(t, f"cat {cron}").splitlines()
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    command = jobs[0].split(None, 6)[6]
    on_host(t, f"cp -p {cron} /root/val-cron.saved && "
               f"grep -vxF {shlex.quote(jobs[0])} /root/val-cron.saved > {cron}")
    return command.split()[0]


def _cron_restore(t, s):
    on_host(t, f"mv /root/val-cron.saved {s['cron_file']}")


def _beat(s, wizard):
    return f"{s['hermes_root']}/{wizard}/state/gateway.heartbeat"


def _heartbeat_stale(t, s):
    """The wizard hangs (SIGSTOP: systemd still calls it active, until its watchdog runs out),
    its last beat an hour old."""
    wizard = s["wizard_names"][0]
    beat = _beat(s, wizard)
    script = ("import datetime, json, sys; p = sys.argv[1]; d = json.load(open(p)); "
              "d['updated_at'] = (datetime.datetime.now(datetime.timezone.utc) - "
              "datetime.timedelta(hours=1)).isoformat(); json.dump(d, open(p, 'w'))")
    on_host(t, f"kill -STOP $(systemctl show -p MainPID --value hermes-{wizard}) && sleep 0.5 && "
               f"python3 -c {shlex.quote(script)} {beat} && touch -d '1 hour ago' {beat}")
    return wizard


def _heartbeat_resume(t, s):
    wizard = s["wizard_names"][0]
    on_host(t, f"kill -CONT $(systemctl show -p MainPID --value hermes-{wizard}) && "
               f"systemctl restart hermes-{wizard}")


def _config_path(s):
    return f"{s['hermes_root']}/{s['wizard_names'][1]}/config.yaml"


def _config_break(t, s):
    """A hand edit leaves the house's config.yaml unparsable; the house is restarted on it."""
    path, unit = _config_path(s), f"hermes-{s['wizard_names'][1]}"
    on_host(t, f"cp -p {path} /root/val-config.saved && "
               f"printf 'model: [unclosed\\n  provider: custom\\n' > {path} && "
               f"systemctl restart --no-block {unit} && sleep 5")
    return ""


def _config_restore(t, s):
    on_host(t, f"mv /root/val-config.saved {_config_path(s)} && "
               f"systemctl restart hermes-{s['wizard_names'][1]}")


DROPIN = "/etc/ssh/sshd_config.d/00-val-break.conf"


def _reload_sshd(t: Target, script: str) -> None:
    """`systemctl reload ssh` returns once SIGHUP is sent; sshd then re-executes itself and
    its listener is closed for a moment, so the next connection waits for it to be back."""
    on_host(t, f"{script} && systemctl reload ssh")
    time.sleep(1)
    wait_ssh(t.host, 30, error=lambda: f"sshd on {t.host} did not come back after a reload")


def _password_on(t, s):
    _reload_sshd(t, f"printf 'PasswordAuthentication yes\\n' > {DROPIN}")
    return ""


def _password_off(t, s):
    _reload_sshd(t, f"rm -f {DROPIN}")


def _db_0644(t, s):
    on_host(t, f"chmod 644 {s['gitea_db_path']}")
    return ""


def _db_0600(t, s):
    on_host(t, f"chmod 600 {s['gitea_db_path']}")


def _wiki(s):
    return f"{s['gitea_repo_root']}/timmy_foundation/timmy-config.wiki.git"


def _token_revoked_beside_a_wiki(t, s):
    """The operator's token matches no token of the forge any more (a forge restored from a
    backup older than the token), and a repository has its wiki (<name>.wiki.git) beside it,
    which is not a repository: only step 9 may fail, never the restored-data count."""
    user, db = shlex.quote(s["gitea_user"]), shlex.quote(s["gitea_db_path"])
    on_host(t, f"runuser -u {user} -- sqlite3 {db} \"UPDATE access_token SET token_hash = "
               f"'revoked-' || token_hash\" && runuser -u {user} -- git init -q --bare "
               f"{shlex.quote(_wiki(s))}")
    return ""


def _token_back_wiki_gone(t, s):
    user, db = shlex.quote(s["gitea_user"]), shlex.quote(s["gitea_db_path"])
    on_host(t, f"runuser -u {user} -- sqlite3 {db} \"UPDATE access_token SET token_hash = "
               f"substr(token_hash, 9) WHERE token_hash LIKE 'revoked-%'\" && "
               f"rm -rf {shlex.quote(_wiki(s))}")


def _caddy_stop(t, s):
    on_host(t, "systemctl stop caddy")
    return ""


def _caddy_start(t, s):
    on_host(t, "systemctl start caddy")


def _firewall_flush(t, s):
    on_host(t, "nft flush ruleset")
    return ""


def _firewall_load(t, s):
    on_host(t, "systemctl restart nftables")


def _keys_file(s):
    return shlex.quote(f"{s['gitea_home']}/.ssh/authorized_keys")


def _serv_lines_gone(t, s):
    """A restore that skipped `gitea admin regenerate keys`: the run user's authorized_keys
    without Gitea's `serv` lines, so no user could use git over SSH."""
    keys = _keys_file(s)
    on_host(t, f"cp -p {keys} /root/authorized_keys.saved && "
               f"sed -i '/# gitea public key/d; /serv key-/d' {keys}")
    return ""


def _serv_lines_back(t, s):
    on_host(t, f"mv /root/authorized_keys.saved {_keys_file(s)}")


def _house(s, i):
    from phoenix import dispatch

    return dispatch.houses(s)[i]


def _env_path(s, i):
    return f"{s['hermes_root']}/{s['wizard_names'][i]}/.env"


def _route_secret_differs(t, s):
    """The house's route secret is not the one Gitea's webhook signs with (a house restored
    with another operator secret than the forge's webhook row)."""
    env = _env_path(s, 0)
    on_host(t, f"cp -p {env} /root/val-env.saved && sed -i "
               f"'s/^WEBHOOK_SECRET=.*/WEBHOOK_SECRET=not-the-forges-secret/' {env} && "
               f"systemctl restart hermes-{s['wizard_names'][0]} && sleep 8")
    return ""


def _route_secret_back(t, s):
    on_host(t, f"mv /root/val-env.saved {_env_path(s, 0)} && "
               f"systemctl restart hermes-{s['wizard_names'][0]} && sleep 8")


def _house_stop(t, s):
    on_host(t, f"systemctl stop hermes-{s['wizard_names'][1]}")
    return ""


def _house_start(t, s):
    on_host(t, f"systemctl start hermes-{s['wizard_names'][1]} && sleep 8")


def _hook_row_delete(t, s):
    user, db = shlex.quote(s["gitea_user"]), shlex.quote(s["gitea_db_path"])
    url = _house(s, 0).url
    on_host(t, f"runuser -u {user} -- sqlite3 {db} "
               f"\"DELETE FROM webhook WHERE url = '{url}'\"")
    return url


def _hook_row_back(t, s):
    """What the deploy's dispatch operation runs (tasks/dispatch.py)."""
    user, db = shlex.quote(s["gitea_user"]), shlex.quote(s["gitea_db_path"])
    folder = f"{s['phoenix_state_dir']}/dispatch"
    on_host(t, f"runuser -u {user} -- python3 -c \"$(cat {folder}/phoenix_dispatch_hooks.py)\" "
               f"{db} < {folder}/hooks.json")


def _host_list_default(t, s):
    """app.ini back to 1.22's default ALLOWED_HOST_LIST (external): the houses are refused."""
    ini = f"{s['gitea_config_dir']}/app.ini"
    on_host(t, f"cp -p {ini} /root/val-app.ini.saved && sed -i "
               f"'s/^ALLOWED_HOST_LIST *=.*/ALLOWED_HOST_LIST = external/' {ini}")
    _gitea_stop(t, s)
    _gitea_start(t, s)
    return _house(s, 0).address


def _host_list_back(t, s):
    on_host(t, f"mv /root/val-app.ini.saved {s['gitea_config_dir']}/app.ini")
    _gitea_stop(t, s)
    _gitea_start(t, s)


DISPATCH = "test_step9_4_issue_dispatched_to_each_wizard"

# Test names and words may name {w0} and {w1}: the first two of the lab's wizard_names.
BREAKS = [
    Break("gitea-stopped", _gitea_stop, _gitea_start,
          fails={"test_step4_gitea_service_active_and_enabled": ["gitea service is not running"],
                 "test_step4_gitea_listening_on_http_port": ["nothing listens", "3000"],
                 "test_step4_gitea_api_version_200_from_operator": ["does not answer"],
                 "test_step9_issue_create_and_close_through_api": ["does not answer"]},
          may_fail={DISPATCH}),
    Break("git-over-ssh-keys-gone", _serv_lines_gone, _serv_lines_back,
          fails={"test_step4_git_over_ssh_takes_every_key_in_the_database":
                 ["has no `serv` line for key id", "gitea admin regenerate keys"]}),
    Break("gitea-db-0644", _db_0644, _db_0600,
          fails={"test_step4_gitea_db_owned_by_run_user_0600":
                 ["gitea.db is mode 0644, expected 0600"]}),
    Break("wizard-unit-removed", _unit_remove, _unit_restore,
          fails={"test_step6_wizard_active_and_enabled[{w1}]": ["hermes-{w1}.service is missing"]},
          may_fail={"test_step7_wizard_heartbeat_fresh[{w1}]",
                    "test_step6_house_config_loads[{w1}]",
                    "test_step7_fleet_health_report_at_runbook_path", DISPATCH}),
    # Hermes only warns about such a file and runs on without its model or its watchdog
    # setting, so it never says READY=1 either: the unit hangs in "activating".
    Break("house-config-broken", _config_break, _config_restore,
          fails={"test_step6_house_config_loads[{w1}]":
                 ["config.yaml is broken", "while parsing", "journal ends"]},
          may_fail={"test_step6_wizard_active_and_enabled[{w1}]",
                    "test_step7_wizard_heartbeat_fresh[{w1}]",
                    "test_step7_fleet_health_report_at_runbook_path", DISPATCH}),
    Break("cron-line-deleted", _cron_delete, _cron_restore,
          fails={"test_step6_cron_entries_installed": ["not installed"]},
          may_fail={"test_step7_fleet_health_report_at_runbook_path"}),  # when it is that job
    Break("heartbeat-stale", _heartbeat_stale, _heartbeat_resume,
          fails={"test_step7_wizard_heartbeat_fresh[{w0}]":
                 ["heartbeat of {w0} is", "s old", "hermes-{w0} hung"],
                 "test_step7_fleet_health_report_at_runbook_path":
                 [".local/timmy/fleet-health/", "STALE: {w0}"]},
          may_fail={DISPATCH}),
    Break("token-rejected-beside-a-wiki", _token_revoked_beside_a_wiki, _token_back_wiki_gone,
          fails={"test_step9_issue_create_and_close_through_api":
                 ["token is not valid on this Gitea", "answered 401"]},
          may_fail={DISPATCH}),
    Break("caddy-stopped", _caddy_stop, _caddy_start,
          fails={"test_step4_gitea_api_version_200_from_operator": ["does not answer"],
                 "test_step4_http_redirects_to_https": ["nothing answers http://"],
                 "test_step9_issue_create_and_close_through_api": ["does not answer"]},
          may_fail={DISPATCH}),
    Break("firewall-flushed", _firewall_flush, _firewall_load,
          fails={"test_security_firewall_drops_input_by_default": ["accepts by default"],
                 "test_security_service_users_cannot_reach_metadata": ["not refused"]}),
    Break("password-login", _password_on, _password_off,
          fails={"test_security_sshd_no_password_login":
                 ["sshd accepts password logins", "passwordauthentication yes"]}),
    # Runbook step 9.4: each link of the dispatch path broken, the cause named.
    Break("dispatch-route-secret-differs", _route_secret_differs, _route_secret_back,
          fails={DISPATCH: ["{w0}: the house refused Gitea's signature (401)",
                            "route secret differs"]}),
    Break("dispatch-house-stopped", _house_stop, _house_start,
          fails={DISPATCH: ["{w1}: hermes-{w1} is not running"],
                 "test_step6_wizard_active_and_enabled[{w1}]": ["hermes-{w1} is not running"]},
          may_fail={"test_step7_wizard_heartbeat_fresh[{w1}]",
                    "test_step6_house_config_loads[{w1}]",
                    "test_step7_fleet_health_report_at_runbook_path"}),
    Break("dispatch-webhook-row-missing", _hook_row_delete, _hook_row_back,
          fails={DISPATCH: ["{w0}: Gitea has no system webhook for"]}),
    Break("dispatch-host-list-refuses", _host_list_default, _host_list_back,
          fails={DISPATCH: ["{w0}: Gitea's [webhook] ALLOWED_HOST_LIST refuses",
                            "webhook can only call allowed HTTP servers"]}),
]


@pytest.mark.parametrize("case", BREAKS, ids=[b.id for b in BREAKS])
def test_a_break_fails_its_own_test_only(case: Break, converged, baseline, settings, tmp_path):
    w0, w1 = settings["wizard_names"][:2]
    fails = {name.format(w0=w0, w1=w1): [w.format(w0=w0, w1=w1) for w in words]
             for name, words in case.fails.items()}
    may_fail = {name.format(w0=w0, w1=w1) for name in case.may_fail}
    before = statuses(baseline)
    for name in fails:
        assert before.get(name, ("missing",))[0] == "passed", \
            f"{name} did not pass before the break: {before.get(name)}"
    detail = case.breaks(converged, settings)
    try:
        result = validate(converged, tmp_path / "junit.xml")
    finally:
        case.repair(converged, settings)
    after = statuses(result)
    assert not result.passed, result.render()
    for name, words in fails.items():
        status, message = after[name]
        assert status == "failed", f"{name} is {status} after {case.id}:\n{result.render()}"
        for word in [*words, detail] if detail else words:
            assert word in message, f"{name} says {message!r}, which does not name {word!r}"
    changed = {name: (before[name][0], status) for name, (status, _) in after.items()
               if name in before and status != before[name][0]
               and name not in fails and name not in may_fail}
    assert not changed, f"{case.id} also changed other tests: {changed}\n{result.render()}"


def test_a_wrong_secret_key_on_the_recovered_host_fails_the_2fa_comparison(converged,
                                                                           settings):
    """The drill's 2FA comparison on a restored forge: a user enrolled under the forge's
    SECRET_KEY logs in with a TOTP code; the same host with another SECRET_KEY in app.ini
    refuses it, and the comparison says so. The key, the row and Gitea are put back."""
    from phoenix.forge.api import Forge, compare, snapshot
    from phoenix.lab.forgework import enroll_two_factor

    ini = f"{settings['gitea_config_dir']}/app.ini"
    forge = Forge.of(settings, address=converged.host)  # over TLS for the forge's name
    user = enroll_two_factor(converged, settings, "ezra")
    before = snapshot(forge, two_factor=[user])
    on_host(converged, f"cp -p {ini} /root/val-app.ini.saved && sed -i "
                       f"'s/^SECRET_KEY *=.*/SECRET_KEY = not-the-forges-key/' {ini}")
    try:
        _gitea_stop(converged, settings)
        _gitea_start(converged, settings)  # Gitea reads SECRET_KEY at its start
        after = snapshot(forge, two_factor=[user])
    finally:
        on_host(converged, f"mv /root/val-app.ini.saved {ini} && systemctl stop gitea && "
                           f"runuser -u {settings['gitea_user']} -- sqlite3 "
                           f"{settings['gitea_db_path']} 'DELETE FROM two_factor'")
        _gitea_start(converged, settings)
    assert before["logins"]["2FA login of ezra with a TOTP code"] == "works"
    assert compare(before, after) == [
        "logins: 2FA login of ezra with a TOTP code: works before, refused (401) after"]


def test_repaired_droplet_passes_again(converged, tmp_path):
    """The repairs left the droplet as the deploy made it (the breaks did not leak)."""
    result = validate(converged, tmp_path / "junit.xml")
    assert result.passed, result.render()


# ---- a host that does not answer ------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_lab_address_fails_in_seconds(lab, tmp_path):
    unused = str(lab.subnet.broadcast_address - 2)  # the .253: no droplet is given it
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = Target(host=unused, key=lab.ssh_key, known_hosts=known)
    started = time.monotonic()
    with pytest.raises(PhoenixError, match=rf"cannot reach root@{unused}:22") as err:
        validate(target, tmp_path / "junit.xml")
    assert time.monotonic() - started < 15
    assert "Traceback" not in str(err.value)
    assert not (tmp_path / "junit.xml").exists()  # pytest never started


def test_closed_port_fails_at_once(tmp_path):
    port = _free_port()
    target = Target(host="127.0.0.1", port=port, key=tmp_path / "no-key",
                    known_hosts=tmp_path / "known_hosts")
    started = time.monotonic()
    with pytest.raises(PhoenixError, match="Connection refused"):
        validate(target, tmp_path / "junit.xml")
    assert time.monotonic() - started < 5


def test_junit_is_summarised_per_runbook_step(tmp_path):
    """The summary reads pytest's JUnit XML: failures with their own sentence, skips why."""
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="checks.gitea" '
        'name="test_step4_gitea_db_owned_by_run_user_0600[ssh://phoenix-target]">'
        '<failure message="AssertionError: gitea.db is mode 0644, expected 0600&#10;'
        'assert 420 == 384">trace</failure></testcase>'
        '<testcase classname="checks.gitea" '
        'name="test_step4_gitea_service_active_and_enabled[ssh://phoenix-target]"/>'
        '<testcase classname="checks.wizards" '
        'name="test_step7_wizard_heartbeat_fresh[ssh://phoenix-target-ezra]"/>'
        '<testcase classname="checks.dns" '
        'name="test_step8_dns_record_resolves_to_this_host[ssh://phoenix-target-forge]">'
        '<skipped type="pytest.skip" message="not cut over yet">skip</skipped></testcase>'
        '</testsuite></testsuites>')
    steps = summarise(parse_junit(xml))
    assert steps["step4"].status == "failed"
    failed = steps["step4"].checks[0]
    assert failed.name == "test_step4_gitea_db_owned_by_run_user_0600"
    assert failed.message == "gitea.db is mode 0644, expected 0600"
    assert steps["step7"].checks[0].name == "test_step7_wizard_heartbeat_fresh[ezra]"
    assert steps["step8"].status == "skipped" and steps["step8"].checks[0].message == \
        "not cut over yet"

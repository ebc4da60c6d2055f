"""Adopting the forge that runs today (issue 12), for real: a droplet set up the runbook's way,
not by Phoenix (the stand-in Gitea in its own paths, its own unit, data with an attachment, an
avatar and an LFS object, LFS on), is adopted with nothing of it changed, gets a verified
offsite snapshot, and a new droplet recovered from that snapshot has its attachment, its LFS
object and its identity (SECRET_KEY, INTERNAL_TOKEN, JWT_SECRET, LFS_JWT_SECRET), with SSH
host keys of its own as asked (--new-host-keys), the snapshot's named.

Droplets: offsite-adt (the store), adopt-rb (the runbook's forge), and the recovery that
`phoenix recover` provisions once adopt-rb is destroyed; each is destroyed when its test or
fixture ends, also on failure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from phoenix.backup import snapshots as backup
from phoenix.backup.store import store_from_settings
from phoenix.cutover import dns
from phoenix.cutover.dnswire import resolve_a
from phoenix.errors import PhoenixError
from phoenix.forge.tls import https_session
from phoenix.lab import fixtures, offsite
from phoenix.lab.client import client_environment, droplet_record, droplet_target
from phoenix.poll import poll
from phoenix.secrets import write_secret
from phoenix.settings import REPO, load
from phoenix.sshconf import Target, public_half, ssh_command, state_target
from phoenix.state import State

pytestmark = pytest.mark.lab

STORE = "offsite-adt"
FORGE = "adopt-rb"
TOKEN = "lab-" + uuid.uuid4().hex   # made here, never printed
INI = fixtures.RUNBOOK_APP_INI
STATE = ("systemctl show -p MainPID --value gitea.service; find /usr/local/bin/gitea "
         "/var/lib/gitea /etc/systemd/system/gitea.service -type f | sort | xargs sha256sum")


def jwt_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def ssh(lab, name: str, command: str, *, stdin: bytes | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_command(droplet_target(lab, name), command), input=stdin,
                          capture_output=True, timeout=timeout, check=False)


def out(lab, name: str, command: str) -> str:
    proc = ssh(lab, name, command)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout.decode()


def on(target: Target, command: str) -> str:
    proc = subprocess.run(ssh_command(target, command), capture_output=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout.decode()


def make_droplet(lab, do_client, name: str) -> dict:
    """Created, not yet waited for: the caller holds it for destroy() before it waits."""
    fingerprint = do_client.ensure_key("phoenix-lab-operator",
                                       public_half(lab.ssh_key).read_text())
    return do_client.create({"name": name, "region": "nyc1", "size": "s-2vcpu-4gb",
                             "image": "debian-12-x64", "ssh_keys": [fingerprint],
                             "tags": ["phoenix-test", "phoenix-adopt"]})


def destroy(do_client, droplet: dict | None) -> None:
    if droplet and do_client.get(droplet["id"]) is not None:
        do_client.destroy(droplet["id"])


def destroyed(do_client, droplet: dict | None) -> None:
    try:
        destroy(do_client, droplet)
    except PhoenixError:  # the lab's DigitalOcean answers once the droplet is torn down,
        # which can outlast the client's 20 s on a loaded machine: wait for it
        assert droplet is not None
        poll(lambda: True if do_client.get(droplet["id"]) is None else None, timeout=300,
             what=f"droplet {droplet['id']} destroyed", interval=5)


def adopt_env(lab, tmp: Path) -> dict[str, str]:
    target = droplet_target(lab, FORGE)
    return {**os.environ, "PHOENIX_ENV": "lab", "PHOENIX_LAB_OFFSITE": STORE,
            "PHOENIX_HOST": target.host, "PHOENIX_KNOWN_HOSTS": str(target.known_hosts),
            "PHOENIX_SSH_KEY": str(lab.ssh_key), "PHOENIX_STATE_DIR": str(tmp),
            "PHOENIX_SECRETS_DIR": str(lab.state_dir / "secrets")}


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(lab, do_client, tmp_path_factory):
    made = None
    try:
        made = offsite.ensure(lab, do_client, name=STORE)
        settings = {**load("lab"), **made.settings()}
        opened = store_from_settings(settings, key=lab.ssh_key,
                                            known_hosts=tmp_path_factory.mktemp("kh") / "store")
        backup.init(opened)
        yield opened
    finally:
        if made is not None:
            offsite.destroy(lab, do_client, made)


@pytest.fixture(scope="module")
def forge(lab, do_client, store, tmp_path_factory):
    """The runbook's forge, running; (its identity, the files to find again)."""
    tmp = tmp_path_factory.mktemp("runbook-forge")
    identity = {"SECRET_KEY": secrets.token_hex(20), "INTERNAL_TOKEN": secrets.token_hex(30),
                "JWT_SECRET": jwt_secret(), "LFS_JWT_SECRET": jwt_secret()}
    files = fixtures.make_runbook_forge(tmp / "root", identity=identity, token=TOKEN)
    archive = fixtures.tar_gz(tmp / "root")
    droplet = None
    try:
        droplet = make_droplet(lab, do_client, FORGE)
        do_client.wait_active(droplet["id"], timeout=240)  # nspawn.BOOT_TIMEOUT
        proc = ssh(lab, FORGE, "bash -c " + shlex.quote(fixtures.RUNBOOK_SETUP), stdin=archive)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        yield identity, files
    finally:
        destroy(do_client, droplet)


@pytest.fixture(scope="module")
def adopted(lab, forge, tmp_path_factory):
    """`phoenix adopt` on the runbook's forge: (its report, the forge's state before and
    after)."""
    tmp = tmp_path_factory.mktemp("adopt")
    before = out(lab, FORGE, STATE)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "phoenix", "adopt"], cwd=REPO,
                          env=adopt_env(lab, tmp), capture_output=True, text=True,
                          timeout=1800, check=False)
    print(f"phoenix adopt: {time.monotonic() - started:.1f} s\n{proc.stdout}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp / "adopt" / "adopt.report.json").read_text())
    return report, before, out(lab, FORGE, STATE), tmp


# --- the tests ---------------------------------------------------------------------------------

def test_adopt_leaves_the_forge_as_it_was_and_backs_it_up(lab, adopted, store):
    report, before, after, tmp = adopted
    assert after == before          # same MainPID (never restarted), every file's sha256
    assert [s["name"] for s in report["steps"] if s["ok"]] == [
        "discover", "deploy (backup job)", "first snapshot", "test restore", "forge unchanged"]
    assert report["forge"]["config"] == INI and report["forge"]["run_user"] == "gitea"
    assert report["snapshot"] in [s["id"] for s in backup.list_snapshots(store)]
    counts = report["counts"]
    assert (counts["attachments"], counts["lfs_objects"], counts["avatars"]) == (1, 1, 1)
    timer = out(lab, FORGE, "systemctl is-enabled phoenix-backup.timer; "
                            "systemctl is-active phoenix-backup.timer").split()
    assert timer == ["enabled", "active"]
    # A second run of the adopt deploy changes nothing
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "--dry", "--json",
                           "inventories/forge.py", "adopt.py"], cwd=REPO,
                          env=adopt_env(lab, tmp), capture_output=True, text=True,
                          timeout=900, check=False)
    plan = json.loads(proc.stdout[proc.stdout.index("{"):])["plan"]
    assert [op["name"] for op in plan if op["hosts_with_change"]] == []


def recover(lab, tmp: Path, snapshot: str, secrets_dir: Path, *,
            during: dict[str, Callable[[], object]], args: tuple[str, ...] = ()
            ) -> tuple[int, dict, str]:
    """`phoenix recover --json` as the operator runs it, in the lab's environment; `during`
    maps a step's name to what to look at while that step runs (from its first line on)."""
    env = {**os.environ, **client_environment(lab), "PHOENIX_ENV": "lab",
           "PHOENIX_LAB_OFFSITE": STORE, "PHOENIX_STATE_DIR": str(tmp),
           "PHOENIX_SECRETS_DIR": str(secrets_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "phoenix", "recover", "--json",
                             "--report-dir", str(tmp), "--restore-source",
                             f"restic:{snapshot}", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:  # progress, as it runs
        said.append(line)
        step = line.strip().removeprefix("== ")
        if line.startswith("== ") and step in during:
            during[step] = during[step]()  # what it saw, in place of how to look
    out = proc.stdout.read()
    proc.wait(timeout=60)
    report = json.loads((tmp / "recovery.report.json").read_text())
    return proc.returncode, report, out + "".join(said)


def fingerprint(public: str) -> str:
    """SHA256:… of a public key line."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], input=public,
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_a_recovery_from_the_adopted_snapshot_keeps_data_and_identity(
        lab, do_client, forge, adopted, tmp_path):
    """The first real disaster: the runbook's forge (no Caddy, so no certificate in its
    snapshot) dies while its name still points at it, and `phoenix recover` brings it back:
    a certificate over DNS-01 before validation, DNS untouched until the cutover. Then the
    recovered forge dies too, its name proxied, and comes back from its own first snapshot;
    then once more from the adopted snapshot, proxied: DNS-01 again."""
    identity, files = forge
    snapshot = adopted[0]["snapshot"]
    name = load("lab")["gitea_domain"]
    server = (lab.bridge_ip, lab.dns_port)
    cf = dns.make_client(token=lab.cf_token_file.read_text().strip(), base_url=lab.cf_base_url)
    (record,) = cf.dns.records.list(zone_id=dns.zone_of(cf, name).id, name={"exact": name},
                                    type="A").result
    tmp = tmp_path / "recovery"
    dropped: list[dict] = []  # droplets a disaster took, destroyed again on the way out
    try:
        # The world before the disaster: the forge of the day holds its name (production's
        # DNS), then dies with the name still pointing at it.
        dead = droplet_target(lab, FORGE).host
        old_key = fingerprint(on(droplet_target(lab, FORGE),
                                 "cat /etc/ssh/ssh_host_ed25519_key.pub"))
        dns.cutover(records=[name], new_ip=dead, ttl=60, client=cf, saved={})
        do_client.destroy(droplet_record(lab, FORGE)["id"])
        # The lab operator's own Gitea secrets differ from the forge's: stopped, untouched.
        code, report, said = recover(lab, tmp, snapshot, lab.state_dir / "secrets", during={})
        assert code != 0
        assert [(s["name"], s["ok"]) for s in report["steps"]] == [
            ("provision", True), ("deploy", False)]
        assert "gitea_secret_key differs from [security] SECRET_KEY" in said
        assert identity["SECRET_KEY"] not in said
        new = state_target(State("recovery", tmp))
        assert on(new, "test -e /var/lib/gitea; echo $?").strip() == "1"
        # Without them, the backup's identity is carried over: the same droplet, again.
        mine = tmp_path / "secrets"
        mine.mkdir(mode=0o700)
        for path in (lab.state_dir / "secrets").iterdir():  # all but the Gitea identity
            if path.is_file() and not path.name.startswith("gitea_"):
                shutil.copy(path, mine / path.name)
        # the operator's token of the old forge, which comes back with its database
        write_secret(mine / "gitea_api_token", TOKEN)
        looked = {"certificate": lambda: resolve_a(name, *server),
                  "validate": lambda: resolve_a(name, *server)}
        # After a compromise (the old host key is the attacker's too): new host keys
        code, report, said = recover(lab, tmp, snapshot, mine, during=looked,
                                     args=("--new-host-keys",))
        assert code == 0, said[-4000:]
        # The droplet answers with a key of its own; the report names the old (the backup's)
        # and the new, and what users must do.
        new_key = fingerprint(on(new, "cat /etc/ssh/ssh_host_ed25519_key.pub"))
        pinned = fingerprint(next(line.split(None, 1)[1] for line in
                                  State("recovery", tmp).known_hosts.read_text().splitlines()))
        assert new_key == pinned and new_key != old_key
        keys = report["ssh_host_keys"]
        assert keys.startswith("NEW host keys (--new-host-keys): ssh-ed25519 " + new_key), keys
        assert f"the old forge's were ssh-ed25519 {old_key}" in keys and "ssh-keygen -R" in keys
        steps = {s["name"]: s for s in report["steps"]}
        assert list(steps) == ["provision", "deploy", "certificate", "validate", "cutover",
                               "https", "protect"]
        assert all(s["ok"] for s in steps.values())
        # DNS held the dead forge's address while the certificate came and validation ran
        assert looked == {"certificate": [dead], "validate": [dead]}
        assert steps["certificate"]["detail"].startswith("issued by DNS-01 in ")
        assert steps["https"]["detail"].startswith(f"https://{name}/api/v1/version: HTTP/2 200 "
                                                   f"from {new.host} (DNS via ")
        assert resolve_a(name, *server) == [new.host]
        # the challenge's TXT record went with the issuance
        assert cf.dns.records.list(zone_id=dns.zone_of(cf, name).id, type="TXT").result == []
        ini = fixtures.standin_module("gitea").read_ini  # the stand-in's reading of app.ini
        path = tmp_path / "app.ini"
        path.write_text(on(new, "cat /etc/gitea/app.ini"))
        got = ini(str(path))
        assert {"SECRET_KEY": got.get("security", "SECRET_KEY"),
                "INTERNAL_TOKEN": got.get("security", "INTERNAL_TOKEN"),
                "JWT_SECRET": got.get("oauth2", "JWT_SECRET"),
                "LFS_JWT_SECRET": got.get("server", "LFS_JWT_SECRET")} == identity
        assert got.get("mailer", "SMTP_ADDR") == "smtp.forge.lab.test"
        # the forge's own webhook target stays allowed, beside the wizard houses
        assert got.get("webhook", "ALLOWED_HOST_LIST") == (
            "ci.forge.lab.test,127.0.0.11/32,127.0.0.12/32,127.0.0.13/32")
        sums = on(new, "cd /var/lib/gitea/data && sha256sum " + " ".join(files))
        assert dict(reversed(line.split()) for line in sums.splitlines()) == files
        # Over HTTPS by the name through DNS, trusting the lab CA's root only
        settings = load("lab")
        session, base = https_session(name, address=new.host,
                                      trust=settings["https_trust_bundle"])
        issue = session.get(f"{base}/api/v1/repos/Timmy_Foundation/timmy-config/issues/1",
                            headers={"Authorization": f"token {TOKEN}"}, timeout=10)
        assert issue.status_code == 200

        # A disaster can strike again the second after a cutover. The recovered forge dies
        # with its name proxied by Cloudflare (turned on by the operator once it served), and
        # comes back the way any forge Phoenix recovered does: `phoenix recover` from the same
        # state folder, restic:latest (its own first full snapshot, the last to arrive).
        zone = dns.zone_of(cf, name).id
        (now,) = cf.dns.records.list(zone_id=zone, name={"exact": name}, type="A").result
        cf.dns.records.edit(now.id, zone_id=zone, name=name, type="A", ttl=1,
                            content=new.host, proxied=True)
        first = State("recovery", tmp).droplet
        dropped.append(first)
        destroyed(do_client, first)

        def a_records() -> list[tuple[str, bool]]:
            return [(r.content, r.proxied) for r in cf.dns.records.list(
                zone_id=zone, name={"exact": name}, type="A").result]

        origin = {"validate": a_records}
        code, report, said = recover(lab, tmp, "latest", mine, during=origin)
        assert code == 0, said[-4000:]
        steps = {s["name"]: s for s in report["steps"]}
        assert all(s["ok"] for s in steps.values()), steps
        newer = state_target(State("recovery", tmp))
        assert newer.host != new.host
        # the key users learnt after the first recovery is the one the second answers with
        assert fingerprint(on(newer, "cat /etc/ssh/ssh_host_ed25519_key.pub")) == new_key
        assert origin == {"validate": [(new.host, True)]}  # the dead one's, until the cutover
        assert steps["certificate"]["detail"].startswith("kept: "), steps["certificate"]
        assert steps["https"]["detail"] == (
            f"https://{name}/api/v1/version: HTTP/2 200 from {newer.host} (proxied: "
            "Cloudflare's record holds it, public DNS answers Cloudflare's edge)")
        (a,) = cf.dns.records.list(zone_id=zone, name={"exact": name}, type="A").result
        assert (a.content, a.proxied) == (newer.host, True)
        sums = on(newer, "cd /var/lib/gitea/data && sha256sum " + " ".join(files))
        assert dict(reversed(line.split()) for line in sums.splitlines()) == files

        # The first disaster again, the name proxied this time: from the adopted forge's
        # snapshot (no certificate in it), the certificate comes by DNS-01 with the record
        # proxied, and the record stays proxied, on the new origin, after the cutover.
        second = State("recovery", tmp).droplet
        dropped.append(second)
        destroyed(do_client, second)
        origin = {"certificate": a_records, "validate": a_records}
        code, report, said = recover(lab, tmp, snapshot, mine, during=origin)
        assert code == 0, said[-4000:]
        steps = {s["name"]: s for s in report["steps"]}
        assert all(s["ok"] for s in steps.values()), steps
        third = state_target(State("recovery", tmp))
        assert third.host not in (new.host, newer.host)
        assert origin == {"certificate": [(newer.host, True)], "validate": [(newer.host, True)]}
        assert steps["certificate"]["detail"].startswith("issued by DNS-01 in "), steps
        assert steps["https"]["detail"] == (
            f"https://{name}/api/v1/version: HTTP/2 200 from {third.host} (proxied: "
            "Cloudflare's record holds it, public DNS answers Cloudflare's edge)")
        (a,) = cf.dns.records.list(zone_id=zone, name={"exact": name}, type="A").result
        assert (a.content, a.proxied) == (third.host, True)
        assert cf.dns.records.list(zone_id=zone, type="TXT").result == []
        # the adopted forge's own host keys, which its users trusted first
        assert fingerprint(on(third, "cat /etc/ssh/ssh_host_ed25519_key.pub")) == old_key
    finally:
        zone = dns.zone_of(cf, name).id
        (now,) = cf.dns.records.list(zone_id=zone, name={"exact": name}, type="A").result
        cf.dns.records.edit(now.id, zone_id=zone, name=name, type="A", ttl=int(record.ttl),
                            content=record.content, proxied=record.proxied)
        made = State("recovery", tmp).droplet if (tmp / "recovery.json").exists() else None
        for droplet in [*dropped, made]:
            destroyed(do_client, droplet)

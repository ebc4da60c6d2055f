"""Adopt figures: `phoenix adopt` of the 1 GiB synthetic forge on a lab droplet,
and the size of its first snapshot beside a plain `restic backup` of the same folder.

The forge is the runbook's (phoenix.lab.fixtures.make_runbook_forge: the stand-in Gitea, its
own unit, app.ini in custom/conf, an attachment and an LFS object) grown on the droplet to
--size-mib with backup_bench's random packs and loose objects (the same 1 GiB forge). Both
adopt's repository lives on the lab's offsite store (append-only for the forge); the plain one
is `restic backup /var/lib/gitea` into a local repository on the forge (the forge's key
reaches no other repository on the store), so its time has no network in it. Prints a
table; it does not pass or fail on time. Root, the lab up.

    python3 benchmarks/adopt_bench.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.backup_bench import LOOSE, PACK_MIB, human
from phoenix.backup import snapshots as backup
from phoenix.backup.store import store_from_settings
from phoenix.lab import config as labconfig
from phoenix.lab import fixtures, offsite
from phoenix.lab.client import droplet_target
from phoenix.provision.do import DO
from phoenix.settings import REPO, load
from phoenix.sshconf import public_half, ssh_command

STORE = "offsite-abench"
NAME = "adopt-bench"
GROW = """\
import hashlib, os, sys
root = "/var/lib/gitea/data/gitea-repositories/bench"
packs, pack_mib, loose = (int(a) for a in sys.argv[1:4])
for n in range(packs):
    d = f"{root}/big-{n % 8}.git/objects/pack"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/pack-{n:040x}.pack", "wb") as out:
        out.writelines(os.urandom(1 << 20) for _ in range(pack_mib))
for n in range(loose):
    digest = hashlib.sha1(f"loose-{n}".encode()).hexdigest()
    d = f"{root}/big-{n % 8}.git/objects/{digest[:2]}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/{digest[2:]}", "wb") as out:
        out.write(os.urandom(4096))
"""


def remote(target, command: str, *, stdin: bytes | None = None, timeout: float = 3600) -> str:
    proc = subprocess.run(
        ssh_command(target, command), input=stdin, capture_output=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"adopt_bench: `{command[:60]}` failed: {proc.stderr.decode()[-500:]}")
    return proc.stdout.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    lab = labconfig.load()
    do = DO(token=lab.do_token_file.read_text().strip(), endpoint=lab.do_endpoint)
    droplet, store, state = None, None, None
    try:
        store = offsite.ensure(lab, do, name=STORE)
        fingerprint = do.ensure_key("phoenix-lab-operator", public_half(lab.ssh_key).read_text())
        droplet = do.create(
            {
                "name": NAME,
                "region": "nyc1",
                "size": "s-2vcpu-4gb",
                "image": "debian-12-x64",
                "ssh_keys": [fingerprint],
                "tags": ["phoenix-test"],
            }
        )
        do.wait_active(droplet["id"], timeout=240)
        target = droplet_target(lab, NAME)
        with tempfile.TemporaryDirectory(prefix="phoenix-adopt-bench-") as tmp:
            jwt = [
                base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
                for _ in range(2)
            ]
            fixtures.make_runbook_forge(
                Path(tmp) / "root",
                token="lab-" + uuid.uuid4().hex,
                identity={
                    "SECRET_KEY": secrets.token_hex(20),
                    "INTERNAL_TOKEN": secrets.token_hex(30),
                    "JWT_SECRET": jwt[0],
                    "LFS_JWT_SECRET": jwt[1],
                },
            )
            remote(
                target,
                "bash -c " + shlex.quote(fixtures.RUNBOOK_SETUP),
                stdin=fixtures.tar_gz(Path(tmp) / "root"),
            )
        packs = max(1, args.size_mib // PACK_MIB)
        remote(
            target,
            f"python3 - {packs} {PACK_MIB} {LOOSE} && chown -R gitea:gitea /var/lib/gitea",
            stdin=GROW.encode(),
        )
        forge_bytes = int(remote(target, "du -sb /var/lib/gitea").split()[0])

        state = Path(tempfile.mkdtemp(prefix="phoenix-adopt-bench-state-"))
        env = {
            **os.environ,
            "PHOENIX_ENV": "lab",
            "PHOENIX_LAB_OFFSITE": STORE,
            "PHOENIX_HOST": target.host,
            "PHOENIX_KNOWN_HOSTS": str(target.known_hosts),
            "PHOENIX_SSH_KEY": str(lab.ssh_key),
            "PHOENIX_STATE_DIR": str(state),
            "PHOENIX_SECRETS_DIR": str(lab.state_dir / "secrets"),
        }
        settings = {**load("lab"), **store.settings()}
        backup.init(store_from_settings(settings, key=lab.ssh_key, known_hosts=state / "kh"))

        def size(path: str) -> int:
            return int(
                remote(offsite.root_target(lab, store), f"du -sb {shlex.quote(path)}").split()[0]
            )

        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "phoenix", "adopt"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        adopt_seconds = time.monotonic() - started
        if proc.returncode != 0:
            sys.exit(f"adopt_bench: phoenix adopt failed: {proc.stderr[-800:]}")
        report = json.loads((state / "adopt" / "adopt.report.json").read_text())
        adopt_repo = size(store.path)

        # The forge's key reaches only its own repository on the store (append-only): the
        # plain backup goes to a local repository on the forge, with the job's
        # password. Its size is the comparison; its time has no network in it.
        plain = f"/var/tmp/phoenix-plain-{os.getpid()}"
        restic = (
            "RESTIC_PASSWORD_FILE=/etc/phoenix-backup/password "
            f"RESTIC_CACHE_DIR=/var/cache/phoenix-backup restic -r {plain}"
        )
        remote(target, f"{restic} init -q")
        started = time.monotonic()
        remote(target, f"{restic} backup -q /var/lib/gitea")
        plain_seconds = time.monotonic() - started
        plain_repo = int(remote(target, f"du -sb {plain}").split()[0])

        print(
            f"\nforge {human(forge_bytes)} (/var/lib/gitea), store: lab, append-only, "
            f"restic {remote(target, 'restic version').split()[1]}"
        )
        print(f"{'':34} {'seconds':>8} {'repository MiB':>15}")
        print(f"{'phoenix adopt (all steps)':34} {adopt_seconds:8.1f} {adopt_repo / 2**20:15.1f}")
        for step in report["steps"]:
            print(f"{'  ' + step['name']:34} {step['seconds']:8.1f}")
        print(
            f"{'plain restic backup, local repo':34} {plain_seconds:8.1f} "
            f"{plain_repo / 2**20:15.1f}"
        )
        files = int(remote(target, "find /var/lib/gitea -type f | wc -l"))
        print(f"forge: {forge_bytes} bytes in {files} files; snapshot counts {report['counts']}")
    finally:
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)
        if droplet is not None:
            do.destroy(droplet["id"])
        if store is not None:
            offsite.destroy(lab, do, store)


if __name__ == "__main__":
    main()

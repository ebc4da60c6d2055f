"""Backups offsite with restic, the operator's side: init, verify, now, list, prune.

The forge's hourly job (files/phoenix_backup.py) writes snapshots to `backup_repository`; from
here the operator creates that repository, proves a snapshot restores, takes a last snapshot
from a forge that still answers (runbook step 4, "if accessible"), lists what there is, and
prunes. An sftp store is append-only for the forge (backup_append_only): the forge's key
reaches only `rclone serve restic --stdio --append-only` there, which `verify` proves by
trying, with that key, what a compromised forge would (delete a pack, remove a key, forget a
snapshot, overwrite a file) and requiring rclone's refusal. Pruning is the store's timer or
the operator's, through the operator's own key.

restic reads the password from a 0600 file that lives only while it runs (never argv or the
environment); an SFTP store is reached with the operator's key and its host key pinned
(phoenix.sshconf). Failures become one PhoenixError line: the on-host job's `classify` reads
both restic >= 0.17's exit codes (10 no repository, 11 locked, 12 wrong password) and the
stderr of Debian 12's restic 0.14, which exits 1 for all of them.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoenix.backup.restic import (
    _json,
    failure,
    job_module,
    restic,
    run_restic,
)
from phoenix.backup.store import Store, repo_tag
from phoenix.errors import PhoenixError
from phoenix.scripts import load
from phoenix.settings import REPO
from phoenix.sshconf import Target

GITEA = "gitea"  # the Gitea folder at the top of every snapshot (the job's layout)


VERIFIER = REPO / "files" / "phoenix_backup_verify.py"


class BackupCheckError(PhoenixError):
    """The repository or a snapshot failed its check; `packs` names the damaged pack files."""

    def __init__(
        self, message: str, *, packs: list[str] | None = None, path: str | None = None
    ) -> None:
        super().__init__(message)
        self.packs = packs or []
        self.path = path


@dataclass
class VerifyResult:
    """What `verify` proved: the check's read subset, the restored snapshot's contents, and
    which forbidden operations the store refused the forge's key (append-only)."""

    snapshot_id: str
    snapshot_time: str
    read_data_subset: str
    counts: dict[str, int]
    files: int
    check_seconds: float
    restore_seconds: float
    refused: list[str] = field(default_factory=list)
    keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        line = (
            f"snapshot {self.snapshot_id[:8]} ({self.snapshot_time[:19]}) restores and "
            f"verifies: {self.files} files, {counts}; check read {self.read_data_subset} "
            f"of the packs in {self.check_seconds:.1f} s, restore test "
            f"{self.restore_seconds:.1f} s"
        )
        if self.refused:
            line += (
                "; append-only: the store refused the forge's key to "
                + ", ".join(self.refused)
                + f"; {self.keys} key(s) in the repository"
            )
        return line


# --- the commands ------------------------------------------------------------------------------


def init(store: Store) -> bool:
    """Create the repository unless it exists; True when it was created. An existing one that
    the password does not open is an error, never a second repository."""
    what = "open the restic repository"
    proc = run_restic(store, "cat", "config", what=what, timeout=120)
    if proc.returncode == 0:
        return False
    if job_module().classify(proc.returncode, proc.stderr) != "no-repository":
        raise failure(store, what, proc.returncode, proc.stderr)
    restic(store, "init", what="create the restic repository", timeout=300)
    return True


def list_snapshots(store: Store, *, all_hosts: bool = False) -> list[dict]:
    """The forge's snapshots, oldest first: {id, short_id, time, host, paths, tags}."""
    args = ["snapshots", "--json"]
    if not all_hosts:  # the primary line: every droplet that was the forge, one at a time
        args += [*(["--host", store.host] if store.host else []), "--tag", store.tag]
    rows = _json(restic(store, *args, what="list snapshots", timeout=300)) or []
    return parse_snapshots(rows)


def parse_snapshots(rows: list[dict]) -> list[dict]:
    snapshots = [
        {
            "id": r["id"],
            "short_id": r.get("short_id") or r["id"][:8],
            "time": r["time"],
            "host": r.get("hostname"),
            "paths": r.get("paths", []),
            "tags": r.get("tags") or [],
        }
        for r in rows
    ]
    return sorted(snapshots, key=lambda s: s["time"])


def latest_snapshot_id(store: Store) -> str:
    """The id of the forge's newest snapshot: the last to arrive on the store where the store
    shows arrivals (phoenix.backup.arrival), else the latest claimed time; an error when there
    is none. One that claims a time later than now + backup_future_tolerance is named on
    stderr and passed over either way."""
    from phoenix.backup import arrival, pitr

    snapshots = list_snapshots(store)
    future = pitr.future(snapshots, store.future_tolerance)
    for line in future.values():
        print(line, file=sys.stderr, flush=True)
    snapshots = [s for s in snapshots if s["id"] not in future]
    if not snapshots:
        raise PhoenixError(
            f"the repository {store.location} has no snapshot tagged "
            f"{store.tag!r}{f' of host {store.host!r}' if store.host else ''} "
            "yet"
            + (f" (and {len(future)} that claim a time in the future)" if future else "")
            + ": run the backup job (`phoenix backup now`)"
        )
    arrived = arrival.arrivals(store)
    if arrived is not None:
        return arrival.newest(snapshots, arrived)["id"]
    return max(snapshots, key=lambda s: pitr.parse(s["time"]))["id"]


def resolve_snapshot(store: Store, ref: str) -> str:
    """A concrete snapshot id for `latest`, an id (or its prefix), or `@TIME`."""
    if ref in ("", "latest"):
        return latest_snapshot_id(store)
    if ref.startswith("@"):  # --point-in-time: the newest at or before the time
        from phoenix.backup import pitr

        return pitr.at_or_before(list_snapshots(store), ref[1:], where=store.location)["id"]
    if not re.fullmatch(r"[0-9a-f]{4,64}", ref):
        raise PhoenixError(f"{ref!r} is not a snapshot id (hex) or 'latest'")
    rows = (
        _json(restic(store, "snapshots", "--json", ref, what=f"find snapshot {ref}", timeout=300))
        or []
    )
    if len(rows) != 1:
        raise PhoenixError(f"no single snapshot {ref} in {store.location}")
    return rows[0]["id"]


def read_manifest(store: Store, snapshot_id: str) -> bytes:
    """The manifest.json of a snapshot's Gitea folder, read without restoring it."""
    proc = restic(
        store,
        "dump",
        snapshot_id,
        f"/{GITEA}/manifest.json",
        what=f"read the manifest of snapshot {snapshot_id[:8]}",
        timeout=300,
    )
    return proc.stdout.encode()


def read_file(store: Store, snapshot_id: str, path: str, *, folder: str = GITEA) -> bytes | None:
    """A file of a snapshot's Gitea folder (e.g. app.ini), or of another top folder (`files`:
    what the job saved below its absolute path), read without restoring it; None when the
    snapshot has no such file (snapshots older than the file's place in the layout)."""
    what = f"read {path} of snapshot {snapshot_id[:8]}"
    proc = run_restic(store, "dump", snapshot_id, f"/{folder}/{path}", what=what, timeout=300)
    if proc.returncode != 0:
        if re.search(r"not found|no such file", proc.stderr, re.IGNORECASE):
            return None
        raise failure(store, what, proc.returncode, proc.stderr)
    return proc.stdout.encode()


def damaged_packs(output: str) -> list[str]:
    """Pack ids that `restic check` reports as damaged, in the order it names them."""
    found = re.findall(r"(?:[Pp]ack ID does not match, want |pack )([0-9a-f]{64})", output)
    return list(dict.fromkeys(found))


def check(store: Store, *, read_data_subset: str = "5%") -> float:
    """`restic check --read-data-subset=…`, which reads that part of the packs as a restore
    would; returns the seconds it took. A damaged pack raises BackupCheckError naming it."""
    started = time.monotonic()
    what = "check the repository"
    proc = run_restic(store, "check", f"--read-data-subset={read_data_subset}", what=what)
    if proc.returncode != 0:
        packs = damaged_packs(proc.stdout + "\n" + proc.stderr)
        if packs:
            raise BackupCheckError(
                f"the repository {store.location} is damaged: pack {packs[0]} does not match "
                f"its id{f' (and {len(packs) - 1} more)' if len(packs) > 1 else ''}; repair it "
                "from an intact copy, or forget the snapshots that use it",
                packs=packs,
            )
        raise failure(store, what, proc.returncode, proc.stderr)
    return time.monotonic() - started


def list_keys(store: Store) -> list[dict]:
    """The repository's keys: {current, id (short), userName, hostName, created}."""
    return (
        _json(
            restic(store, "key", "list", "--json", what="list the repository's keys", timeout=300)
        )
        or []
    )


def check_keys(store: Store, *, expected: int) -> int:
    """The number of keys; more than `expected` is an error that names the others. The forge
    may add a key (append-only allows adding): that gives nothing its password does not (the
    same master key), and it can remove none; but an unknown key is a sign, and restic tries
    only the first 20 keys, so a flood of them could hide the operator's."""
    keys = list_keys(store)
    if len(keys) > expected:
        others = ", ".join(
            f"{k['id']} ({k.get('userName')}@{k.get('hostName')}, {k.get('created')})"
            for k in keys
            if not k.get("current")
        )
        raise BackupCheckError(
            f"the repository {store.location} has {len(keys)} keys, {expected} expected "
            f"(backup_keys_expected): {others}. A key you did not add may come from a "
            f"compromised forge: remove it with your own key (`restic -r {store.location} "
            "key remove ID`; the forge cannot remove keys)"
        )
    return len(keys)


def keep_args(keep: Mapping[str, Any]) -> list[str]:
    """restic forget's --keep-* arguments from {hourly: 24, daily: 7, …} (zeros left out)."""
    return [
        arg
        for name in ("hourly", "daily", "weekly", "monthly")
        if int(keep.get(name) or 0)
        for arg in (f"--keep-{name}", str(int(keep[name])))
    ]


def prune(
    store: Store, *, keep: Mapping[str, Any], repo_within: str = "2d"
) -> tuple[list[dict], list[dict]]:
    """The retention policy applied with the operator's own key (the forge cannot delete):
    `restic forget --keep-… --prune` on the forge's snapshot line; returns (kept, removed)."""
    policy = keep_args(keep)
    if not policy:
        raise PhoenixError(
            "the keep-* policy keeps nothing (backup_keep_*): refusing to forget every snapshot"
        )
    before = list_snapshots(store)
    # The forge's line spans droplets (restic --host is each droplet's name): without a
    # backup_host, the policy applies to the whole line, grouped by its tags.
    line = ["--host", store.host] if store.host else ["--group-by", "tags"]
    # The repository snapshots every few minutes are kept for a while only (the
    # full snapshots keep the repositories for longer); the --prune below reclaims them.
    restic(
        store,
        "forget",
        *line,
        "--tag",
        repo_tag(store.tag),
        "--keep-within",
        repo_within,
        what="forget old repository snapshots",
    )
    restic(
        store, "forget", *line, "--tag", store.tag, *policy, "--prune", what="prune the repository"
    )
    kept = list_snapshots(store)
    left = {s["id"] for s in kept}
    return kept, [s for s in before if s["id"] not in left]


def verify(
    store: Store,
    *,
    read_data_subset: str = "5%",
    snapshot: str = "latest",
    workdir: Path | None = None,
    forge: Target | None = None,
    keys_expected: int | None = None,
) -> VerifyResult:
    """Prove the backups restore: `restic check` with a read-data subset, then the snapshot
    (default the newest) restored into a temporary folder and checked by the same verifier a
    restore runs (every checksum, the refs, PRAGMA integrity_check, the counts). With `forge`
    (the forge's own key into the store), prove too that the store refuses it every deletion
    and overwrite (phoenix.backup.appendonly); with `keys_expected`, that no key was added."""
    verifier = load(VERIFIER)
    check_seconds = check(store, read_data_subset=read_data_subset)
    snapshot_id = resolve_snapshot(store, snapshot)
    info = next(
        (s for s in list_snapshots(store, all_hosts=True) if s["id"] == snapshot_id), {"time": ""}
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phoenix-verify-", dir=workdir) as tmp:
        what = f"restore snapshot {snapshot_id[:8]} for its test"
        proc = run_restic(store, "restore", snapshot_id, "--target", tmp, what=what)
        if proc.returncode != 0:
            # restic goes on past a file it cannot read: "ignoring error for /gitea/x: …"
            bad = re.findall(r"error for (\S+?): (.+)", proc.stderr)
            if bad:
                raise BackupCheckError(
                    f"snapshot {snapshot_id[:8]} does not restore: {bad[0][0]}: {bad[0][1]}",
                    path=bad[0][0],
                )
            raise failure(store, what, proc.returncode, proc.stderr)
        folder = Path(tmp) / GITEA
        try:
            report = verifier.verify(str(folder))
        except verifier.BackupError as exc:
            raise BackupCheckError(
                f"snapshot {snapshot_id[:8]} restores, but fails its verification: {exc}",
                path=exc.path,
            ) from None
    restore_seconds = time.monotonic() - started
    refused: list[str] = []
    if forge is not None:
        from phoenix.backup import appendonly

        refused = appendonly.prove(forge)
    keys = check_keys(store, expected=keys_expected) if keys_expected else 0
    return VerifyResult(
        snapshot_id=snapshot_id,
        snapshot_time=info["time"],
        read_data_subset=read_data_subset,
        counts=report["counts"],
        files=report["files"],
        check_seconds=check_seconds,
        restore_seconds=restore_seconds,
        refused=refused,
        keys=keys,
    )


def restore_ref(source: str | None) -> str | None:
    """For restore_source "restic:latest" or "restic:<id>": the snapshot reference; else None."""
    if source and str(source).startswith("restic:"):
        return str(source)[len("restic:") :] or "latest"
    return None

"""`--point-in-time TIME`: everything restored as it was at one earlier moment.

Three sources line up on TIME: the newest full restic snapshot taken at or before it
(restore_source "restic:@TIME", resolved by phoenix.backup.snapshots.resolve_snapshot),
each database's Litestream replica restored to it (`litestream restore -timestamp`,
`phoenix-restore replay`, through litestream_restore_timestamp), and the repositories from
the newest repository snapshot after the full one and at or before TIME (`phoenix-restore
repositories --before`), both in files/phoenix_restore.py.

A snapshot named by its id is a point too: its own time bounds the replay (replay_until),
so that rolling back to a snapshot from before an incident does not bring the incident back.
"""

from __future__ import annotations

import datetime

from phoenix.errors import PhoenixError

UTC = datetime.UTC


def parse(text: str) -> datetime.datetime:
    """An ISO 8601 time (restic's nanoseconds allowed); without a zone it is UTC."""
    raw = str(text).strip()
    cleaned = raw.replace("Z", "+00:00").replace(" ", "T", 1)
    if "." in cleaned:  # restic prints nanoseconds; Python takes microseconds
        head, _, tail = cleaned.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        cleaned = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        when = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        raise PhoenixError(
            f"{raw!r} is not a time: give ISO 8601 UTC, e.g. 2026-11-28T15:04:05Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def normalize(text: str) -> str:
    """TIME as Litestream's -timestamp wants it (RFC 3339, UTC)."""
    return parse(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def future(
    snapshots: list[dict], tolerance: float, now: datetime.datetime | None = None
) -> dict[str, str]:
    """Those of `snapshots` ({id, time}) that claim a time later than now + `tolerance`
    seconds, by id, each with the line that names it. The forge writes a snapshot's time
    (restic --time, or a forged snapshot file through its append-only key): one dated 2099
    taken as the newest would stay `latest` for ever, and its age would look healthy."""
    limit = (now or datetime.datetime.now(UTC)) + datetime.timedelta(seconds=tolerance)
    return {
        s["id"]: f"snapshot {s['id'][:8]} claims {normalize(s['time'])}, later than now + "
        f"{tolerance:g} s: not taken as the newest"
        for s in snapshots
        if parse(s["time"]) > limit
    }


def at_or_before(snapshots: list[dict], when: str, *, where: str) -> dict:
    """The newest of `snapshots` ({id, time}) taken at or before `when`; an error naming the
    oldest one when there is none."""
    limit = parse(when)
    if limit > datetime.datetime.now(UTC) + datetime.timedelta(seconds=60):
        raise PhoenixError(f"--point-in-time {when} is in the future")
    earlier = [s for s in snapshots if parse(s["time"]) <= limit]
    if not earlier:
        oldest = min((s["time"] for s in snapshots), default=None)
        raise PhoenixError(
            f"{where} has no snapshot at or before {normalize(when)}"
            + (f" (the oldest is of {oldest})" if oldest else "")
        )
    return max(earlier, key=lambda s: parse(s["time"]))


def recovery_data(when: str) -> dict:
    """The deploy's overrides for a point-in-time recovery."""
    stamp = normalize(when)
    return {"restore_source": f"restic:@{stamp}", "litestream_restore_timestamp": stamp}


def replay_until(requested: str, snapshot_time: str, asked: str | None = None) -> str | None:
    """How far a restore of restic snapshot `requested` brings the databases (their replicas)
    and the repositories (the repository snapshots): a time, or None for their newest.
    restic:latest: the newest, unless `asked` (litestream_restore_timestamp); restic:@TIME:
    TIME; restic:<id>: that snapshot's own time (`snapshot_time`, as the store has it), or
    `asked` when later. A snapshot that claims a time in the future bounds nothing past
    itself either: the replicas and repository snapshots are judged on the same clock."""
    from phoenix.backup.snapshots import restore_ref

    ref = restore_ref(requested) or "latest"
    if ref == "latest":
        return normalize(asked) if asked else None
    if ref.startswith("@"):
        return normalize(asked or ref[1:])
    own = parse(snapshot_time)
    return normalize(asked) if asked and parse(asked) > own else normalize(snapshot_time)

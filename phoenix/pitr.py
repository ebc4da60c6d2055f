"""`--point-in-time TIME` (issue 21): everything restored as it was at one earlier moment.

Three sources line up on TIME: the newest full restic snapshot taken at or before it
(restore_source "restic:@TIME", resolved by phoenix.backup.resolve_snapshot), each database's
Litestream replica restored to it (`litestream restore -timestamp`, files/phoenix-litestream-
restore, through litestream_restore_timestamp), and the repositories from the newest
repository snapshot after the full one and at or before TIME (files/phoenix-backup
newer-repositories --before).
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
        cleaned = f"{head}.{tail[:min(digits, 6)]}{tail[digits:]}"
    try:
        when = datetime.datetime.fromisoformat(cleaned)
    except ValueError:
        raise PhoenixError(f"{raw!r} is not a time: give ISO 8601 UTC, e.g. "
                           "2026-11-28T15:04:05Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def normalize(text: str) -> str:
    """TIME as Litestream's -timestamp wants it (RFC 3339, UTC)."""
    return parse(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at_or_before(snapshots: list[dict], when: str, *, where: str) -> dict:
    """The newest of `snapshots` ({id, time}) taken at or before `when`; an error naming the
    oldest one when there is none."""
    limit = parse(when)
    if limit > datetime.datetime.now(UTC) + datetime.timedelta(seconds=60):
        raise PhoenixError(f"--point-in-time {when} is in the future")
    earlier = [s for s in snapshots if parse(s["time"]) <= limit]
    if not earlier:
        oldest = min((s["time"] for s in snapshots), default=None)
        raise PhoenixError(f"{where} has no snapshot at or before {normalize(when)}"
                           + (f" (the oldest is of {oldest})" if oldest else ""))
    return max(earlier, key=lambda s: parse(s["time"]))


def recovery_data(when: str) -> dict:
    """The deploy's overrides for a point-in-time recovery."""
    stamp = normalize(when)
    return {"restore_source": f"restic:@{stamp}", "litestream_restore_timestamp": stamp}

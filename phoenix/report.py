"""The timed report of a recovery or a drill: terminal table, JSON, Markdown and a picture.

One unit everywhere: durations are h:mm:ss in what people read and seconds in the JSON. Every
measured figure is labelled with where it was measured (the lab: droplets on one machine, a
local package mirror; or production), next to the manual runbook's estimate for a real VPS.
The Markdown carries a Mermaid gantt of the steps; `save` also writes an SVG of measured vs
runbook time per step (log scale: seconds and hours on one axis), drawn by hand.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from phoenix import runbook
from phoenix.console import Say
from phoenix.context import current

# What the manual runbook says each part of `phoenix recover` takes (seconds), and where it
# says so: read from the runbook's table (phoenix/runbook.py).
RUNBOOK = {phase: runbook.estimate(phase) for phase in runbook.PHASES}
RUNBOOK_TOTAL = (runbook.TOTAL_MINUTES[0] * 60, runbook.TOTAL_MINUTES[1] * 60)
# Readable names for the figures a drill adds (keys of Report.extra).
LABELS = {
    "rto_seconds": "RTO: from the disaster to DNS on the new droplet",
    "rpo_seconds": "RPO: from the last snapshot to the disaster",
    "snapshot": "snapshot restored",
    "written_before_snapshot": "items written before the snapshot",
    "data_compared": "compared after recovery (came back / were there)",
    "logins_after_recovery": "logins on the recovered forge",
    "data_lost_up_to_snapshot": "data lost up to the snapshot",
    "written_after_snapshot_and_lost": "written after the full snapshot and lost",
    "setup": "drill setup (not part of the RTO)",
    "certificate": "HTTPS certificate of the recovered forge",
    "rpo_by_kind": "RPO per kind, writes going on until the disaster",
    "frequent_snapshot_interval": "frequent snapshots: at most this many seconds of files lost",
    "frequent_snapshot_run_budget": "frequent snapshots: seconds one run may take",
    "repo_snapshot_last_run": "the primary's last frequent snapshot run",
    "ssh_host_keys": "SSH host keys of the recovered forge",
    "git_over_ssh_after_recovery": "git over SSH after recovery, with the known_hosts users had",
}


def rpo_line(kind: str, v: dict) -> str:
    """One kind of phoenix.lab.rpo.measure's: the promise's bound (the oldest write lost) and
    the RPO's upper bound (the newest recovered, the writes' spacing included), apart."""
    line = f"{kind} {v['recovered']}/{v['written']} came back"
    lost = v.get("oldest_lost_s_before_disaster")
    line += (
        ", none lost"
        if lost is None
        else f", the oldest lost was written {lost:.1f} s before the disaster"
    )
    if "promise_seconds" in v:
        line += f" (promise: none older than {v['promise_seconds']:g} s lost: " + (
            "kept)" if v["promise_kept"] else "NOT kept)"
        )
    return line + f"; RPO {v['rpo_seconds']:.1f} s (disaster - newest recovered)"


def hms(seconds: float | None) -> str:
    """12.3 → '0:00:12', 3900 → '1:05:00'; None → '-'."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def clock(seconds: float) -> str:
    """An offset as a zero-padded clock time, as Mermaid's `dateFormat HH:mm:ss` parses it."""
    return hms(seconds).zfill(8)


def text(value: Any) -> str:
    """A value as a person reads it: lists joined, nothing as 'none', never a Python repr."""
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, list | tuple):
        return "; ".join(text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {text(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""
    start: float = 0.0  # seconds after the report's first step began


@dataclass
class Report:
    title: str
    steps: list[Step] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    # where the figures were measured: "lab" (PHOENIX_ENV=lab) or "production"
    where: str = field(
        default_factory=lambda: "lab" if current().env_name == "lab" else "production"
    )
    folder: Path | None = None  # where `save` wrote it
    error: str = ""  # why the step that failed failed, in full (its detail: the first line)
    _origin: float | None = None

    @property
    def total(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def measured(self) -> str:
        return "lab measured" if self.where == "lab" else "measured"

    def timed(self, name: str, fn: Callable[[], str | None], say: Say) -> None:
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        step = Step(name, start=now - self._origin)
        self.steps.append(step)
        say(f"== {name}")
        try:
            step.detail = fn() or ""
            step.ok = True
        except BaseException as exc:
            # the saved report and its --json say why, not only that it failed
            self.error = (
                "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else str(exc) or type(exc).__name__
            )
            step.detail = self.error.splitlines()[0].rstrip(":")
            raise
        finally:
            step.seconds = time.monotonic() - now
            say(f"== {name}: {'ok' if step.ok else 'FAILED'} in {hms(step.seconds)}")

    def _extras(self) -> list[tuple[str, str]]:
        rows = []
        for key, value in self.extra.items():
            label = LABELS.get(key, key.replace("_", " "))
            if key.endswith("_seconds"):
                shown = f"{hms(value)} ({self.where})"
            elif key == "data_compared":
                shown = "; ".join(
                    f"{kind} {v['same']}/{v['compared']}"
                    + (f" (lost: {text(v['lost'])})" if v["lost"] else "")
                    for kind, v in value.items()
                )
            elif key == "rpo_by_kind":
                shown = "; ".join(rpo_line(kind, v) for kind, v in value.items())
            elif key == "repo_snapshot_last_run" and isinstance(value, dict):
                shown = (
                    value.get("error")
                    or f"{value.get('time')}: {value.get('duration_seconds')} s "
                    f"(budget {value.get('budget_seconds')} s): "
                    + (value.get("over_budget") or "within its budget")
                )
            elif isinstance(value, dict):
                shown = ", ".join(
                    f"{k} {hms(v) if isinstance(v, int | float) else text(v)}"
                    for k, v in value.items()
                )
            else:
                shown = text(value)
            rows.append((label, shown))
        return rows

    def _legend(self) -> str:
        if self.where == "lab":
            return (
                "measured: this lab (systemd-nspawn droplets on one machine, packages from "
                "a local mirror); runbook: the manual estimate for a real VPS. "
                "Durations in h:mm:ss."
            )
        return "runbook: the manual estimate. Durations in h:mm:ss."

    def table(self) -> str:
        rows = [self.title, f"{'step':<12} {self.measured:>12}  {'runbook':>9}  detail"]
        for s in self.steps:
            book = hms(RUNBOOK.get(s.name, (None,))[0])
            rows.append(
                f"{s.name:<12} {hms(s.seconds):>12}  {book:>9}"
                f"  {'' if s.ok else 'FAILED '}{s.detail}"
            )
        low, high = RUNBOOK_TOTAL
        rows.append(f"{'total':<12} {hms(self.total):>12}  {hms(low)}-{hms(high)}")
        rows += [f"{label}: {shown}" for label, shown in self._extras()]
        rows.append(self._legend())
        if self.folder:
            rows.append(f"report, timeline and logs in {self.folder}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        """Seconds throughout; `measured_in` says where."""
        return {
            "title": self.title,
            "measured_in": self.where,
            "total_seconds": round(self.total, 1),
            "runbook_total_seconds": list(RUNBOOK_TOTAL),
            "steps": [
                {
                    "name": s.name,
                    "seconds": round(s.seconds, 1),
                    "ok": s.ok,
                    "start_seconds": round(s.start, 1),
                    "detail": s.detail,
                    "runbook_seconds": RUNBOOK.get(s.name, (None,))[0],
                    "runbook_says": RUNBOOK.get(s.name, (None, ""))[1],
                }
                for s in self.steps
            ],
            "error": self.error or None,
            **self.extra,
        }

    def mermaid(self) -> str:
        """A gantt of the measured steps, and of the runbook's estimates beside them; times
        are offsets from the start written as clock times (HH:mm:ss, one day at most)."""
        lines = [
            "```mermaid",
            "gantt",
            f"    title {self.title.replace(':', ' ')}",
            "    dateFormat HH:mm:ss",
            "    axisFormat %H:%M:%S",
            f"    section {self.measured}",
        ]
        for n, s in enumerate(self.steps):
            status = "done" if s.ok else "crit"
            lines.append(
                f"    {s.name} :{status}, m{n}, {clock(s.start)}, {max(1, round(s.seconds))}s"
            )
        lines.append("    section runbook estimate")
        at = 0
        for n, s in enumerate(self.steps):
            book = RUNBOOK.get(s.name, (None,))[0]
            if book:
                lines.append(f"    {s.name} :r{n}, {clock(at)}, {book}s")
                at += book
        lines.append("```")
        return "\n".join(lines)

    def markdown(self, picture: str | None = None) -> str:
        lines = [
            f"# {self.title}",
            "",
            f"| step | {self.measured} | runbook estimate | detail |",
            "|---|---:|---|---|",
        ]
        for s in self.steps:
            book, why = RUNBOOK.get(s.name, (None, ""))
            lines.append(
                f"| {s.name} | {hms(s.seconds)} | "
                f"{f'{hms(book)} ({why})' if book else why or '-'} | "
                f"{'' if s.ok else '**FAILED** '}{s.detail} |"
            )
        low, high = RUNBOOK_TOTAL
        lines.append(f"| **total** | **{hms(self.total)}** | {hms(low)}–{hms(high)} | |")
        lines += ["", *(f"- **{label}**: {shown}" for label, shown in self._extras())]
        lines += ["", self._legend(), "", "## Timeline", "", self.mermaid()]
        if picture:
            lines += ["", f"![measured vs runbook time per step]({picture})"]
        return "\n".join(lines) + "\n"

    def svg(self) -> str:
        """Horizontal bars per step, measured vs runbook, on a log time axis."""
        ticks = [(t, hms(t)) for t in (1, 10, 60, 600, 3600, 8 * 3600)]
        left, width, row, top = 110, 560, 44, 50
        lo, hi = math.log10(1), math.log10(8 * 3600)

        def x(seconds: float) -> float:
            return left + width * (math.log10(max(seconds, 1)) - lo) / (hi - lo)

        rows = [
            *((s.name, s.seconds, RUNBOOK.get(s.name, (None,))[0], None) for s in self.steps),
            ("total", self.total, RUNBOOK_TOTAL[0], RUNBOOK_TOTAL[1]),
        ]
        height = top + row * len(rows) + 50
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" '
            f'height="{height}" font-family="sans-serif" font-size="12">',
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="{left}" y="20" font-size="14" font-weight="bold">'
            f"{escape(self.title)}</text>",
            f'<rect x="{left}" y="28" width="12" height="10" fill="#2b7bb9"/>'
            f'<text x="{left + 16}" y="37">{self.measured}</text>'
            f'<rect x="{left + 130}" y="28" width="12" height="10" fill="#c9c9c9"/>'
            f'<text x="{left + 146}" y="37">runbook estimate</text>'
            f'<text x="{left + width}" y="{height - 8}" text-anchor="end" fill="#666">'
            "h:mm:ss, log scale</text>",
        ]
        for tick, label in ticks:
            out.append(
                f'<line x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" '
                f'y2="{height - 40}" stroke="#e4e4e4"/>'
                f'<text x="{x(tick):.1f}" y="{height - 26}" text-anchor="middle">'
                f"{label}</text>"
            )
        for n, (name, seconds, book, upto) in enumerate(rows):
            y = top + n * row
            out.append(f'<text x="{left - 8}" y="{y + 20}" text-anchor="end">{escape(name)}</text>')
            out.append(
                f'<rect x="{left}" y="{y + 4}" width="{x(seconds) - left:.1f}" '
                f'height="14" fill="#2b7bb9"/><text x="{x(seconds) + 4:.1f}" '
                f'y="{y + 15}">{hms(seconds)}</text>'
            )
            if book:
                out.append(
                    f'<rect x="{left}" y="{y + 20}" width="{x(book) - left:.1f}" '
                    f'height="14" fill="#c9c9c9"/><text x="{x(book) + 4:.1f}" '
                    f'y="{y + 31}">{hms(book)}{"-" + hms(upto) if upto else ""}</text>'
                )
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """stem.json, stem.md and stem.svg (the picture the Markdown shows)."""
        folder.mkdir(parents=True, exist_ok=True)
        js, md, svg = (folder / f"{stem}.{ext}" for ext in ("json", "md", "svg"))
        js.write_text(json.dumps(self.to_dict(), indent=2))
        svg.write_text(self.svg())
        md.write_text(self.markdown(picture=svg.name))
        self.folder = folder
        return js, md

"""`phoenix recover`: provision → deploy (restoring the backup) → validate → cutover, timed.

Each step is idempotent, so a re-run after a failure picks up where it stopped: provision
finds its droplet, the deploy converges, validation and cutover repeat safely. The report
puts the measured time of each step beside the runbook's estimate for the same work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phoenix.errors import PhoenixError
from phoenix.settings import REPO, env_name

Say = Callable[[str], None]

# A warm standby becomes the forge: the latest snapshot over its older copy (which is set
# aside), and from now on it takes the backups.
PROMOTE = {"restore_source": "restic:latest", "restore_force": "True",
           "backup_timer_enabled": "True"}

# What the manual runbook says each part takes (minutes), for the report.
RUNBOOK_MINUTES = {
    "provision": (None, "step 1 (no estimate given)"),
    "deploy": (65, "steps 2-6: 15 + 5 + 20 + 10 + 15 min"),
    "validate": (15, "steps 7 and 9: checks after a 15 min wait"),
    "cutover": (20, "step 8: 5 min + ~15 min propagation"),
}


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class Report:
    title: str
    steps: list[Step] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(s.seconds for s in self.steps)

    def timed(self, name: str, fn: Callable[[], str | None], say: Say) -> None:
        step = Step(name)
        self.steps.append(step)
        say(f"== {name}")
        started = time.monotonic()
        try:
            step.detail = fn() or ""
            step.ok = True
        finally:
            step.seconds = time.monotonic() - started
            say(f"== {name}: {'ok' if step.ok else 'FAILED'} in {step.seconds:.1f} s")

    def table(self) -> str:
        rows = [f"{'step':<22} {'measured':>10}  {'runbook':>9}  detail"]
        for s in self.steps:
            minutes, _ = RUNBOOK_MINUTES.get(s.name, (None, ""))
            book = f"{minutes} min" if minutes else "-"
            rows.append(f"{s.name:<22} {s.seconds:>9.1f}s  {book:>9}  "
                        f"{'' if s.ok else 'FAILED '}{s.detail}")
        rows.append(f"{'total':<22} {self.total:>9.1f}s  {'4-8 h':>9}")
        for key, value in self.extra.items():
            rows.append(f"{key}: {value}")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"title": self.title, "total_seconds": round(self.total, 1),
                "steps": [{"name": s.name, "seconds": round(s.seconds, 1), "ok": s.ok,
                           "detail": s.detail,
                           "runbook_minutes": RUNBOOK_MINUTES.get(s.name, (None,))[0]}
                          for s in self.steps], **self.extra}

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| step | measured | runbook estimate | detail |",
                 "|---|---:|---|---|"]
        for s in self.steps:
            minutes, why = RUNBOOK_MINUTES.get(s.name, (None, ""))
            lines.append(f"| {s.name} | {s.seconds:.1f} s | "
                         f"{f'{minutes} min ({why})' if minutes else why or '-'} | "
                         f"{'' if s.ok else '**FAILED** '}{s.detail} |")
        lines.append(f"| **total** | **{self.total:.1f} s** | 4–8 h | |")
        for key, value in self.extra.items():
            lines += ["", f"**{key}**: {value}"]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        js, md = folder / f"{stem}.json", folder / f"{stem}.md"
        js.write_text(json.dumps(self.to_dict(), indent=2))
        md.write_text(self.markdown())
        return js, md


def run_deploy(inventory: str, *, log: Path, data: dict | None = None,
               env: dict | None = None, deploy: str = "deploy.py") -> str:
    """`pyinfra -y INVENTORY deploy.py`; the output goes to `log`, its tail into the error."""
    cmd = [sys.executable, "-m", "pyinfra", "-y", inventory, deploy]
    for key, value in (data or {}).items():
        cmd += ["--data", f"{key}={value}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})}, timeout=3600)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        raise PhoenixError("the deploy failed (pyinfra exit "
                           f"{proc.returncode}); last lines of {log}:\n" + "\n".join(tail))
    return f"log {log}"


def plan(role: str) -> list[str]:
    inv = f"inventories/{role}.py"
    return [f"provision: find or create forge-{role} (pydo), pin its host key",
            f"deploy: pyinfra {inv} deploy.py (base, layout, timmy-config, gitea, restore, "
            "backend, wizards, cron, ssh, backups)",
            "validate: the testinfra suite, per runbook step",
            "cutover: DNS A records (cloudflare) or reserved IP, old values saved"]


def recover(*, role: str = "recovery", reserved_ip: bool = False, skip_cutover: bool = False,
            say: Say = print, report_dir: Path | None = None,
            deploy_data: dict | None = None, provision_step: bool = True) -> Report:
    """The recovery; `deploy_data` overrides group_data for the deploy (e.g. the restore
    source), `provision_step=False` uses the role's droplet as it is (a standby)."""
    from phoenix import cutover as cut
    from phoenix import provision as prov
    from phoenix.inventory import target_for
    from phoenix.settings import load
    from phoenix.state import State
    from phoenix.validate import run_validation

    settings = load()
    state = State(role)
    report = Report(f"phoenix recover ({role})")
    folder = report_dir or state.folder
    do = prov.do_client()

    def provision() -> str:
        d = prov.provision(role=role, settings=settings, client=do, state=state,
                           key=prov.operator_key(), progress=say)
        return f"{d['name']} {d['ip']}"

    def validate() -> str:
        result = run_validation(target=target_for(role), settings_env=env_name(),
                                junit=folder / f"{role}.validation.xml")
        state.data["validation"] = {"passed": result.passed, "droplet_id": state.droplet["id"]}
        state.save()
        say(result.render())
        if not result.passed:
            raise PhoenixError("validation failed; the cutover did not happen")
        return f"{result.counts}"

    def cutover() -> str:
        result = cut.cutover(settings=settings, state=state, do=do, reserved_ip=reserved_ip,
                             force=False, say=say)
        return ", ".join(result)

    try:
        if provision_step:
            report.timed("provision", provision, say)
        report.timed("deploy", lambda: run_deploy(f"inventories/{role}.py", data=deploy_data,
                                                   log=folder / f"{role}.deploy.log"), say)
        report.timed("validate", validate, say)
        if not skip_cutover:
            report.timed("cutover", cutover, say)
    finally:
        report.save(folder, f"{role}.report")
    return report

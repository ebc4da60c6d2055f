"""The runbook as the index: each step of the manual VPS_RECOVERY_RUNBOOK.md (timmy-config's
docs/, the 4-8 hour recovery Phoenix replaces), what the runbook says it takes, the `tasks/`
modules that do it on the host, the `phoenix` modules that do it from the operator's machine,
and the `checks/` modules that prove it on the host.

`phoenix recover --dry`'s plan, validation's per-step summary (phoenix/validate.py) and the
report's runbook column (phoenix/report.py) are read from this table, so a step is added or
moved here once. Titles and estimates are the runbook's own words ("Time: 15 minutes"); the
rows after step 9 are what Phoenix adds that the runbook lacks or leaves as a mitigation.
"""

from __future__ import annotations

from dataclasses import dataclass

from phoenix.settings import REPO

# The parts of `phoenix recover`, in order (phoenix/recover.py), each doing some steps.
PHASES = ("provision", "deploy", "certificate", "validate", "cutover", "https", "protect")
TOTAL_MINUTES = (4 * 60, 8 * 60)  # "TOTAL ESTIMATED RECOVERY TIME: 4-8 hours"


@dataclass(frozen=True)
class Step:
    key: str  # validation names its checks after it: test_<key>_…
    title: str  # the runbook's heading, or what the row adds to it
    minutes: int | None  # the runbook's estimate; None where it gives none
    says: str  # the runbook's words for that estimate
    phase: str  # the part of `phoenix recover` that does it (PHASES)
    tasks: tuple[str, ...]  # modules of tasks/ that do it
    checks: tuple[str, ...]  # modules of checks/ that prove it on the host
    operator: tuple[str, ...] = ()  # modules of phoenix/ that do it from the operator's side

    @property
    def label(self) -> str:
        """'step 4', or the key of a row the runbook lacks ('security')."""
        return f"step {self.key[4:]}" if self.key.startswith("step") else self.key


STEPS: tuple[Step, ...] = (
    Step(
        "step1",
        "Provision Replacement VPS",
        None,
        "no estimate given",
        "provision",
        (),
        (),
        ("provision.droplet", "provision.do"),
    ),
    Step(
        "step2",
        "Install Base Dependencies",
        15,
        "15 min",
        "deploy",
        ("base", "layout"),
        ("base", "layout"),
        ("recover",),
    ),
    Step(
        "step3",
        "Deploy timmy-config Repository",
        5,
        "5 min",
        "deploy",
        ("timmy_config",),
        ("timmy_config",),
        ("recover",),
    ),
    Step(
        "step4",
        "Restore Gitea Data from Backup",
        20,
        "20 min",
        "deploy",
        ("gitea", "restore", "https"),
        ("gitea", "restore", "https"),
        ("recover", "backup.sources", "backup.importers", "forge.appini"),
    ),
    Step(
        "step5",
        "Restore FastAPI / Backend Services",
        10,
        "10 min",
        "deploy",
        ("hermes", "backend"),
        ("hermes", "backend"),
        ("recover",),
    ),
    Step(
        "step6",
        "Deploy Wizard Houses via Ansible",
        15,
        "15 min",
        "deploy",
        ("wizards", "cron", "dispatch"),
        ("wizards", "cron"),
        ("recover",),
    ),
    # Its checks (heartbeats, the fleet-health report) sit beside the wizards' and cron's.
    Step(
        "step7", "Verify Fleet Health", None, "no estimate given", "validate", (), (), ("validate",)
    ),
    Step(
        "step8",
        "Update DNS",
        20,
        "5 min + ~15 min propagation",
        "cutover",
        (),
        ("dns",),
        ("cutover.traffic", "cutover.dns", "cutover.primary"),
    ),
    Step(
        "step9",
        "Post-Recovery Validation",
        15,
        "checks after a 15 min wait",
        "validate",
        (),
        ("api", "dispatch"),
        ("validate", "cutover.after", "forge.tls"),
    ),
    # What the runbook leaves out or names only as a mitigation.
    Step(
        "security",
        "Security baseline (not in the runbook)",
        None,
        "",
        "deploy",
        ("ssh", "firewall", "hardening"),
        ("ssh", "firewall", "hardening"),
        ("recover",),
    ),
    Step(
        "backups",
        "Offsite backups (Mitigation 1)",
        None,
        "",
        "deploy",
        ("backups", "litestream"),
        ("backups", "litestream"),
        ("backup.cli", "backup.store", "backup.snapshots", "backup.replication"),
    ),
    Step(
        "standby",
        "One primary, warm standby (Mitigation 3)",
        None,
        "",
        "deploy",
        ("role", "standby"),
        ("role", "standby"),
        ("cutover.primary",),
    ),
)
# `phoenix adopt` (adopt.py, not a recovery step): the backup job on the forge of today.
ADOPT = Step(
    "adopt",
    "Back up the forge that runs today",
    None,
    "",
    "adopt",
    ("adopt",),
    ("backups",),
    ("forge.adopt", "forge.discover"),
)
# The runbook's forge has no HTTPS of its own to recover: nothing to compare with.
CERTIFICATE_SAYS = "no step: the runbook's forge has no certificate to recover"
# The https phase is the first check of step 9, after the cutover, through DNS.
HTTPS_SAYS = "step 9.1: curl -I https://forge/api/v1/version, HTTP/2 200"
# The runbook never backs the new forge up: its next backup is whenever cron runs.
PROTECT_SAYS = "no step: the new forge's first backup is the next hourly run"


def step(key: str) -> Step:
    for row in (*STEPS, ADOPT):
        if row.key == key:
            return row
    raise KeyError(key)


def of_phase(phase: str) -> list[Step]:
    return [row for row in STEPS if row.phase == phase]


def _steps_label(rows: list[Step]) -> str:
    """'step 1', 'steps 2-6', 'steps 7 and 9' for the runbook's numbered steps in `rows`."""
    numbers = [int(row.key[4:]) for row in rows if row.key.startswith("step")]
    if len(numbers) == 1:
        return f"step {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"steps {numbers[0]}-{numbers[-1]}"
    return f"steps {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def estimate(phase: str) -> tuple[int | None, str]:
    """What the runbook says a phase of `phoenix recover` takes: (seconds or None, why)."""
    if phase == "https":
        return None, HTTPS_SAYS
    if phase == "certificate":
        return None, CERTIFICATE_SAYS
    if phase == "protect":
        return None, PROTECT_SAYS
    rows = [row for row in of_phase(phase) if row.key.startswith("step")]
    timed = [row for row in rows if row.minutes is not None]
    if not timed:
        return None, f"{_steps_label(rows)} (no estimate given)"
    if len(timed) > 1:
        says = " + ".join(str(row.minutes) for row in timed) + " min"
    else:
        says = timed[0].says
    return sum(row.minutes or 0 for row in timed) * 60, f"{_steps_label(rows)}: {says}"


def task_path(module: str) -> str:
    return f"tasks/{module}.py"


def check_path(module: str) -> str:
    return f"checks/{module}.py"


def operator_path(module: str) -> str:
    return f"phoenix/{module.replace('.', '/')}.py"


CHECKS_DIR = REPO / "checks"


def check_files() -> list[str]:
    """The validation suite: every step's check modules, in the runbook's order, as paths
    (pytest collects files named on its command line whatever their names)."""
    seen: list[str] = []
    for row in STEPS:
        for module in row.checks:
            path = str(CHECKS_DIR / f"{module}.py")
            if path not in seen:
                seen.append(path)
    return seen


if __name__ == "__main__":  # the suite's files, for pytest by hand (checks/conftest.py)
    print("\n".join(check_files()))

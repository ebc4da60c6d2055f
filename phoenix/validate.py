"""`phoenix validate`: the testinfra suite of checks/ against one host, summarised per
runbook step (pass / fail / skipped and why), with the JUnit XML for the drill report. Which
modules make the suite, and the steps' titles, come from the runbook's table
(phoenix/runbook.py).

testinfra ignores --ssh-extra-args (its issue #618), so the host's pinned SSH settings go in
an ssh_config file made by phoenix.sshconf; pytest runs in a subprocess, so a broken host or
suite never takes the operator's process down with it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phoenix import runbook
from phoenix.context import current
from phoenix.errors import PhoenixError
from phoenix.settings import REPO, load
from phoenix.sshconf import Target, ssh_command, ssh_config

ALIAS = "phoenix-target"  # the Host of the generated ssh_config; testinfra sees only this
PYTEST_TIMEOUT = 900  # seconds for the whole suite

# Test names start with the step they prove: test_step4_…, test_security_….
STEPS = {row.key: row.title for row in runbook.STEPS}
STEP_OF = re.compile(rf"^test_({'|'.join(map(re.escape, STEPS))})_")


@dataclass
class Check:
    name: str  # the test's name, without the host part of its id
    status: str  # "passed", "failed" or "skipped"
    message: str = ""  # why it failed or was skipped, in the test's own words
    properties: dict[str, str] = field(default_factory=dict)  # what it measured (record_property)


@dataclass
class StepResult:
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        if "failed" in states:
            return "failed"
        return "passed" if "passed" in states else "skipped"

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "status": self.status,
            "checks": [vars(c) for c in self.checks],
        }


@dataclass
class ValidationResult:
    host: str
    passed: bool
    steps: dict[str, StepResult]
    counts: dict[str, int]
    junit: Path
    duration: float

    def to_dict(self) -> dict:
        return {
            "host": self.host,
            "passed": self.passed,
            "counts": self.counts,
            "junit": str(self.junit),
            "duration_seconds": round(self.duration, 1),
            "steps": {key: step.to_dict() for key, step in self.steps.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def measured(self, name: str) -> str | None:
        """A figure a check recorded (e.g. step 9.4's dispatch_seconds), or None."""
        for step in self.steps.values():
            for check in step.checks:
                if name in check.properties:
                    return check.properties[name]
        return None

    def render(self) -> str:
        c = self.counts
        lines = [
            (
                f"validation of {self.host}: {'PASSED' if self.passed else 'FAILED'} "
                f"({c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped "
                f"in {self.duration:.1f} s)"
            )
        ]
        width = max((len(step.title) for step in self.steps.values()), default=0)
        for key, step in self.steps.items():
            label = runbook.step(key).label if key in STEPS else key
            done = sum(ch.status == "passed" for ch in step.checks)
            ran = sum(ch.status != "skipped" for ch in step.checks)
            verdict = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}[step.status]
            tally = f"{done}/{ran}" if ran else ""
            lines.append(f"  {label:<9} {step.title:<{width}} {verdict:<8} {tally}".rstrip())
            for check in step.checks:
                if check.status != "passed":
                    mark = "x" if check.status == "failed" else "-"
                    short = check.name.removeprefix("test_")
                    lines.append(f"      {mark} {short}: {check.message}")
        lines.append(f"  JUnit XML: {self.junit}")
        return "\n".join(lines)


def _short_name(name: str) -> str:
    """test_x[ssh://phoenix-target-ezra] -> test_x[ezra]: the host is the same for all."""
    base, _, params = name.partition("[")
    params = params.rstrip("]").replace(f"ssh://{ALIAS}", "").strip("-")
    return f"{base}[{params}]" if params else base


def _first_line(text: str | None) -> str:
    """The test's own sentence out of pytest's wrapping of it."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            line = re.sub(r'^failed on (setup|teardown) with "', "", line)
            return re.sub(r"^(AssertionError|Failed|Skipped): ", "", line)
    return ""


def parse_junit(path: Path) -> list[Check]:
    """Each testcase of pytest's JUnit XML as a Check; errors in fixtures count as failures."""
    checks = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
                message = _first_line(child.get("message")) or _first_line(child.text)
                if child.tag == "error":
                    message = f"could not run: {message}"
                break
            if child.tag == "skipped":
                status = "skipped"
                message = _first_line(child.get("message")) or _first_line(child.text)
        measured = {
            p.get("name", ""): p.get("value", "") for p in case.iter("property") if p.get("name")
        }
        checks.append(Check(_short_name(case.get("name", "")), status, message, measured))
    return checks


def summarise(checks: Sequence[Check]) -> dict[str, StepResult]:
    steps = {key: StepResult(title) for key, title in STEPS.items()}
    for check in checks:
        match = STEP_OF.match(check.name)
        key = match.group(1) if match else "other"
        steps.setdefault(key, StepResult("other checks")).checks.append(check)
    return {key: step for key, step in steps.items() if step.checks}


def check_reachable(target: Target) -> None:
    """One `ssh … true`: an address with no sshd, a wrong host key or a refused key fails
    here in seconds, with the reason, before pytest starts."""
    where = f"{target.user}@{target.host}:{target.port}"
    try:
        proc = subprocess.run(
            ssh_command(target, "true"),
            check=False,
            capture_output=True,
            text=True,
            timeout=target.connect_timeout + 10,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PhoenixError(
            f"{where} did not answer SSH within {target.connect_timeout + 10} s; "
            "is the droplet up, and is this its address?"
        ) from None
    if proc.returncode == 0:
        return
    said = (proc.stderr.strip().splitlines() or ["no message"])[-1]
    if "Host key verification failed" in proc.stderr or "IDENTIFICATION HAS CHANGED" in proc.stderr:
        raise PhoenixError(
            f"{where} answered with a host key that is not the one pinned in "
            f"{target.known_hosts} (or that file pins none); refusing to "
            "validate it"
        )
    if "Permission denied" in proc.stderr:
        raise PhoenixError(f"{where} refused the key {target.key} ({said})")
    raise PhoenixError(
        f"cannot reach {where} over SSH ({said}); is the droplet up, and is "
        "this its address? (`phoenix provision`, or PHOENIX_HOST)"
    )


def run_validation(
    *,
    target: Target,
    settings_env: str | None,
    junit: Path,
    extra_args: Sequence[str] = (),
    role: str | None = None,
) -> ValidationResult:
    """Run the checks/ suite against `target` and summarise it per runbook step.

    How the CLI uses it (`phoenix validate` in phoenix/cli.py):
    ``run_validation(target=role_target(role), settings_env=env_name(), junit=PATH)``, then
    print ``.render()`` (or ``.to_json()`` for --json) and record ``.passed`` for the cutover.
    `settings_env` becomes PHOENIX_ENV of the suite (None: production defaults only), `role`
    its PHOENIX_ROLE (the suite then reads group_data/<role's group>.py as pyinfra does);
    `extra_args` go to pytest (e.g. ``["-k", "step4"]``, ``["--require-dns"]``).
    Raises PhoenixError when the host does not answer SSH or the suite cannot run at all.
    """
    load(settings_env, role=role)  # an unknown environment, or the lab's without the lab
    check_reachable(target)
    junit = Path(junit).resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    log = junit.with_suffix(".log")
    mine = {"PHOENIX_ENV": settings_env, "PHOENIX_ROLE": role}
    env = current().child_env({k: v for k, v in mine.items() if v}, drop=tuple(mine))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phoenix-validate-") as tmp:
        config = Path(tmp) / "ssh_config"
        # One connection for the whole suite (testinfra asks for ControlMaster=auto itself);
        # the master is closed below, with the folder holding its socket.
        config.write_text(ssh_config(target, alias=ALIAS) + f"  ControlPath {tmp}/cm-%C\n")
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *runbook.check_files(),
            f"--hosts=ssh://{ALIAS}",
            f"--ssh-config={config}",
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            "-q",
            *extra_args,
        ]
        with open(log, "w") as out:
            try:
                proc = subprocess.run(
                    cmd,
                    check=False,
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=PYTEST_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise PhoenixError(
                    f"the validation suite did not finish in {PYTEST_TIMEOUT} s "
                    f"on {target.host}; see {log}"
                ) from None
            finally:
                subprocess.run(
                    ["ssh", "-F", str(config), "-O", "exit", ALIAS],
                    check=False,
                    capture_output=True,
                    timeout=10,
                    stdin=subprocess.DEVNULL,
                )
    duration = time.monotonic() - started
    if proc.returncode not in (0, 1, 5) or not junit.exists():
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-8:])
        raise PhoenixError(
            f"the validation suite could not run (pytest exit "
            f"{proc.returncode}); last lines of {log}:\n{tail}"
        )
    checks = parse_junit(junit)
    counts = {
        status: sum(c.status == status for c in checks)
        for status in ("passed", "failed", "skipped")
    }
    counts["total"] = len(checks)
    passed = proc.returncode == 0 and counts["failed"] == 0 and counts["passed"] > 0
    return ValidationResult(
        host=target.host,
        passed=passed,
        steps=summarise(checks),
        counts=counts,
        junit=junit,
        duration=duration,
    )

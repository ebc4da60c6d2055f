"""The runbook's table is the index: every step's tasks/ and checks/ modules exist, every task
module is some step's, and the plan, validation and report read their steps from it."""

from __future__ import annotations

import ast
import re

from phoenix import recover, report, runbook, validate
from phoenix.settings import REPO


def _imported_tasks(path) -> set[str]:
    """The tasks/ modules a deploy file imports (tasks._speed and _ops are helpers)."""
    tree = ast.parse((REPO / path).read_text())
    return {node.module.split(".", 1)[1] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks.")
            and not node.module.split(".", 1)[1].startswith("_")}


def test_every_steps_task_and_check_module_exists():
    for row in (*runbook.STEPS, runbook.ADOPT):
        for path in [*map(runbook.task_path, row.tasks), *map(runbook.check_path, row.checks)]:
            assert (REPO / path).is_file(), f"{row.key}: no {path}"


def test_every_steps_operator_module_exists():
    for row in (*runbook.STEPS, runbook.ADOPT):
        for path in map(runbook.operator_path, row.operator):
            assert (REPO / path).is_file(), f"{row.key}: no {path}"
    assert runbook.step("step8").operator, "the cutover is the operator's: its modules are named"


def test_every_task_and_check_module_is_some_steps():
    tasks = {p.stem for p in (REPO / "tasks").glob("*.py") if not p.stem.startswith("_")}
    checks = {p.stem for p in (REPO / "checks").glob("*.py")} - {"__init__", "conftest", "helpers"}
    rows = (*runbook.STEPS, runbook.ADOPT)
    assert tasks - {m for row in rows for m in row.tasks} == set()
    assert checks - {m for row in runbook.STEPS for m in row.checks} == set()


def test_the_deploy_runs_exactly_the_deploy_phases_tasks():
    """deploy.py and the table agree: no step's task left out of the deploy, none run unlisted;
    adopt.py runs the adopt row's."""
    listed = {m for row in runbook.of_phase("deploy") for m in row.tasks}
    assert _imported_tasks("deploy.py") == listed
    assert _imported_tasks("adopt.py") == set(runbook.ADOPT.tasks)


def test_each_check_is_named_after_a_step_of_the_table():
    """Validation files a check under the step its name starts with: a name that is no key
    would land in 'other checks'."""
    for path in runbook.check_files():
        for name in re.findall(r"^def (test_\w+)", open(path).read(), flags=re.M):
            assert validate.STEP_OF.match(name), f"{path}: {name} names no step of the table"


def test_validation_suite_and_titles_come_from_the_table():
    assert validate.STEPS["step4"] == "Restore Gitea Data from Backup"
    assert list(validate.STEPS) == [row.key for row in runbook.STEPS]
    assert runbook.check_files()[0].endswith("checks/base.py")
    summary = validate.summarise([validate.Check("test_backups_timer_runs_on_the_forge_alone",
                                                 "passed"),
                                  validate.Check("test_step9_issue_create", "failed", "401")])
    assert [(k, s.status) for k, s in summary.items()] == [("step9", "failed"),
                                                          ("backups", "passed")]


def test_the_reports_runbook_column_sums_the_steps_estimates():
    assert report.RUNBOOK["deploy"] == (65 * 60, "steps 2-6: 15 + 5 + 20 + 10 + 15 min")
    assert report.RUNBOOK["validate"] == (15 * 60, "steps 7 and 9: checks after a 15 min wait")
    assert report.RUNBOOK["cutover"] == (20 * 60, "step 8: 5 min + ~15 min propagation")
    assert report.RUNBOOK["provision"] == (None, "step 1 (no estimate given)")
    assert report.RUNBOOK_TOTAL == (4 * 3600, 8 * 3600)


def test_the_dry_plan_names_every_step_and_task_of_the_deploy():
    plan = recover.plan("recovery")
    assert [line.split(":", 1)[0] for line in plan] == list(runbook.PHASES)
    deploy = plan[1]
    for row in runbook.of_phase("deploy"):
        assert f"{row.label:<9} {row.title}" in deploy
        for module in row.tasks:
            assert runbook.task_path(module) in deploy
    assert "DNS-01" in plan[2] and "DNS untouched" in plan[2]
    assert "steps 7 and 9" in plan[3] and "step 8" in plan[4]


def test_a_figure_a_check_records_is_read_from_the_junit(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest"><testcase classname="checks.dispatch" '
        'name="test_step9_4_issue_dispatched_to_each_wizard[ssh://phoenix-target]">'
        '<properties><property name="dispatch_seconds" value="4.8"/></properties>'
        '</testcase></testsuite></testsuites>')
    checks = validate.parse_junit(xml)
    assert checks[0].properties == {"dispatch_seconds": "4.8"}
    result = validate.ValidationResult(host="h", passed=True, steps=validate.summarise(checks),
                                       counts={}, junit=xml, duration=1.0)
    assert result.measured("dispatch_seconds") == "4.8"
    assert result.measured("nothing") is None

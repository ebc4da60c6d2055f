"""What the operator reads: the report in one unit without reprs, the timeline and picture,
waits as one line on a terminal, and pyinfra's operations followed as they run."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phoenix.console import Console
from phoenix.recover import DeployStream
from phoenix.report import Report, Step, hms

REPO = Path(__file__).resolve().parents[2]


def drill_report() -> Report:
    report = Report("phoenix drill (test)", where="lab")
    report.steps = [Step("provision", 12.4, True, "forge-recovery 10.0.0.5", 0.0),
                    Step("deploy", 48.9, True, "120 operations", 12.4),
                    Step("validate", 9.5, True, "41 passed, 0 failed, 2 skipped", 61.3),
                    Step("cutover", 2.2, False, "timed out", 70.8)]
    report.extra.update({"rto_seconds": 80.2, "rpo_seconds": 31.0, "snapshot": "ab12cd34",
                         "data_lost_up_to_snapshot": "none",
                         "written_after_snapshot_and_lost": ["org/repo#7", "memories/x.yaml"],
                         "setup": {"lab up": 3.1, "primary converge": 51.0}})
    return report


def test_durations_read_as_hours_minutes_seconds():
    assert [hms(s) for s in (0.4, 12.4, 65 * 60, 4 * 3600 + 1.6)] == \
        ["0:00:00", "0:00:12", "1:05:00", "4:00:02"]


def test_the_terminal_report_has_one_unit_no_reprs_and_says_lab():
    table = drill_report().table()
    assert "[" not in table and "{" not in table and "'" not in table
    assert not re.search(r"\d\s?(s|min|h)\b", table.split("measured: this lab")[0])
    assert "lab measured" in table and "measured: this lab" in table
    assert "0:00:49" in table and "1:05:00" in table          # deploy: lab vs runbook
    assert "org/repo#7; memories/x.yaml" in table and "lab up 0:00:03" in table
    assert "FAILED timed out" in table


def test_a_report_outside_the_lab_does_not_say_lab(monkeypatch):
    monkeypatch.delenv("PHOENIX_ENV", raising=False)
    report = Report("phoenix recover (recovery)")
    report.steps = [Step("deploy", 300.0, True, "", 0.0)]
    assert report.where == "production" and "lab" not in report.table()
    monkeypatch.setenv("PHOENIX_ENV", "lab")
    assert Report("phoenix recover (recovery)").where == "lab"


def test_json_is_in_seconds_and_says_where_it_was_measured():
    data = json.loads(json.dumps(drill_report().to_dict()))
    assert data["measured_in"] == "lab"
    deploy = data["steps"][1]
    assert (deploy["seconds"], deploy["runbook_seconds"], deploy["start_seconds"]) == \
        (48.9, 3900, 12.4)
    assert data["runbook_total_seconds"] == [14400, 28800]


def test_markdown_timeline_and_picture_are_saved_together(tmp_path):
    drill_report().save(tmp_path, "drill.report")
    markdown = (tmp_path / "drill.report.md").read_text()
    gantt = markdown.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert gantt.startswith("gantt\n") and "dateFormat HH:mm:ss" in gantt
    tasks = [line.strip() for line in gantt.splitlines() if " :" in line]
    assert len(tasks) == 4 + 3 and all(":" not in t.split(" :")[0] for t in tasks)  # a colon
    assert "deploy :done, m1, 00:00:12, 49s" in tasks              # would end a task's name
    assert "cutover :crit, m3, 00:01:11, 2s" in tasks
    assert "validate :r2, 01:05:00, 900s" in tasks
    assert "](drill.report.svg)" in markdown
    svg = ET.parse(tmp_path / "drill.report.svg").getroot()
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect")
            if r.get("fill") in ("#2b7bb9", "#c9c9c9") and r.get("height") == "14"]
    assert len(bars) == 5 + 4  # measured: 4 steps + total; runbook: 3 estimates + total
    # drawn to scale: the runbook's total bar is longer than the lab's
    measured_total, book_total = (float(b.get("width")) for b in bars[-2:])
    assert book_total > measured_total > 0


def test_a_wait_is_one_updating_line_on_a_terminal():
    out = io.StringIO()
    console = Console(out, tty=True)
    for _ in range(3):
        console.wait("droplet forge-recovery is new")
    console.say("== provision: ok")
    text = out.getvalue()
    assert text.count("\n") == 2 and text.count("\r\x1b[K") == 3
    assert "droplet forge-recovery is new · 0 s" in text


def test_a_wait_prints_plain_lines_only_on_change_elsewhere():
    out = io.StringIO()
    console = Console(out, tty=False)
    for status in ("new", "new", "new", "active"):
        console.wait(f"droplet is {status}")
    assert out.getvalue().splitlines() == ["droplet is new", "droplet is active"]


# What phoenix.deploy_events sends from pyinfra's callbacks during a deploy.
EVENTS = [
    {"event": "attached"},
    {"event": "start", "op": "Base | Ensure the base packages are installed"},
    {"event": "done", "op": "Base | Ensure the base packages are installed",
     "host": "10.213.96.5", "result": "changed"},
    {"event": "start", "op": "Layout | Ensure /srv/forge exists"},
    {"event": "done", "op": "Layout | Ensure /srv/forge exists", "host": "10.213.96.5",
     "result": "unchanged"},
    {"event": "start", "op": "Gitea | Ensure gitea is running"},
    {"event": "done", "op": "Gitea | Ensure gitea is running", "host": "10.213.96.5",
     "result": "failed"},
]


def test_the_deploy_is_followed_operation_by_operation():
    out = io.StringIO()
    stream = DeployStream(Console(out, tty=False))
    stream.feed("--> Starting operation: pyinfra's wording, which the view does not read\n")
    for event in EVENTS:
        stream.event(event)
    lines = out.getvalue().splitlines()
    assert "   changed  Base | Ensure the base packages are installed" in lines
    assert "   ok       Layout | Ensure /srv/forge exists" in lines
    assert "   FAILED   Gitea | Ensure gitea is running" in lines
    assert not any("wording" in line for line in lines)
    assert stream.summary() == "3 operations: 1 changed, 1 unchanged, 1 failed"


def test_the_deploys_last_status_goes_when_it_ends():
    out = io.StringIO()
    console = Console(out, tty=True)
    stream = DeployStream(console)
    stream.event({"event": "disconnect", "host": "10.213.96.5"})
    stream.close()
    console.say("== deploy: ok")
    assert out.getvalue().endswith("\r\x1b[K== deploy: ok\n")


LOCAL_DEPLOY = """\
from pyinfra.operations import files, server

from phoenix.deploy_events import attach

ATTACH
server.shell(name="Make a change", commands=["true"])
files.directory(name="Ensure the folder exists", path=FOLDER)
FAIL
"""


def local_deploy(tmp_path, *, attach: bool = True, fail: bool = False) -> tuple[str, list]:
    """A real pyinfra run on @local; what the operator saw."""
    from phoenix.errors import PhoenixError
    from phoenix.recover import run_deploy

    (tmp_path / "folder").mkdir(exist_ok=True)
    deploy = tmp_path / "deploy.py"
    deploy.write_text(LOCAL_DEPLOY.replace("FOLDER", repr(str(tmp_path / "folder")))
                      .replace("ATTACH", "attach()" if attach else "")
                      .replace("FAIL", 'server.shell(name="Fail", commands=["exit 3"])'
                               if fail else ""))
    said: list[str] = []
    try:
        detail = run_deploy("@local", deploy=str(deploy), log=tmp_path / "d.log",
                            say=said.append, timeout=300)
    except PhoenixError as exc:
        detail = str(exc)
    return detail, said


def test_a_real_deploy_is_followed_from_pyinfras_callbacks(tmp_path):
    detail, said = local_deploy(tmp_path)
    assert said[1:] == ["   preparing operations (reading facts)",
                        "   … Make a change", "   changed  Make a change",
                        "   … Ensure the folder exists", "   ok       Ensure the folder exists",
                        "   disconnecting"], said
    assert detail == "2 operations: 1 changed, 1 unchanged; log d.log"
    # pyinfra's own lines went to the log, not to the view
    assert "Starting operation" in (tmp_path / "d.log").read_text()


def test_a_failed_operation_shows_in_the_view_and_the_error(tmp_path):
    detail, said = local_deploy(tmp_path, fail=True)
    assert "   FAILED   Fail" in said
    assert detail.startswith("the deploy failed (pyinfra exit 1)")


def test_a_deploy_that_reports_nothing_says_so(tmp_path):
    detail, said = local_deploy(tmp_path, attach=False)
    assert detail.startswith("operations not reported: ")
    assert "does not call phoenix.deploy_events.attach()" in detail
    assert not [line for line in said if "changed" in line]


def test_the_deploy_files_report_their_operations():
    for deploy in ("deploy.py", "adopt.py"):
        assert "report_operations()" in (REPO / deploy).read_text(), deploy


def test_a_failed_step_says_why_in_its_detail_and_the_report(tmp_path):
    from phoenix.errors import PhoenixError

    report = Report("phoenix recover (recovery)")

    def deploy() -> str:
        raise PhoenixError("the deploy failed (pyinfra exit 1); last lines of d.log:\nboom")

    try:
        report.timed("deploy", deploy, lambda _: None)
    except PhoenixError:
        pass
    report.save(tmp_path, "r")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["steps"][0]["detail"] == "the deploy failed (pyinfra exit 1); last lines of d.log"
    assert saved["steps"][0]["ok"] is False and saved["error"].endswith("\nboom")
    assert "FAILED the deploy failed" in report.table()


def test_the_deploy_log_is_named_before_the_deploy_runs(tmp_path):
    from phoenix.recover import run_deploy

    said: list[str] = []
    from phoenix.errors import PhoenixError

    with pytest.raises(PhoenixError, match="the deploy failed"):
        run_deploy("@local", deploy="no-such-deploy.py", log=tmp_path / "d.log",
                   say=said.append, timeout=60)
    assert said[0] == f"   deploy log: {tmp_path / 'd.log'}"


def test_verbose_adds_pyinfras_own_lines_to_the_view(tmp_path):
    import os

    from phoenix.context import Context, use

    with use(Context(environ=dict(os.environ), verbosity=1)):
        detail, said = local_deploy(tmp_path)
    assert any("Starting operation" in line for line in said)
    assert "   changed  Make a change" in said and detail.startswith("2 operations")

"""Facts read in one batch (facts/batch.py) give what each read on its own gives, and are
dropped as soon as anything else runs on the host."""

from __future__ import annotations

import subprocess

from pyinfra.api import StringCommand
from pyinfra.api import facts as pyinfra_facts
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.facts.files import Directory, File, Link, Sha256File
from pyinfra.facts.server import Command

from facts import batch
from facts.markers import Marker


class LocalHost:
    """Runs commands with sh here, as the SSH connector runs them there."""

    name = "local"

    def __init__(self) -> None:
        self.commands = 0

    def run_shell_command(self, command, **_kwargs):
        self.commands += 1
        raw = command.get_raw_value() if isinstance(command, StringCommand) else command
        done = subprocess.run(["sh", "-c", raw], capture_output=True, text=True, check=False)
        return done.returncode == 0, CommandOutput(
            [OutputLine("stdout", line) for line in done.stdout.splitlines()])


def alone(cls, kwargs):
    """What pyinfra makes of the fact read on its own (status, stdout -> process/default)."""
    fact = cls()
    command = pyinfra_facts._make_command(fact.command, dict(kwargs))
    ok, output = LocalHost().run_shell_command(
        command if isinstance(command, StringCommand) else StringCommand(command))
    return fact.process(output.stdout_lines) if ok and output.stdout_lines else fact.default()


def no_atime(value):
    """A file's access time moves as its sha256 is read beside it: not compared."""
    return {k: v for k, v in value.items() if k != "atime"} if isinstance(value, dict) else value


def test_a_batch_answers_as_each_fact_alone(tmp_path):
    (tmp_path / "file").write_text("content\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "marker").write_text("abc123\n")
    specs = [
        (File, {"path": str(tmp_path / "file")}),
        (File, {"path": str(tmp_path / "missing")}),
        (Directory, {"path": str(tmp_path / "dir")}),
        (Directory, {"path": str(tmp_path / "file")}),
        (Link, {"path": str(tmp_path / "link")}),
        (Sha256File, {"path": str(tmp_path / "file")}),
        (Sha256File, {"path": str(tmp_path / "missing")}),
        (Marker, {"path": str(tmp_path / "marker")}),
        (Command, {"command": "printf 'no newline at the end'"}),
        (Command, {"command": "echo out; exit 3"}),  # failed: the default, as alone
        (Command, {"command": "cat"}),  # reads no stdin of the batch
    ]
    for few in (specs, specs[:batch.SIDE_BY_SIDE]):  # side by side, and one after the other
        host, kept = LocalHost(), batch._Kept([])
        batch._read(host, None, kept, [(str(i), cls, kw) for i, (cls, kw) in enumerate(few)],
                    {})
        assert host.commands == 1
        for i, (cls, kwargs) in enumerate(few):
            assert kept.valid(str(i)), (cls, kwargs)
            assert no_atime(kept.answers[str(i)][1]) == no_atime(alone(cls, kwargs)), (cls,
                                                                                      kwargs)


def test_anything_run_on_the_host_drops_the_kept_answers(tmp_path):
    host, kept = LocalHost(), batch._Kept([])
    batch._hosts[host.name] = kept
    try:
        batch._read(host, None, kept, [("a", File, {"path": str(tmp_path)}),
                                       ("b", Directory, {"path": str(tmp_path)})], {})
        assert kept.valid("a") and kept.valid("b")
        batch._changed(host)  # what an operation's command or upload does
        assert not kept.valid("a") and not kept.valid("b")
        batch._read(host, None, kept, [("a", File, {"path": str(tmp_path)}),
                                       ("b", Directory, {"path": str(tmp_path)})], {})
        kept.reading = True  # while a fact is read on its own: it changes nothing
        batch._changed(host)
        assert kept.valid("a")
    finally:
        del batch._hosts[host.name]


def test_the_questions_come_back_in_order_near_where_the_converge_is():
    kept = batch._Kept([["x", {}, "op1"], ["y", {}, "op1"], ["x", {}, "op2"], ["z", {}, "op3"]])
    assert kept.locate(["x", {}]) == 0
    assert kept.locate(["x", {}]) == 2  # the next one, not the first again
    assert kept.locate(["w", {}]) is None
    assert kept.locate(["z", {}]) == 3

"""Host facts read many to one SSH round trip, the same answers as one by one.

pyinfra reads every fact with its own command over SSH, when an operation asks for it: a
no-change converge is ~120 round trips of 50-150 ms. Here the facts a converge will ask for
are read together in one command (each fact's own command and `process`), and an answer is
kept only while it is true: the moment anything else runs on the host (an operation's
command, an upload, a python.call) every kept answer is dropped and the next question is
asked anew. So every answer an operation gets describes the host after everything before it
ran, exactly as a read of its own would: drift is seen and repaired as before. A fact asked
again before anything ran (the role marker, systemd's unit list) is answered from the first
read. Facts that wait (the boot wait) are never batched.

Which facts a converge asks for is known only as it asks, so the questions of the previous
converge (a fact and its arguments, never an answer) are kept in Phoenix's state folder
(facts/questions.py) and asked together at the first question of the next one; after a
change, the questions the same operation asked last time. A question the list lacks is read
on its own, as pyinfra does; a stale one costs a line of output. A shell command (pyinfra's
Command fact) is never run from the list, only when asked. `enable()` turns it on for this
process (tasks/_speed.py, from deploy.py); PHOENIX_FACT_BATCH=0 turns it off;
PHOENIX_FACT_BATCH_STATS=1 prints, at the end, how many batches were read, answers kept and
facts asked alone.
"""

from __future__ import annotations

import atexit
import copy
import importlib
import json
import secrets
import threading
from typing import Any

from pyinfra.api import StringCommand
from pyinfra.api import facts as pyinfra_facts
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.command import FunctionCommand
from pyinfra.api.host import Host

from facts import questions
from phoenix.context import current

NEVER = {"facts.boot:BootSettled"}  # waits for cloud-init and the package locks: ask live
# Any shell command: asked (and then kept) when the converge asks it, never from the list.
NOT_AHEAD = {"pyinfra.facts.server:Command"}
AFTER_CHANGE = 12  # at most this many questions of one operation asked together
SIDE_BY_SIDE = 4  # more facts than this in a batch run side by side

_original_get_fact = pyinfra_facts._get_fact
_hosts: dict[str, _Kept] = {}
_lock = threading.Lock()


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _fact_class(name: str) -> type | None:
    module, _, qualname = name.partition(":")
    if not (module.startswith("pyinfra.facts.") or module.startswith("facts.")):
        return None
    try:
        return getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        return None


class _Kept:
    """One host's kept answers, valid while `generation` has not moved."""

    def __init__(self, hints: list[list]) -> None:
        self.generation = 0
        self.reading = False
        self.answers: dict[str, tuple[int, Any]] = {}
        # [[fact name, kwargs, operation], ...] in the order the last converge asked them
        self.hints = hints
        self.cursor = 0
        self.asked: list[list] = []
        self.read_all = False
        self.hits = self.misses = self.batches = 0

    def locate(self, question: list) -> int | None:
        """Where `question` is in the list, near where the converge is in it."""
        for position in range(self.cursor, min(len(self.hints), self.cursor + 64)):
            if self.hints[position][:2] == question:
                self.cursor = position + 1
                return position
        return None

    def valid(self, key: str) -> bool:
        kept = self.answers.get(key)
        return kept is not None and kept[0] == self.generation


def _key(name: str, kwargs: dict, connector: dict) -> str:
    return json.dumps(
        [name, kwargs, {k: repr(v) for k, v in sorted(connector.items())}],
        sort_keys=True,
        default=repr,
    )


def _kept(host: Host) -> _Kept:
    with _lock:
        if host.name not in _hosts:
            _hosts[host.name] = _Kept(questions.load(host.name))
        return _hosts[host.name]


def _changed(host: Host) -> None:
    kept = _hosts.get(host.name)
    if kept is not None and not kept.reading:
        kept.generation += 1


def _batch_command(token: str, specs: list[tuple[str, type, dict]]) -> tuple[StringCommand, list]:
    """Every fact's command in its own subshell, its output followed by a TOKEN line carrying
    its exit status. Many (a converge's first read) run side by side, each output in a file of
    a private folder, printed in turn (pyinfra's Users alone takes most of a second); a few
    (one operation's, after a change) one after the other. Also the facts, as some keep what
    their command was given for `process`."""
    side_by_side = len(specs) > SIDE_BY_SIDE
    parts: list[Any] = ["d=$(mktemp", "-d)", "||", "exit", "1;"] if side_by_side else []
    made: list = []
    for _, cls, kwargs in specs:
        fact = cls()
        command = pyinfra_facts._make_command(fact.command, dict(kwargs))
        needs = pyinfra_facts._make_command(fact.requires_command, dict(kwargs))
        if needs:
            command = StringCommand(
                "if",
                "command",
                "-v",
                needs,
                ">/dev/null",
                "2>&1;",
                "then",
                "(",
                command,
                ");",
                "else",
                "echo",
                f"{token}-nocmd;",
                "fi",
            )
        if side_by_side:
            out = f'"$d/{len(made)}"'
            parts += [
                "{",
                "(",
                command,
                ")",
                f">{out}",
                "2>/dev/null",
                "</dev/null;",
                "echo",
                "$?",
                f">{out}.rc;",
                "}",
                "&",
            ]
        else:
            parts += [
                "(",
                command,
                ")",
                "2>/dev/null",
                "</dev/null;",
                "echo",
                f'"{token} {len(made)} $?";',
            ]
        made.append(fact)
    if side_by_side:
        parts += ["wait;"]
        for index in range(len(made)):
            parts += ["cat", f'"$d/{index}";', "echo", f'"{token} {index} $(cat "$d/{index}.rc")";']
        parts += ["rm", "-rf", '"$d"']
    return StringCommand(*parts), made


def _read(
    host: Host, state, kept: _Kept, specs: list[tuple[str, type, dict]], connector: dict
) -> None:
    token = f"@@phoenix-facts-{secrets.token_hex(8)}"
    kept.batches += 1
    command, made = _batch_command(token, specs)
    kept.reading = True
    try:
        status, output = host.run_shell_command(command, **connector)
    finally:
        kept.reading = False
    if not status:
        return  # asked one by one instead
    lines: list[str] = []
    for line in output.stdout_lines:
        at = line.find(token + " ")
        if at < 0:
            lines.append(line)
            continue
        if at > 0:
            lines.append(line[:at])  # the fact's last line had no newline
        index_text, _, rc = line[at + len(token) + 1 :].partition(" ")
        index = int(index_text)
        key, fact = specs[index][0], made[index]
        if lines == [f"{token}-nocmd"]:
            value = fact.default()  # its program is not installed (yet)
        elif rc.strip() == "0" and lines:
            try:
                value = fact.process(lines)
            except Exception:  # noqa: BLE001  (asked on its own, pyinfra reports it there)
                lines = []
                continue
        else:
            value = fact.default()
        kept.answers[key] = (kept.generation, value)
        lines = []


def _spec(hint: list) -> tuple[str, type, dict] | None:
    cls = _fact_class(hint[0])
    if cls is None or not isinstance(hint[1], dict):
        return None
    return hint[0], cls, hint[1]


def _get_fact(state, host, cls, args=None, kwargs=None, ensure_hosts=None, apply_failed_hosts=True):
    name = _name(cls)
    fact = cls()
    if name in NEVER or getattr(fact, "shell_executable", None) or not host.connected:
        return _original_get_fact(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
    fact_kwargs, global_kwargs = pyinfra_facts._handle_fact_kwargs(state, host, cls, args, kwargs)
    fact_kwargs = {k: v for k, v in fact_kwargs.items() if k != "self"}
    connector = {k: v for k, v in global_kwargs.items() if k in CONNECTOR_ARGUMENT_KEYS}
    kept = _kept(host)
    try:
        question = json.loads(json.dumps([name, fact_kwargs]))
    except (TypeError, ValueError):
        question = None
    if question is not None:
        kept.asked.append([*question, host.current_op_hash or ""])
        key = _key(name, fact_kwargs, connector)
        if not kept.valid(key) and not fact.check_preconditions(state, host):
            _read_ahead(host, state, kept, question, connector)
        if kept.valid(key):
            kept.hits += 1
            return copy.deepcopy(kept.answers[key][1])
    kept.misses += 1
    generation = kept.generation
    kept.reading = True  # a fact read changes nothing: the kept answers stay
    try:
        value = _original_get_fact(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
    finally:
        kept.reading = False
    if question is not None and kept.generation == generation:  # asked again: kept too
        kept.answers[_key(name, fact_kwargs, connector)] = (generation, copy.deepcopy(value))
    return value


def _read_ahead(host, state, kept: _Kept, question: list, connector: dict) -> None:
    """Read `question` together with the ones the list says come next: the whole list at the
    first question of the converge; after a change, the rest of what the same operation asked
    last time (the next operation's would be dropped by its own change anyway)."""
    position = kept.locate(question)
    if not kept.read_all:
        kept.read_all = True
        upcoming = [*kept.hints, question]
    elif position is not None:
        operation = kept.hints[position][2]
        upcoming = [question]
        for hint in kept.hints[position + 1 : position + AFTER_CHANGE]:
            if hint[2] != operation or not operation:
                break
            upcoming.append(hint)
    else:
        return
    specs: dict[str, tuple[str, type, dict]] = {}
    for hint in upcoming:
        spec = _spec(hint)
        if spec is None or spec[0] in NEVER or (spec[0] in NOT_AHEAD and hint[:2] != question):
            continue
        key = _key(spec[0], spec[2], connector)
        if key not in specs and not kept.valid(key):
            specs[key] = spec
    if len(specs) > 1:
        _read(host, state, kept, [(k, cls, kw) for k, (_, cls, kw) in specs.items()], connector)


def _invalidating(method):
    def wrapper(self, *args, **kwargs):
        _changed(self)
        try:
            return method(self, *args, **kwargs)
        finally:
            _changed(self)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapper


def _function_command(method):
    def wrapper(self, state, host, *args, **kwargs):
        _changed(host)
        try:
            return method(self, state, host, *args, **kwargs)
        finally:
            _changed(host)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapper


def enable() -> None:
    """Batch fact reads in this process (the pyinfra run of deploy.py)."""
    if current().flag("PHOENIX_FACT_BATCH", "1") == "0" or pyinfra_facts._get_fact is _get_fact:
        return
    pyinfra_facts._get_fact = _get_fact
    for method in ("run_shell_command", "put_file", "rsync"):
        if hasattr(Host, method):
            setattr(Host, method, _invalidating(getattr(Host, method)))
    FunctionCommand.execute = _function_command(  # type: ignore[method-assign]
        FunctionCommand.execute
    )
    atexit.register(questions.save, _hosts)

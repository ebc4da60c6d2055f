"""Each task declares the host data it reads (its READS, a key list as pyinfra-docker's
data_defaults names them), and every key it declares is one group_data/all.py defines: a
misspelt or a removed setting fails here, not mid-converge."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from phoenix import settings

TASKS = Path(__file__).resolve().parents[2] / "tasks"
MODULES = sorted(p.stem for p in TASKS.glob("*.py") if p.stem != "__init__")


def _is_data(node: ast.AST) -> bool:
    """`data` (the tasks' name for host.data) or `host.data` itself."""
    return (isinstance(node, ast.Name) and node.id == "data") or (
        isinstance(node, ast.Attribute) and node.attr == "data"
        and isinstance(node.value, ast.Name) and node.value.id == "host")


def reads(path: Path) -> set[str]:
    """The keys the module reads: data.KEY, data.get("KEY"), data["KEY"]."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _is_data(node.value) \
                and node.attr not in ("get", "dict"):
            keys.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and _is_data(node.func.value) \
                and node.args and isinstance(node.args[0], ast.Constant):
            keys.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and _is_data(node.value) \
                and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
    return keys


def test_the_reader_finds_each_way_of_reading():
    source = ('data = host.data\nx = data.a + data.get("b") + data["c"] + host.data.d\n'
              'y = other.e + data.get(name)\n')
    path = TASKS.parent / "tests" / "unit" / "__reads_probe.py"
    try:
        path.write_text(source)
        assert reads(path) == {"a", "b", "c", "d"}
    finally:
        path.unlink()


@pytest.mark.parametrize("name", MODULES)
def test_a_task_declares_what_it_reads_and_all_py_defines_it(name):
    read = reads(TASKS / f"{name}.py")
    declared = set(getattr(importlib.import_module(f"tasks.{name}"), "READS", ()))
    # declared may hold more: keys read through a list (`data.get(k) for k in SETTINGS`)
    assert read <= declared, f"tasks/{name}.py reads {sorted(read - declared)} undeclared"
    missing = declared - set(settings.load())
    assert not missing, f"tasks/{name}.py reads {sorted(missing)}: not in group_data/all.py"

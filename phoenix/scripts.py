"""Programs shipped to hosts (files/*.py) and the lab's stand-ins, loaded as modules here, so
that their code runs on the operator's side too: one restic failure reading, one verifier,
one reading of app.ini."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType


@functools.cache
def load(path: Path) -> ModuleType:
    """The program at `path` as a module (named after its file), loaded once."""
    loader = importlib.machinery.SourceFileLoader(path.stem, str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None  # a SourceFileLoader always gives one
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module

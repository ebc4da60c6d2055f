"""The operator side reads the same group_data the deploy does: all.py, then one override file.

`load("lab")` gives group_data/all.py updated with group_data/lab.py; the environment name
comes from PHOENIX_ENV when not given (unset: production defaults only).

Those files live in the *project folder* (deploy.py, group_data/, tasks/, files/, templates/),
not in the installed package: `phoenix --project DIR` or PHOENIX_PROJECT names it, else the
current folder or one above it, else the checkout this package was imported from.
`REPO` is that folder, looked up when first asked for (a module attribute, PEP 562).
"""

from __future__ import annotations

import runpy
import types
from pathlib import Path
from typing import Any

from phoenix.context import current
from phoenix.errors import PhoenixError

MARKERS = ("deploy.py", "group_data/all.py")


def _is_project(folder: Path) -> bool:
    return all((folder / marker).is_file() for marker in MARKERS)


def project() -> Path:
    """The project folder; a PhoenixError that says how to name one when there is none."""
    named = current().project_named
    if named:
        folder = Path(named).expanduser().resolve()
        if not _is_project(folder):
            raise PhoenixError(f"{folder} is not a Phoenix project folder (no deploy.py and "
                               "group_data/all.py); check --project / PHOENIX_PROJECT")
        return folder
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_project(folder):
            return folder
    checkout = Path(__file__).resolve().parents[1]  # an editable install or a PYTHONPATH
    if _is_project(checkout):
        return checkout
    raise PhoenixError(f"no Phoenix project folder at or above {here}: cd into your clone "
                       "(deploy.py, group_data/) or name it with --project / PHOENIX_PROJECT")


def __getattr__(name: str) -> Any:
    if name == "REPO":
        return project()
    if name == "GROUP_DATA":
        return project() / "group_data"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _public(namespace: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)}


def env_name(env: str | None = None) -> str | None:
    return env or current().env_name


def load(env: str | None = None) -> dict[str, Any]:
    group_data = project() / "group_data"
    data = _public(runpy.run_path(str(group_data / "all.py")))
    name = env_name(env)
    if name:
        path = group_data / f"{name}.py"
        if not path.exists():
            raise PhoenixError(f"no settings for environment {name!r} ({path} is missing)")
        try:
            data.update(_public(runpy.run_path(str(path))))
        except FileNotFoundError as exc:
            raise PhoenixError(f"settings for {name!r} need {exc.filename}; "
                               "is the lab up (`phoenix lab up`)?") from None
    return data

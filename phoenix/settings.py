"""The operator side reads the same group_data the deploy does: all.py, then one override file.

`load("lab")` gives group_data/all.py updated with group_data/lab.py; the environment name
comes from PHOENIX_ENV when not given (unset: production defaults only).
"""

from __future__ import annotations

import os
import runpy
import types
from pathlib import Path
from typing import Any

from phoenix.errors import PhoenixError

REPO = Path(__file__).resolve().parents[1]
GROUP_DATA = REPO / "group_data"


def _public(namespace: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)}


def env_name(env: str | None = None) -> str | None:
    return env or os.environ.get("PHOENIX_ENV") or None


def load(env: str | None = None) -> dict[str, Any]:
    data = _public(runpy.run_path(str(GROUP_DATA / "all.py")))
    name = env_name(env)
    if name:
        path = GROUP_DATA / f"{name}.py"
        if not path.exists():
            raise PhoenixError(f"no settings for environment {name!r} ({path} is missing)")
        try:
            data.update(_public(runpy.run_path(str(path))))
        except FileNotFoundError as exc:
            raise PhoenixError(f"settings for {name!r} need {exc.filename}; "
                               "is the lab up (`phoenix lab up`)?") from None
    return data

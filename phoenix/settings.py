"""The operator side reads the same group_data the deploy does, merged the way pyinfra does.

A host's data is group_data/all.py, then each of its groups' files in the order its inventory
defines them: the environment's (`lab`, PHOENIX_ENV) first, then the role's (`recovery`,
`standby`, `forge` for the primary), so the role's wins. `load("lab", role="standby")` is
what pyinfra gives a host of inventories/standby.py in the lab (tests/unit/test_settings.py
holds the two equal). A role without a file of its own adds nothing; an environment named
but missing is an error.

Those files live in the *project folder* (deploy.py, group_data/, tasks/, files/, templates/),
not in the installed package: `phoenix --project DIR` or PHOENIX_PROJECT names it, else the
current folder or one above it, else the checkout this package was imported from.
`REPO` is that folder, looked up when first asked for (a module attribute, PEP 562).
"""

from __future__ import annotations

import runpy
import types
from pathlib import Path
from typing import Any, Protocol

from phoenix.context import current
from phoenix.errors import NotConfigured

MARKERS = ("deploy.py", "group_data/all.py")


class Readable(Protocol):
    """Settings as both sides read them: load()'s dict here, pyinfra's host.data in a task."""

    def get(self, key: str, default: Any = None) -> Any: ...


def _is_project(folder: Path) -> bool:
    return all((folder / marker).is_file() for marker in MARKERS)


def project() -> Path:
    """The project folder; a PhoenixError that says how to name one when there is none."""
    named = current().project_named
    if named:
        folder = Path(named).expanduser().resolve()
        if not _is_project(folder):
            raise NotConfigured(
                f"{folder} is not a Phoenix project folder (no deploy.py and "
                "group_data/all.py); check --project / PHOENIX_PROJECT"
            )
        return folder
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_project(folder):
            return folder
    checkout = Path(__file__).resolve().parents[1]  # an editable install or a PYTHONPATH
    if _is_project(checkout):
        return checkout
    raise NotConfigured(
        f"no Phoenix project folder at or above {here}: cd into your clone "
        "(deploy.py, group_data/) or name it with --project / PHOENIX_PROJECT"
    )


def __getattr__(name: str) -> Any:
    if name == "REPO":
        return project()
    if name == "GROUP_DATA":
        return project() / "group_data"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _public(namespace: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_") and not isinstance(v, types.ModuleType)
    }


def env_name(env: str | None = None) -> str | None:
    return env or current().env_name


# The inventory group of each role (inventories/<group>.py defines it).
ROLE_GROUPS = {"recovery": "recovery", "standby": "standby", "primary": "forge"}


def groups(env: str | None = None, role: str | None = None) -> list[str]:
    """The group_data files a host reads, in pyinfra's order: all, environment, role."""
    names = ["all"]
    name = env_name(env)
    if name:
        names.append(name)
    group = ROLE_GROUPS.get(role or "", role)
    if group and group not in names:
        names.append(group)
    return names


def _group_file(name: str) -> dict[str, Any]:
    path = project() / "group_data" / f"{name}.py"
    try:
        return _public(runpy.run_path(str(path)))
    except FileNotFoundError as exc:
        raise NotConfigured(
            f"settings for {name!r} need {exc.filename}; is the lab up (`phoenix lab up`)?"
        ) from None


def load(env: str | None = None, *, role: str | None = None) -> dict[str, Any]:
    """The settings of a host of `role` (PHOENIX_ROLE when None) in environment `env`
    (PHOENIX_ENV when None)."""
    role = role or current().role
    group_data = project() / "group_data"
    name = env_name(env)
    if name and not (group_data / f"{name}.py").exists():
        raise NotConfigured(
            f"no settings for environment {name!r} ({group_data / f'{name}.py'} is missing)"
        )
    data: dict[str, Any] = {}
    for group in groups(env, role):
        if group == "all" or (group_data / f"{group}.py").exists():
            data.update(_group_file(group))
    bad = wrong_types(data)
    if bad:
        raise NotConfigured(f"{len(bad)} setting(s) of the wrong type:\n  " + "\n  ".join(bad), bad)
    return data


def schema() -> dict[str, Any]:
    """Each setting's type: group_data/all.py's annotations (`backup_keep_hourly: int = 24`)."""
    return dict(runpy.run_path(str(project() / "group_data" / "all.py")).get("__annotations__", {}))


def _fits(value: Any, kind: Any) -> bool:
    if isinstance(kind, types.UnionType):
        return any(_fits(value, k) for k in kind.__args__)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in (list, tuple):
        return isinstance(value, (list, tuple))
    return not isinstance(kind, type) or isinstance(value, kind)


def _name(kind: Any) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_name(k) for k in kind.__args__)
    names = {
        int: "a whole number",
        float: "a number",
        str: "text",
        bool: "True or False",
        list: "a list",
        tuple: "a list",
        dict: "a dict",
        type(None): "None",
    }
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def wrong_types(values: Readable) -> list[str]:
    """One line per setting whose value is not of the type all.py declares for it: said where
    the settings are read, not as a ValueError deep in the command that uses it."""
    return [
        f"setting {name} is {values.get(name)!r}, not {_name(kind)} (group_data)"
        for name, kind in schema().items()
        if not _fits(values.get(name), kind)
    ]

"""Runbook step 2: the directory structure, its owners and modes."""

from __future__ import annotations

import posixpath

from .helpers import mode


def _folder_problems(host, path: str, owner: str, wanted_mode: str | None) -> list[str]:
    """What is wrong with a folder `owner` keeps: the contract's mode when it names one,
    else at least not writable by group or others."""
    f = host.file(path)
    if not f.is_directory:
        return [f"{path} is missing (or not a folder)"]
    problems = []
    if f.user != owner:
        problems.append(f"{path} is owned by {f.user}, expected {owner}")
    if wanted_mode is not None and f.mode != int(wanted_mode, 8):
        problems.append(f"{path} is mode {mode(f)}, expected {int(wanted_mode, 8):04o}")
    elif wanted_mode is None and f.mode & 0o022:
        problems.append(f"{path} is mode {mode(f)}: writable by group or others")
    return problems


def test_step2_wizard_houses_exist(host, settings):
    root = settings["layout_wizard_root"]
    problems = _folder_problems(host, root, "root", None)
    for name in settings["wizard_names"]:
        problems += _folder_problems(
            host, posixpath.join(root, name), "root", settings.get("layout_wizard_mode")
        )
    assert not problems, "; ".join(problems)


def test_step2_hermes_home_folders_exist(host, settings):
    home, wanted = settings["layout_hermes_home"], settings.get("layout_hermes_mode")
    problems = _folder_problems(host, home, "root", wanted)
    for sub in settings["layout_hermes_dirs"]:
        problems += _folder_problems(host, posixpath.join(home, sub), "root", wanted)
    assert not problems, "; ".join(problems)


def test_step2_log_folder_exists(host, settings):
    problems = _folder_problems(
        host, settings["layout_log_dir"], "root", settings.get("layout_log_mode")
    )
    assert not problems, "; ".join(problems)

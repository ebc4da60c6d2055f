"""Runbook step 3: timmy-config checked out at the expected commit, ~/.hermes laid out by its
deploy.sh."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from .helpers import out


def _expected_commit(host, settings) -> tuple[str, str]:
    """(sha, where it comes from): the pinned commit, else the head of the branch at the
    source, asked from the operator's side."""
    if settings["timmy_config_commit"]:
        return settings["timmy_config_commit"], "timmy_config_commit"
    branch = f"refs/heads/{settings['timmy_config_branch']}"
    if settings["timmy_config_bundle"]:
        source, cmd = (
            settings["timmy_config_bundle"],
            ["git", "bundle", "list-heads", settings["timmy_config_bundle"], branch],
        )
    else:
        source, cmd = (
            settings["timmy_config_url"],
            ["git", "ls-remote", settings["timmy_config_url"], branch],
        )
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0 or not proc.stdout.split():
        pytest.skip(
            f"cannot learn the head of {branch} from {source} here; pin "
            "timmy_config_commit in group_data to check the checkout's commit"
        )
    return proc.stdout.split()[0], f"the head of {branch} at {source}"


def test_step3_timmy_config_at_expected_commit(host, settings):
    dest = settings["timmy_config_dest"]
    assert host.file(f"{dest}/.git").exists, (
        f"{dest} is not a git checkout of timmy-config (runbook step 3: git clone)"
    )
    expected, why = _expected_commit(host, settings)
    head = out(host, f"git -C {shlex.quote(dest)} rev-parse HEAD").strip()
    assert head == expected, (
        f"timmy-config in {dest} is at {head[:12]}, expected {expected[:12]} ({why})"
    )


def test_step3_timmy_config_has_no_local_changes(host, settings):
    dest = settings["timmy_config_dest"]
    changes = out(
        host, f"git -C {shlex.quote(dest)} status --porcelain --untracked-files=no"
    ).strip()
    assert not changes, (
        f"timmy-config in {dest} has local changes, so it is not the "
        f"version-controlled config: {changes.splitlines()[:5]}"
    )


def _sums(host, folder: str, names: list[str]) -> dict[str, str]:
    """relative path -> sha256 of every file under `names` inside `folder`."""
    script = (
        f"cd {shlex.quote(folder)} || exit 0; set --; "
        f"for p in {' '.join(shlex.quote(n) for n in names)}; do "
        '[ -e "$p" ] && set -- "$@" "$p"; done; '
        '[ $# -eq 0 ] || find "$@" -type f -exec sha256sum {} +'
    )
    sums = {}
    for line in out(host, f"bash -c {shlex.quote(script)}").splitlines():
        digest, _, path = line.partition("  ")
        sums[path] = digest
    return sums


def test_step3_hermes_home_laid_out_by_deploy_sh(host, settings):
    src, home = settings["timmy_config_dest"], settings["layout_hermes_home"]
    trees = ["config.yaml", *settings["layout_hermes_dirs"]]
    wanted = _sums(host, src, trees)
    assert wanted, f"{src} has none of {', '.join(trees)}: is it timmy-config?"
    found = _sums(host, home, trees)
    missing = sorted(p for p in wanted if p not in found)
    differ = sorted(p for p in wanted if p in found and found[p] != wanted[p])
    assert not missing and not differ, (
        f"{home} is not what timmy-config's deploy.sh lays out: "
        + "; ".join(
            filter(
                None,
                [
                    f"missing {', '.join(missing[:5])}" if missing else "",
                    f"different from the checkout: {', '.join(differ[:5])}" if differ else "",
                ],
            )
        )
        + f" (runbook step 3: cd {src} && ./deploy.sh)"
    )
    not_exec = out(
        host, f"find {shlex.quote(home)}/bin -type f ! -perm -u+x 2>/dev/null || true"
    ).split()
    assert not not_exec, f"scripts in {home}/bin are not executable: {', '.join(not_exec[:5])}"

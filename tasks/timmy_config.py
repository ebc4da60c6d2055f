"""Runbook step 3: timmy-config checked out from a source that does not need the dead forge
(a mirror URL, or the operator's checkout sent as a git bundle), pinned to a commit or
following a branch, and its deploy.sh run once per checked-out commit.

deploy.sh runs as root, and a mirror is something the old forge (or whoever took it) could
write: it runs only from a verified commit. Pinned (`timmy_config_commit`), the commit is its
own proof; following a branch, its tip must be signed by a key in the operator's
allowed-signers file (`timmy_config_allowed_signers`, git's `gpg.ssh.allowedSignersFile`),
checked before the checkout and again right before deploy.sh. Neither: refused, before
anything is changed (phoenix/configrepo.py).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.facts.git import GitLocalCommit, GitRemoteBranchCommit
from pyinfra.operations import files, server

from facts.markers import Marker
from phoenix import configrepo
from phoenix.errors import NotConfigured

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "phoenix_state_dir",
    "timmy_config_allowed_signers",
    "timmy_config_branch",
    "timmy_config_bundle",
    "timmy_config_commit",
    "timmy_config_dest",
    "timmy_config_home",
    "timmy_config_url",
)


def _source() -> str:
    """The git source on the host: the operator's bundle once uploaded, else the mirror URL."""
    data = host.data
    if not data.timmy_config_bundle:
        return data.timmy_config_url
    bundle = Path(data.timmy_config_bundle).expanduser()
    if not bundle.is_file():
        raise DeployError(
            f"timmy_config_bundle {bundle} does not exist: make it with "
            "`git bundle create FILE --all` in your timmy-config checkout"
        )
    dest = posixpath.join(data.phoenix_state_dir, "timmy-config.bundle")
    files.put(
        name="Ensure the operator's timmy-config bundle is on the host",
        src=str(bundle),
        dest=dest,
        user="root",
        group="root",
        mode="0600",
    )
    return dest


def verification(data) -> str:
    """How deploy.sh's commit is verified (phoenix/configrepo.py), or a DeployError."""
    try:
        return configrepo.verification(data)
    except NotConfigured as exc:
        raise DeployError(str(exc)) from None


def _verify(dest: str, signers: str | None, ref: str) -> list[StringCommand]:
    """git verify-commit `ref` against the allowed signers (nothing for a pinned commit): one
    line naming the commit when it fails."""
    if not signers:
        return []
    q = QuoteString
    refused = (
        f"timmy-config: {ref} is not signed by a key in timmy_config_allowed_signers: "
        "refusing to run its deploy.sh"
    )
    return [
        StringCommand(
            "git",
            "-C",
            q(dest),
            "-c",
            StringCommand("gpg.ssh.allowedSignersFile=", q(signers), _separator=""),
            "verify-commit",
            q(ref),
            ">/dev/null",
            "2>&1",
            "||",
            "{",
            "echo",
            q(refused),
            ">&2;",
            "exit",
            "1;",
            "}",
        )
    ]


def _check_out(
    source: str, dest: str, ref: str, what: str, signers: str | None = None, **gate
) -> None:
    """Clone if needed, fetch every branch (forced, as a mirror may be rewritten), verify
    `ref`, and check it out detached: the working tree is exactly that commit, whatever it
    was before; an unverified one is never checked out."""
    q = QuoteString
    missing = f"{what} is not in {source}: pin one that the source has"
    server.shell(
        name=f"Check out timmy-config at {what}",
        commands=[
            StringCommand(
                "test",
                "-d",
                q(f"{dest}/.git"),
                "||",
                "git",
                "clone",
                "--quiet",
                "--no-checkout",
                q(source),
                q(dest),
            ),
            StringCommand("git", "-C", q(dest), "remote", "set-url", "origin", q(source)),
            StringCommand("git", "-C", q(dest), "fetch", "--quiet", "--prune", "origin"),
            StringCommand(
                "git",
                "-C",
                q(dest),
                "cat-file",
                "-e",
                StringCommand(q(ref), "^{commit}", _separator=""),
                "2>/dev/null",
                "||",
                "{",
                "echo",
                q(missing),
                ">&2;",
                "exit",
                "1;",
                "}",
            ),
            *_verify(dest, signers, ref),
            StringCommand(
                "git", "-C", q(dest), "checkout", "--quiet", "--force", "--detach", q(ref)
            ),
        ],
        **gate,
    )


@deploy("Deploy timmy-config")
def deploy_timmy_config() -> None:
    data = host.data
    verification(data)  # before anything is changed
    dest = data.timmy_config_dest
    signers = None
    if not data.timmy_config_commit:
        signers = posixpath.join(data.phoenix_state_dir, "timmy-config.allowed_signers")
        files.put(
            name="Ensure timmy-config's allowed signers are the operator's",
            src=str(Path(data.timmy_config_allowed_signers).expanduser()),
            dest=signers,
            user="root",
            group="root",
            mode="0644",
        )
    source = _source()
    head = host.get_fact(GitLocalCommit, repo=dest)  # None on a fresh host (no git yet)
    if data.timmy_config_commit:
        commit = str(data.timmy_config_commit)
        if head != commit:
            _check_out(source, dest, commit, f"commit {commit[:12]}")
    else:
        branch = data.timmy_config_branch

        def behind() -> bool:  # asked when it runs: the bundle may have just been replaced
            tip = host.get_fact(GitRemoteBranchCommit, repo=dest, remote=source, branch=branch)
            return tip is None or tip != host.get_fact(GitLocalCommit, repo=dest)

        _check_out(source, dest, f"origin/{branch}", f"the tip of {branch}", signers, _if=behind)

    # deploy.sh runs once per commit: the marker is written only after it succeeded, and
    # compared when this runs, after the checkout above (also after a cut-off converge).
    marker = posixpath.join(data.phoenix_state_dir, "timmy-config.deployed")
    home = StringCommand("HOME=", QuoteString(data.timmy_config_home), _separator="")
    server.shell(
        name="Run timmy-config's deploy.sh for the checked-out commit",
        commands=[
            *_verify(dest, signers, "HEAD"),
            StringCommand("cd", QuoteString(dest), "&&", "env", home, "./deploy.sh"),
            StringCommand(
                "git", "-C", QuoteString(dest), "rev-parse", "HEAD", ">", QuoteString(marker)
            ),
        ],
        _if=lambda: host.get_fact(Marker, path=marker) != host.get_fact(GitLocalCommit, repo=dest),
    )

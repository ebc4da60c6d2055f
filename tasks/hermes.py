"""Runbook steps 5-6, shared part: the hermes user and programs (backend and wizards).

The bundle is pinned by sha256 and unpacked once into releases/<sha256 prefix>. The units
name that folder in ExecStart=, so a new bundle changes the units, which restarts them.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy
from pyinfra.facts.files import Directory
from pyinfra.operations import files, server

from tasks._ops import verified_file


def release_dir() -> str:
    """Where this bundle's programs live once unpacked (bin/hermes-backend, bin/hermes-wizard)."""
    sha = str(host.data.hermes_bundle_sha256).strip().lower()
    return posixpath.join(host.data.hermes_install_dir, "releases", sha[:16])


@deploy("Install the hermes programs")
def install_hermes() -> None:
    data = host.data
    user = data.hermes_user
    server.group(name=f"Ensure the {user} group exists", group=user, system=True)
    server.user(
        name=f"Ensure the {user} system user exists (the backend and wizards run as it)",
        user=user, group=user, home=data.hermes_home, shell="/usr/sbin/nologin",
        system=True, create_home=True,
    )
    files.directory(name=f"Ensure {data.hermes_home} exists, {user}'s own",
                    path=data.hermes_home, user=user, group=user, mode="0750")

    bundle = posixpath.join(data.phoenix_state_dir, "downloads", "hermes-bundle.tar.gz")
    verified_file(
        name="Ensure the hermes bundle is downloaded, its sha256 checked",
        src=data.hermes_bundle_url, dest=bundle, sha256=data.hermes_bundle_sha256,
        staging_dir=posixpath.join(data.phoenix_state_dir, "downloads"),
        setting="hermes_bundle_sha256", mode="0600",
    )
    release = release_dir()
    if not host.get_fact(Directory, path=release):  # only this operation makes it
        server.shell(
            name=f"Unpack the hermes bundle into {release}",
            commands=[StringCommand("rm", "-rf", QuoteString(release + ".tmp"), "&&",
                                    "mkdir", "-p", QuoteString(release + ".tmp"), "&&",
                                    "tar", "-xzf", QuoteString(bundle), "--no-same-owner",
                                    "-C", QuoteString(release + ".tmp"), "&&",
                                    "chmod", "-R", "go-w", QuoteString(release + ".tmp"), "&&",
                                    "mv", QuoteString(release + ".tmp"), QuoteString(release))],
        )

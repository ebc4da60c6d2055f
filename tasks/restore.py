"""Runbook step 4, restore half: Gitea's data from a backup archive, verified before anything
is stopped or touched, restored once, and never over data without being asked.

The archive (gitea.db, repositories/, custom/, and data/ and app.ini when the forge's own job
made it; manifest.json at its top, as phoenix.lab.fixtures.make_backup_archive writes it) is
staged in a folder named by its sha256 and checked there by files/phoenix-backup-verify: every
checksum, and PRAGMA integrity_check on a copy of gitea.db. A marker records the manifest
restored, read back by a fact, so a second converge restores nothing.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, QuoteString, StringCommand, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from facts.markers import Marker
from phoenix.backup import restore_ref
from phoenix.errors import PhoenixError
from tasks.backups import identify_snapshot, stage_restic_snapshot

FILES = Path(__file__).resolve().parent.parent / "files"
q = QuoteString


_IDENTIFIED: dict[tuple[str, str], tuple[str, str, str]] = {}


def identify_source(source: str) -> tuple[str, str, str]:
    """(label, stage id, manifest sha256) of restore_source, read once per host and source on
    the operator's side, so that the Gitea task (app.ini) and the restore agree on one backup
    even when "restic:latest" moves meanwhile."""
    key = (host.name, str(source))
    if key not in _IDENTIFIED:
        if restore_ref(source):
            _IDENTIFIED[key] = identify_snapshot(source)
        else:
            archive, stage_id, manifest_sha = _identify(source)
            _IDENTIFIED[key] = (archive.name, stage_id, manifest_sha)
    return _IDENTIFIED[key]


def backup_app_ini() -> tuple[str, str] | None:
    """(label, text) of the app.ini inside restore_source's Gitea folder; None without a
    source, or for a backup that holds none (the runbook's own backups: gitea.db only)."""
    source = host.data.restore_source
    if not source:
        return None
    label, stage_id, _ = identify_source(source)
    if restore_ref(source):
        from phoenix import backup

        try:
            raw = backup.read_file(backup.store_from_settings(host.data), stage_id, "app.ini")
        except PhoenixError as exc:
            raise DeployError(f"restore_source {source}: {exc}") from None
        return (label, raw.decode()) if raw is not None else None
    with tarfile.open(Path(source).expanduser(), "r:gz") as tar:
        try:
            member = tar.extractfile("app.ini")
        except KeyError:
            return None
        return (label, member.read().decode()) if member else None


def _identify(source: str) -> tuple[Path, str, str]:
    """(archive, its sha256, its manifest's sha256), read here on the operator's side."""
    archive = Path(source).expanduser()
    if not archive.is_file():
        raise DeployError(f"restore_source {archive} does not exist or is not a file: give the "
                          "backup's .tar.gz (gitea.db, repositories/, custom/, manifest.json)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            manifest = tar.extractfile("manifest.json").read()
    except (tarfile.TarError, KeyError, AttributeError, OSError, EOFError) as exc:
        raise DeployError(f"restore_source {archive} is not a backup archive with manifest.json "
                          f"at its top ({type(exc).__name__}: {exc})") from None
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return archive, digest.hexdigest(), hashlib.sha256(manifest).hexdigest()


def _set_aside(paths: list[str], aside_root: str) -> StringCommand:
    """Move each path that holds something to ASIDE/<UTC time>/<its path>; delete nothing."""
    return StringCommand(
        StringCommand("aside=", q(aside_root), "/$(date -u +%Y%m%dT%H%M%SZ);", _separator=""),
        "for", "p", "in", *[q(p) for p in paths], ";", "do",
        "if", "[", "-f", '"$p"', "]", "||", "[", "-n", '"$(ls -A "$p" 2>/dev/null)"', "];",
        "then", "install", "-d", "-m", "0700", q(aside_root), "&&",
        "mkdir", "-p", '"$aside$(dirname "$p")"', "&&", "mv", '"$p"', '"$aside$p"',
        "||", "exit", "1;", "echo", '"set aside: $p -> $aside$p";', "fi;", "done")


def _set_aside_one(path: str, aside_root: str) -> StringCommand:
    """Move one (shell-quoted) path that exists to ASIDE/<UTC time>/<its path>."""
    return StringCommand(
        "{", StringCommand("aside=", q(aside_root), "/$(date -u +%Y%m%dT%H%M%SZ);",
                           _separator=""),
        "if", "[", "-e", path, "];", "then", "mkdir", "-p", f'"$aside$(dirname {path})"',
        "&&", "mv", path, f'"$aside"{path};', "fi;", "}")


def _put_in_place(src: str, dest: str, user: str, group: str, mode: str) -> StringCommand:
    """Move a staged folder to dest (an empty folder there is replaced), owned by the user."""
    owner = f"{user}:{group}"
    return StringCommand(
        "rmdir", q(dest), "2>/dev/null;",
        "if", "[", "-d", q(src), "];", "then", "mv", "-T", q(src), q(dest), ";",
        "else", "mkdir", "-p", q(dest), ";", "fi", "&&",
        "chown", "-R", q(owner), q(dest), "&&", "chmod", mode, q(dest))


def _wait_for_api(url: str, timeout: int) -> StringCommand:
    failed = (f"Gitea did not answer 200 on {url} within {timeout} s after the restore; "
              "its last log lines follow (journalctl -u gitea)")
    return StringCommand(
        "for", "i", "in", f"$(seq {int(timeout)});", "do",
        "[", '"$(curl', "-s", "-o", "/dev/null", "-w", q("%{http_code}"), q(url), ')"', "=",
        "200", "]", "&&", "exit", "0;", "sleep", "1;", "done;",
        "echo", q(failed), ">&2;", "journalctl", "-u", "gitea", "-n", "20", "--no-pager", ">&2;",
        "exit", "1")


@deploy("Restore Gitea's data from the backup")
def restore_gitea() -> None:
    data = host.data
    files.put(
        name="Ensure the backup verifier is installed",
        src=str(FILES / "phoenix-backup-verify"), dest=data.restore_verifier_path,
        user="root", group="root", mode="0755",
    )
    has_database = bool(host.get_fact(File, path=data.gitea_db_path))
    if not data.restore_source:
        if data.gitea_start_requires_database and not has_database:
            raise DeployError("restore_source is not set and the host has no Gitea database, "
                              "so Gitea would not start: set restore_source to the backup "
                              "archive, or gitea_start_requires_database = False for a new forge")
        host.noop("no restore_source: nothing to restore")
        return

    # "restic:<id>|latest" is resolved here to one id, the same the Gitea task's app.ini used
    label, stage_id, manifest_sha = identify_source(data.restore_source)
    if restore_ref(data.restore_source):
        source = label
    else:
        archive = Path(data.restore_source).expanduser()
        source = str(archive)
    state_dir = data.restore_staging_dir
    restored_marker = posixpath.join(state_dir, "restored")
    pending_marker = posixpath.join(state_dir, "pending")
    restored = host.get_fact(Marker, path=restored_marker)
    pending = host.get_fact(Marker, path=pending_marker)
    if has_database and restored == manifest_sha:
        host.noop(f"Gitea data is already restored from {label}")
        return
    if has_database and not data.restore_force and pending != manifest_sha:
        host.noop(f"the host has Gitea data: not restoring {label} over it (set "
                  "restore_force to set that data aside and restore)")
        return

    stage = posixpath.join(state_dir, stage_id)
    unpacked = posixpath.join(stage, "unpacked")
    for path, what in ((state_dir, "restore"), (stage, f"backup {stage_id[:12]}")):
        files.directory(name=f"Ensure the staging folder of the {what} exists, root's alone",
                        path=path, user="root", group="root", mode="0700")
    if restore_ref(data.restore_source):
        stage_restic_snapshot(stage_id, unpacked)
    else:
        files.put(name=f"Ensure the backup {archive.name} is staged on the host",
                  src=str(archive), dest=posixpath.join(stage, "backup.tar.gz"),
                  user="root", group="root", mode="0600")
        server.shell(  # the restore itself is gated: this runs only when a restore is due
            name="Unpack the staged backup",
            commands=[StringCommand("rm", "-rf", q(unpacked), q(unpacked + ".tmp"), "&&",
                                    "mkdir", q(unpacked + ".tmp"), "&&",
                                    "tar", "-xzf", q(posixpath.join(stage, "backup.tar.gz")),
                                    "-C", q(unpacked + ".tmp"), "&&",
                                    "mv", q(unpacked + ".tmp"), q(unpacked))],
        )
    refused = (f"the backup {source} failed verification on {host.name}: Gitea was not "
               "stopped and its data was not touched; use a sound backup")
    server.shell(
        name="Verify the backup (checksums, integrity_check) before touching Gitea",
        commands=[StringCommand(q(data.restore_verifier_path), q(unpacked), ">",
                                q(posixpath.join(stage, "verified.json")), "||",
                                "{", "echo", q(refused), ">&2;", "exit", "2;", "}")],
    )

    user, group = data.gitea_user, data.gitea_group
    db = data.gitea_db_path
    custom = posixpath.join(data.gitea_work_dir, "custom")
    files.put(name="Record that this restore is under way",
              src=io.StringIO(manifest_sha + "\n"), dest=pending_marker, mode="0600")
    server.shell(name="Stop Gitea for the restore", commands=["systemctl stop gitea.service"])
    server.shell(
        name="Set the Gitea data found on the host aside",
        commands=[_set_aside([db, db + "-wal", db + "-shm", db + "-journal",
                              data.gitea_repo_root, custom], data.restore_aside_dir)],
    )
    server.shell(
        name="Put the backup's database, repositories and custom/ in place",
        commands=[
            StringCommand("install", "-d", "-o", user, "-g", group, "-m", "0750",
                          q(posixpath.dirname(db))),
            StringCommand("mv", q(posixpath.join(unpacked, "gitea.db")), q(db), "&&",
                          "chown", q(f"{user}:{group}"), q(db), "&&", "chmod", "0600", q(db)),
            _put_in_place(posixpath.join(unpacked, "repositories"), data.gitea_repo_root,
                          user, group, "0750"),
            _put_in_place(posixpath.join(unpacked, "custom"), custom, user, group, "0750"),
        ],
    )
    app_data = posixpath.join(data.gitea_work_dir, "data")
    server.shell(  # attachments, avatars, LFS, packages, jwt/…: each beside gitea.db
        name="Put the backup's Gitea data folder (attachments, avatars, LFS…) in place",
        commands=[StringCommand(
            StringCommand("src=", q(posixpath.join(unpacked, "data")), ";", _separator=""),
            StringCommand("data=", q(app_data), ";", _separator=""),
            "[", "-d", '"$src"', "]", "||", "exit", "0;",
            "for", "e", "in", '"$src"/*', '"$src"/.[!.]*;', "do",
            "[", "-e", '"$e"', "]", "||", "continue;", 'n=$(basename "$e");',
            _set_aside_one('"$data/$n"', data.restore_aside_dir), "||", "exit", "1;",
            "mv", "-T", '"$e"', '"$data/$n"', "&&",
            "chown", "-R", q(f"{user}:{group}"), '"$data/$n"', "||", "exit", "1;", "done")],
    )
    if restore_ref(data.restore_source) and data.backup_paths:
        # A snapshot also holds the folders of backup_paths (the hermes memories) below
        # <unpacked>.files/<their path>: each goes back where it was, what is there set aside.
        extra = [p.rstrip("/") for p in data.backup_paths]
        # The Hermes houses must not write into their state while it is swapped under them;
        # their task starts them again (absent units on a fresh host: nothing to stop).
        houses = ["hermes-backend.service",
                  *[f"hermes-{w}.service" for w in data.wizard_names]]
        server.shell(
            name="Put the backup's other folders (backup_paths) back in place",
            commands=[StringCommand("systemctl", "stop", *houses, "2>/dev/null", "||", "true"),
                      StringCommand(
                "for", "p", "in", *[q(p) for p in extra], ";", "do",
                StringCommand("src=", q(unpacked + ".files"), '"$p";', _separator=""),
                "[", "-e", '"$src"', "]", "||", "continue;",
                _set_aside_one('"$p"', data.restore_aside_dir), "||", "exit", "1;",
                "mkdir", "-p", '"$(dirname "$p")"', "&&", "mv", "-T", '"$src"', '"$p"',
                "||", "exit", "1;", "done")],
        )
    systemd.service(name="Start Gitea on the restored data", service="gitea.service",
                    running=True, restarted=True)
    address = "127.0.0.1" if data.gitea_http_addr in ("0.0.0.0", "::") else data.gitea_http_addr
    server.shell(
        name="Wait for Gitea's API to answer",
        commands=[_wait_for_api(f"http://{address}:{data.gitea_http_port}/api/v1/version",
                                data.gitea_ready_timeout)],
    )
    ini = posixpath.join(data.gitea_config_dir, "app.ini")
    for what in ("hooks", "keys"):
        server.shell(
            name=f"Regenerate Gitea's {what} for this host, as {user}",
            commands=[StringCommand(q(data.gitea_binary_path), "--config", q(ini),
                                    "admin", "regenerate", what)],
            _sudo=True, _sudo_user=user, _chdir=data.gitea_work_dir,
        )
    files.put(name=f"Record that {label} is restored",
              src=io.StringIO(manifest_sha + "\n"), dest=restored_marker, mode="0600")
    files.file(name="Clear the under-way record", path=pending_marker, present=False)

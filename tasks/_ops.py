"""Two operations pyinfra lacks, shared by the tasks (this module is not a task).

- verified_file: files.download moves the file into place *before* it checks the sum, so a
  wrong binary lands; here the download is checked in a staging folder first.
- secret_file: files.put/template print the content with --diff; a file holding secrets
  must never reach the output.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.api import (
    FileUploadCommand,
    OperationValueError,
    QuoteString,
    StringCommand,
    operation,
)
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations.util.files import chmod, chown, ensure_mode_int


def _owner_and_mode(dest: str, user: str, group: str, mode: str):
    """The chown/chmod needed to bring an existing file to user:group and mode."""
    info: dict = host.get_fact(File, path=dest) or {}  # type: ignore[arg-type]  # pyinfra's File fact is typed as a union
    if (info.get("user"), info.get("group")) != (user, group):
        yield chown(dest, user, group)
    if info.get("mode") != ensure_mode_int(mode):
        yield chmod(dest, mode)


@operation()
def verified_file(
    src: str,
    dest: str,
    sha256: str,
    *,
    staging_dir: str,
    setting: str,
    user: str = "root",
    group: str = "root",
    mode: str = "0644",
):
    """
    Install the file at URL `src` as `dest` once its sha256 is `sha256`; on a mismatch stop
    and leave `dest` as it was. `setting` names the pinned sum in the error.
    """
    sha256 = str(sha256).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise OperationValueError(
            f"{setting} is not a sha256 (64 hex digits): set it to the published sha256 of {src}"
        )
    if host.get_fact(Sha256File, path=dest) == sha256:
        commands = list(_owner_and_mode(dest, user, group, mode))
        if not commands:
            host.noop(f"{dest} already has sha256 {sha256[:12]}…")
        yield from commands
        return
    staged = posixpath.join(staging_dir, f"{posixpath.basename(dest)}.{sha256[:12]}.part")
    fresh = f"{dest}.phoenix-new"
    refusal = (
        f"{setting} mismatch: {src} does not have sha256 {sha256}; {dest} was left as "
        f"it was (check the URL and the pinned sum). The download's sha256 is"
    )
    yield StringCommand("install", "-d", "-m", "0700", QuoteString(staging_dir))
    yield StringCommand(
        "curl", "-fsSL", "--retry", "3", "-o", QuoteString(staged), QuoteString(src)
    )
    yield StringCommand(
        "got=$(sha256sum",
        QuoteString(staged),
        "| cut -d' ' -f1);",
        "if",
        "[",
        '"$got"',
        "!=",
        sha256,
        "];",
        "then",
        "rm",
        "-f",
        QuoteString(staged),
        ";",
        "echo",
        QuoteString(refusal),
        '"$got"',
        ">&2;",
        "exit",
        "1;",
        "fi",
    )
    yield StringCommand(
        "install",
        "-o",
        QuoteString(user),
        "-g",
        QuoteString(group),
        "-m",
        mode,
        QuoteString(staged),
        QuoteString(fresh),
    )
    yield StringCommand("mv", "-f", QuoteString(fresh), QuoteString(dest))
    yield StringCommand("rm", "-f", QuoteString(staged))


@operation()
def secret_file(content: str, dest: str, *, user: str, group: str, mode: str):
    """
    Upload `content` to `dest` over SFTP unless it is there already; never printed, not even
    with --diff. The parent folder should be closed to others (the upload starts at 0644).
    """
    data = content.encode()
    if host.get_fact(Sha256File, path=dest) != hashlib.sha256(data).hexdigest():
        yield FileUploadCommand(io.BytesIO(data), dest)
        yield chown(dest, user, group)
        yield chmod(dest, mode)
        return
    commands = list(_owner_and_mode(dest, user, group, mode))
    if not commands:
        host.noop(f"{dest} is already up to date")
    yield from commands


def pip_index_args(find_links: str | None, index_url: str) -> list[str | QuoteString]:
    """pip's source options: `find_links` alone when set (the lab's wheelhouse; hashes are
    still checked), else `index_url`. pip ignores a plain-http source unless told to trust it."""
    if find_links:
        args: list[str | QuoteString] = ["--no-index", "--find-links", QuoteString(find_links)]
        url = urlsplit(find_links)
        if url.scheme == "http" and url.hostname:
            args += ["--trusted-host", QuoteString(url.hostname)]
        return args
    return ["--index-url", QuoteString(index_url)]

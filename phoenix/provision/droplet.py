"""`phoenix provision`: a replacement droplet through pydo, its SSH host key pinned (step 1).

Each recovery is an *attempt* with its own droplet: named like the runbook's
`forge-recovery-YYYYMMDD` followed by the time and the attempt's own hex (a name no earlier
droplet had), and tagged with a tag of its own, both written to the state file before the
create call. A re-run of a cut-off attempt finds its droplet by that tag instead of making
another; once the droplet has gone live (cut over or promoted) the next provision starts a
new attempt, so it never reuses the production droplet. The create call is sent once (no SDK
retry: a 5xx after DigitalOcean made the droplet would make a second one); after any error
the droplet is looked up by the attempt's tag.

The host key pair is made here and handed over in user_data (cloud-config `ssh_keys`), so
the first SSH connection is already checked against a known key; over that first pinned
session the droplet makes a new key, so the one readable in the droplet's metadata for its
whole life is dead, and the local copy of the handed-over private key is deleted. After a
restore, the forge's own keys from the backup replace it the same way (take_backup_host_keys).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from phoenix.console import waiter
from phoenix.context import current
from phoenix.errors import NotConfigured, PhoenixError
from phoenix.poll import poll
from phoenix.provision.do import DO, public_ip, public_ipv6
from phoenix.sshconf import Target, known_hosts_line, public_half, remote, ssh_command
from phoenix.sshconf import state_target as target
from phoenix.state import State, now

Progress = Callable[[str], None]


def operator_key() -> Path:
    path = current().ssh_key
    if not path.exists() or not public_half(path).exists():
        raise NotConfigured(
            f"the operator SSH key {path} (and {path}.pub) is missing; set PHOENIX_SSH_KEY"
        )
    return path


def ensure_host_key(state: State) -> tuple[str, str]:
    if not state.host_key.exists():
        state.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"phoenix-{state.role}-host",
                "-f",
                str(state.host_key),
            ],
            check=True,
        )
    return state.host_key.read_text(), public_half(state.host_key).read_text()


def user_data(private: str, public: str) -> str:
    """cloud-config in its JSON form (YAML is a superset), read by cloud-init on the droplet."""
    return "#cloud-config\n" + json.dumps(
        {
            "ssh_deletekeys": True,
            "ssh_keys": {"ed25519_private": private, "ed25519_public": public.strip()},
        }
    )


def droplet_name(client: DO, role: str, attempt: str, day: datetime | None = None) -> str:
    """`forge-<role>-YYYYMMDD-HHMM-<6 hex of the attempt's tag>`, with `-2`… when taken. The
    name is the droplet's hostname, so its restic host and replica folder: a name that an
    earlier droplet had (destroyed since) would merge two forges' lines in the store."""
    base = f"forge-{role}-{(day or datetime.now(UTC)):%Y%m%d-%H%M}-{attempt[:6]}"
    for n in range(1, 100):
        name = base if n == 1 else f"{base}-{n}"
        if not client.droplets(name=name):
            return name
    raise PhoenixError(f"99 droplets are named {base}-*; destroy the ones no longer needed")


def _new_attempt(client: DO, role: str, state: State, progress: Progress) -> dict:
    token = secrets.token_hex(6)
    name = droplet_name(client, role, token)
    attempt = {"name": name, "tag": f"phoenix-attempt-{token}", "started": now()}
    state.begin_attempt(attempt)  # recorded before the create call: a lost answer is findable
    private, public = ensure_host_key(state)
    state.data["attempt"]["host_public"] = public.strip()
    state.save()
    progress(f"new {role} attempt: droplet {name}, tag {attempt['tag']}")
    return state.data["attempt"]


def _by_tag(client: DO, tag: str) -> dict | None:
    found = client.droplets(tag=tag)
    if len(found) > 1:
        ids = ", ".join(str(d["id"]) for d in found)
        raise PhoenixError(
            f"more than one droplet has the attempt tag {tag} ({ids}); destroy "
            "the extra ones (same host key) before running again"
        )
    return found[0] if found else None


def _current(client: DO, role: str, state: State, progress: Progress) -> tuple[dict, dict | None]:
    """The attempt to work on, and its droplet if it exists already."""
    attempt = state.data.get("attempt")
    if attempt and not state.finished:
        droplet = _by_tag(client, attempt["tag"])
        if droplet is not None:
            return attempt, droplet
        if not state.droplet and state.host_key.exists():
            return attempt, None  # cut off before (or during) the create: not made, or lost
        progress(f"droplet {attempt['name']} of the last attempt is gone; starting anew")
    elif attempt:
        progress(f"{attempt['name']} went live; this provision makes a new droplet")
    return _new_attempt(client, role, state, progress), None


def provision(
    *,
    role: str,
    settings: dict,
    client: DO,
    state: State,
    key: Path,
    progress: Progress = lambda _: None,
    check_ssh: bool = True,
) -> dict:
    with state.locked():
        return _provision(
            role=role,
            settings=settings,
            client=client,
            state=state,
            key=key,
            progress=progress,
            check_ssh=check_ssh,
        )


def _provision(
    *,
    role: str,
    settings: dict,
    client: DO,
    state: State,
    key: Path,
    progress: Progress,
    check_ssh: bool,
) -> dict:
    attempt, droplet = _current(client, role, state, progress)
    name, tag = attempt["name"], attempt["tag"]
    if droplet is None:
        fingerprint = client.ensure_key(
            settings["provision_ssh_key_name"], public_half(key).read_text()
        )
        progress(f"creating droplet {name} in {settings['provision_region']}")
        private, public = ensure_host_key(state)
        try:
            droplet = client.create(
                {
                    "name": name,
                    "region": settings["provision_region"],
                    "size": settings["provision_size"],
                    "image": settings["provision_image"],
                    "ssh_keys": [fingerprint],
                    "tags": [*settings["provision_tags"], f"phoenix-{role}", tag],
                    "user_data": user_data(private, public),
                    "monitoring": True,
                }
            )
        except PhoenixError as exc:
            try:
                droplet = _by_tag(client, tag)
            except PhoenixError as lookup:
                raise PhoenixError(
                    f"{exc}; and looking the droplet up by its tag {tag} failed "
                    f"too ({lookup}): run `phoenix provision` again, it looks "
                    "the droplet up before it creates one"
                ) from None
            if droplet is None:
                raise PhoenixError(
                    f"{exc} (no droplet {name} was made; run `phoenix provision` again)"
                ) from None
            progress(
                f"the create call failed ({exc}), but droplet {droplet['id']} with tag "
                f"{tag} was made: using it"
            )
        state.data["droplet"] = {"id": droplet["id"], "name": name, "ip": None}
        state.save()  # a crash from here on finds this droplet again
    else:
        progress(f"droplet {name} ({droplet['id']}) exists already; reusing it")
    wait = waiter(progress)
    droplet = client.wait_active(
        droplet["id"],
        timeout=settings["provision_timeout"],
        progress=lambda s: wait(
            f"droplet {name} is {s}, waiting for active (up to {settings['provision_timeout']:g} s)"
        ),
    )
    ip = public_ip(droplet)
    assert ip, "wait_active returns only a droplet with a public address"
    rotated = (state.data.get("host_key") or {}).get("public")
    _pin(state, ip, rotated or attempt["host_public"])
    state.data["droplet"] = {
        "id": droplet["id"],
        "name": name,
        "ip": ip,
        "tag": tag,
        "ipv6": public_ipv6(droplet),
        "region": settings["provision_region"],
    }
    state.data["ssh_key"] = str(key)
    state.save()
    if check_ssh:
        wait_ssh(target(state), timeout=settings["provision_timeout"], progress=wait)
        if state.data.get("host_key_next"):
            settle_host_key(state, progress=progress)
        if not (state.data.get("host_key") or {}).get("public"):
            rotate_host_key(state, progress=progress)
        for path in (state.host_key, public_half(state.host_key)):
            path.unlink(missing_ok=True)  # the handed-over key, dead once rotated
    return state.data["droplet"]


def _pin(state: State, ip: str, key: str) -> None:
    """The state's known_hosts pins `key`, and the key a cut-off switch was moving to."""
    pins = [key, *([state.data["host_key_next"]] if state.data.get("host_key_next") else [])]
    state.known_hosts.write_text("".join(known_hosts_line(ip, k) for k in pins))


def settle_host_key(state: State, *, progress: Progress = lambda _: None) -> str:
    """After a run cut off inside a host key switch (both keys pinned): the one sshd answers
    with now stays pinned alone, and the state says so. Refused when it answers with neither."""
    t = target(state)
    new = state.data["host_key_next"]
    old = (state.data.get("host_key") or {}).get("public") or state.data["attempt"]["host_public"]
    for key in (new, old):
        only = t.known_hosts.with_suffix(".settling")
        only.write_text(known_hosts_line(t.host, key))
        try:
            wait_ssh(replace(t, known_hosts=only), timeout=30, progress=progress)
        except PhoenixError:
            continue
        else:
            os.replace(only, t.known_hosts)
        finally:
            only.unlink(missing_ok=True)
        if key == new:
            state.data["host_key"] = {"public": new, "settled": now()}
        state.data.pop("host_key_next")
        state.save()
        said = "the new one" if key == new else "the old one (the switch had not happened)"
        progress(f"{t.host}: a cut-off host key switch settled: sshd answers with {said}")
        return key
    raise PhoenixError(
        f"{t.host} answers with neither the host key it had nor the one it was switching to "
        f"({t.known_hosts} pins both); look at the droplet before connecting again"
    )


NEW_KEY = "/etc/ssh/ssh_host_ed25519_key.phoenix-new"


def rotate_host_key(state: State, *, progress: Progress = lambda _: None) -> str:
    """Over the pinned session: a new ed25519 host key on the droplet, pinned here, the
    handed-over one (readable in the droplet's metadata) retired there and deleted here."""
    t = target(state)
    old = state.data["attempt"]["host_public"]
    new = remote(
        t,
        f"set -e; umask 077; rm -f {NEW_KEY} {NEW_KEY}.pub; "
        f"ssh-keygen -q -t ed25519 -N '' -C '' -f {NEW_KEY}; cat {NEW_KEY}.pub",
    ).strip()
    _switch(
        state,
        old,
        new,
        f"set -e; chmod 0644 {NEW_KEY}.pub; "
        f"mv -f {NEW_KEY}.pub /etc/ssh/ssh_host_ed25519_key.pub; "
        f"mv -f {NEW_KEY} /etc/ssh/ssh_host_ed25519_key; "
        "sshd -t; systemctl reload ssh",
        record={"rotated": now()},
        progress=progress,
    )
    for path in (state.host_key, public_half(state.host_key)):
        path.unlink(missing_ok=True)
    progress(f"{t.host}: host key rotated; the one in its user_data no longer opens a session")
    return new


def _switch(
    state: State, old: str, new: str, command: str, *, record: dict, progress: Progress
) -> None:
    """`command` makes sshd answer with `new` instead of `old`: both are pinned while it
    runs, so no moment pins neither; then only `new`, once it has opened a session, and the
    state holds it with `record`. The state names `new` first (host_key_next): a run cut off
    from there on pins both again and settles on the one sshd answers with."""
    t = target(state)
    state.data["host_key_next"] = new
    state.save()
    t.known_hosts.write_text(known_hosts_line(t.host, old) + known_hosts_line(t.host, new))
    remote(t, command)
    only_new = t.known_hosts.with_suffix(".rotating")
    only_new.write_text(known_hosts_line(t.host, new))
    try:
        wait_ssh(replace(t, known_hosts=only_new), timeout=30, progress=progress)
        os.replace(only_new, t.known_hosts)
    finally:
        only_new.unlink(missing_ok=True)
    state.data["host_key"] = {"public": new, **record}
    state.data.pop("host_key_next", None)
    state.save()


def _fingerprints(keys: list[dict]) -> str:
    return ", ".join(f"{k['type']} {k['fingerprint']}" for k in keys) or "none"


def take_backup_host_keys(
    state: State, settings: dict, *, new_keys: bool, progress: Progress = lambda _: None
) -> dict | None:
    """The host keys the restore staged from the backup (files/phoenix_restore.py
    `host-keys`) made the droplet's, over the pinned session and with both keys pinned
    meanwhile, so the recovered forge answers with the key its users trust; `new_keys`
    (after a compromise the old key is the attacker's too): the droplet's own new keys stay
    and the backup's are only named. None when the restore staged nothing (no restore, or
    taken already)."""
    t = target(state)
    staged = f"{settings['restore_staging_dir'].rstrip('/')}/host-keys"
    text = remote(t, f"cat {shlex.quote(staged)}/keys.json 2>/dev/null || true").strip()
    if not text:
        return None
    backup = json.loads(text)["keys"]
    pinned = (state.data.get("host_key") or {}).get("public") or state.data["attempt"][
        "host_public"
    ]
    ours = _host_fingerprints(t, settings)
    if new_keys or not any(k["staged"] for k in backup):
        remote(t, f"rm -rf {shlex.quote(staged)}")
        why = "--new-host-keys" if new_keys else "the backup holds no host keys"
        said = (
            f"NEW host keys ({why}): {_fingerprints(ours)}; the old forge's were "
            f"{_fingerprints(backup)}. Users see 'REMOTE HOST IDENTIFICATION HAS CHANGED' "
            "until they run `ssh-keygen -R <forge name>` and accept the new fingerprint"
        )
        progress(f"{t.host}: {said}")
        return {"kept": "new", "old": backup, "new": ours, "said": said}
    new = next((k["public"] for k in backup if k["type"] == "ssh-ed25519" and k["staged"]), pinned)
    tool = shlex.quote(settings["restore_tool_path"])
    config = shlex.quote(f"{settings['restore_staging_dir'].rstrip('/')}/config.json")
    _switch(
        state,
        pinned,
        new,
        f"set -e; {tool} --config {config} install-host-keys {shlex.quote(staged)} >/dev/null; "
        "systemctl reload ssh",
        record={"from_backup": now()},
        progress=progress,
    )
    said = f"the backup's host keys, which users trust: {_fingerprints(backup)}"
    progress(f"{t.host}: {said}")
    return {"kept": "backup", "old": backup, "new": backup, "said": said}


def _host_fingerprints(t: Target, settings: dict) -> list[dict]:
    """The host keys sshd serves on `t` (ssh_host_keys), as keys.json names them."""
    keys = []
    for path in settings["ssh_host_keys"]:
        line = remote(t, f"ssh-keygen -l -E sha256 -f {shlex.quote(path)}.pub || true").split()
        if len(line) >= 2:
            kind = line[-1].strip("()").lower()
            keys.append({"path": path, "type": KEY_TYPES.get(kind, kind), "fingerprint": line[1]})
    return keys


# ssh-keygen -l names a key's type in its last field, "(ED25519)"; keys.json as the key line
KEY_TYPES = {"ed25519": "ssh-ed25519", "rsa": "ssh-rsa"}


def wait_ssh(t: Target, *, timeout: float, progress: Progress) -> None:
    """Until sshd answers with the pinned key: strict checking, so a wrong host is refused."""
    last = ""

    def answers() -> bool | None:
        nonlocal last
        proc = subprocess.run(ssh_command(t, "true"), capture_output=True, text=True, timeout=30)
        if proc.returncode == 0:
            return True
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else last
        if (
            "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
            or "Host key verification failed" in proc.stderr
        ):
            raise PhoenixError(
                f"{t.host} answered with a host key other than the pinned one "
                f"({t.known_hosts}); refusing to connect"
            )
        return None

    poll(
        answers,
        timeout=timeout,
        what=f"waiting for sshd on {t.host}",
        interval=1,
        progress=progress,
        error=lambda: f"sshd on {t.host} did not answer within {timeout:.0f} s ({last})",
    )

"""The drill's RPO per kind of data: writes that keep going until the primary is destroyed,
and what of them the recovered forge has.

A Trickle writes on the primary, each write stamped with the time its success came back: an
issue, a comment, a chat through the backend (a Hermes session, in the backend house's
state.db), a commit pushed, an attachment, a new avatar, an LFS object and a memory file of a
house, each kind at its own pace in a thread of its own. measure() then asks the recovered
forge which came back and gives, per kind, the newest write recovered, the oldest write lost,
and the RPO: how long before the disaster the newest recovered write was (0 when nothing was
lost: every write acknowledged before the disaster is there).

Two bounds, then. What a setting promises is "every write acknowledged more than N seconds
before the disaster came back": `oldest_lost_s_before_disaster <= N` (for the files, N =
frequent_snapshot_interval; `promise_kept`). `rpo_seconds` (disaster - newest recovered) is an
upper bound on it: it also holds the spacing between the trickle's writes (EVERY), since
nothing was written between the newest recovered write and the next.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from phoenix.errors import PhoenixError
from phoenix.forge.api import Forge
from phoenix.lab.forgework import avatar_png, bare_git, chat, memories, push_commit, ssh
from phoenix.sshconf import Target

ISSUES = "issues (Gitea's database)"
COMMENTS = "comments (Gitea's database)"
SESSIONS = "Hermes sessions (the backend's state.db)"
COMMITS = "commits (the repositories)"
ATTACHMENTS = "attachments (Gitea's data folder)"
AVATARS = "avatars (Gitea's data folder)"
LFS = "LFS objects (Gitea's data folder)"
MEMORIES = "memories (the houses' files)"
DATABASES = (ISSUES, COMMENTS, SESSIONS)  # Litestream's: seconds
FILES = (COMMITS, ATTACHMENTS, AVATARS, LFS, MEMORIES)  # the frequent snapshots': the interval
# How often each kind is written (seconds).
EVERY = {
    ISSUES: 1.0,
    COMMENTS: 3.0,
    SESSIONS: 5.0,
    COMMITS: 4.0,
    ATTACHMENTS: 4.0,
    AVATARS: 6.0,
    LFS: 5.0,
    MEMORIES: 3.0,
}
# Kinds where a later write supersedes an earlier one: a key recovered means every earlier
# write is too (a branch's history; a user has one avatar).
SUPERSEDED = (COMMITS, AVATARS)


@dataclass
class Write:
    kind: str
    key: str  # issue number, session id, commit sha
    at: float  # when its success came back (time.time())


@dataclass
class Trickle:
    """Writes on the primary in threads until stop(); only acknowledged writes count."""

    address: str | None  # the primary's: Gitea behind Caddy, over TLS for the forge's name
    token: str
    target: Target
    settings: dict
    repo: str
    every: dict[str, float] = field(default_factory=lambda: dict(EVERY))
    lfs: dict[str, dict[str, int]] = field(default_factory=dict)  # {repo: {oid: size}}
    writes: list[Write] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """One thread per kind, each at its own pace: a slow kind (a chat) never holds up
        another."""
        for n, kind in enumerate(self.every):
            thread = threading.Thread(
                target=self._run, args=(kind, n), name=f"drill-trickle-{n}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=300)

    def _run(self, kind: str, offset: int) -> None:
        forge = Forge.of(self.settings, address=self.address, token=self.token, timeout=5)
        n = offset * 1000  # distinct names across the threads
        issue = 0
        login = ""
        while not self._stop.is_set():
            started = time.time()
            n += 1
            try:
                login = login or forge.me()["login"]
                if kind in (COMMENTS, ATTACHMENTS) and not issue:
                    issue = forge.create_issue(self.repo, f"trickle {n}: {kind}")["number"]
                key, acknowledged = self._write(forge, kind, n, issue, login)
                self.writes.append(Write(kind, key, acknowledged or time.time()))
            except (PhoenixError, OSError, StopIteration) as exc:  # the disaster, or a hiccup
                self.errors.append(f"{kind}: {exc}")
            self._stop.wait(max(0.0, started + self.every[kind] - time.time()))

    def _write(
        self, forge: Forge, kind: str, n: int, issue: int, login: str
    ) -> tuple[str, float | None]:
        """One write of `kind`: its key, and when it was acknowledged if that was before the
        key could be asked for (None: now)."""
        if kind == COMMITS:
            return self._push(forge, n, login)
        return self._key(forge, kind, n, issue, login), None

    def _key(self, forge: Forge, kind: str, n: int, issue: int, login: str) -> str:
        if kind == ISSUES:
            return str(
                forge.create_issue(self.repo, f"trickle {n}: written until the end")["number"]
            )
        if kind == COMMENTS:
            made = forge.create_comment(self.repo, issue, f"trickle {n}: a comment")
            return f"{self.repo}#{issue} comment {made['id']}"
        if kind == SESSIONS:
            chat(self.target, self.settings, f"trickle {n}: keep this session")
            state_db = shlex.quote(
                f"{self.settings['hermes_root']}/{self.settings['backend_house']}/state.db"
            )
            sid = ssh(
                self.target,
                f"sqlite3 -readonly {state_db} "
                "'SELECT id FROM sessions ORDER BY rowid DESC LIMIT 1'",
            )
            return sid.strip()
        if kind == ATTACHMENTS:
            name = f"trickle-{n}.log"
            asset = forge.attach(self.repo, issue, name, f"trickle {n}\n".encode() * 32)
            return f"{self.repo}#{issue} {asset['name']} ({asset['uuid']})"
        if kind == AVATARS:
            image = avatar_png(f"trickle {n}")
            forge.set_avatar(image)
            return hashlib.sha256(image).hexdigest()
        if kind == LFS:
            content = f"trickle {n}: kept in LFS\n".encode() * 256
            oid = forge.lfs_upload(self.repo, content)
            self.lfs.setdefault(self.repo, {})[oid] = len(content)
            return f"{self.repo} {oid[:12]}"
        if kind == MEMORIES:
            house = self.settings["wizard_names"][0]
            path = f"{self.settings['hermes_root']}/{house}/memories/trickle-{n}.md"
            ssh(
                self.target,
                f"printf 'trickle: {n}\\n' > {shlex.quote(path)} && "
                f"chown {shlex.quote(self.settings['hermes_user'])}: {shlex.quote(path)}",
            )
            return path
        raise ValueError(kind)

    def _push(self, forge: Forge, n: int, login: str) -> tuple[str, float]:
        push_commit(
            self.target, self.settings, self.repo, f"trickle {n}", user=login, token=self.token
        )
        acknowledged = time.time()  # the push returned: not after the next ask
        head = forge.branches(self.repo)
        return head.get("main") or next(iter(head.values())), acknowledged


def recovered_keys(
    kind: str, recovered: dict, target: Target, settings: dict, repo: str
) -> set[str]:
    """The keys of a Trickle's `kind` of writes that the recovered forge has: `recovered` is
    its phoenix.forge.snapshot, the rest is read on the host."""
    q = shlex.quote
    if kind == ISSUES:  # phoenix.forge.snapshot: {"issues": {"<repo>#<n>": …}}
        return {
            key.rsplit("#", 1)[1]
            for key in recovered.get("issues", {})
            if key.rsplit("#", 1)[0] == repo
        }
    if kind == SESSIONS:
        db = q(f"{settings['hermes_root']}/{settings['backend_house']}/state.db")
        return set(
            ssh(
                target, f"[ ! -f {db} ] || sqlite3 -readonly {db} 'SELECT id FROM sessions'"
            ).split()
        )
    if kind == MEMORIES:
        return set(memories(target, settings))
    if kind == AVATARS:
        return set(recovered.get("avatars", {}).values())
    if kind in (COMMENTS, ATTACHMENTS, LFS):  # a file that did not come back is "missing"
        field_ = {COMMENTS: "comments", ATTACHMENTS: "attachments", LFS: "lfs objects"}[kind]
        return {key for key, value in recovered.get(field_, {}).items() if value != "missing"}
    bare = q(f"{settings['gitea_repo_root']}/{repo.lower()}.git")
    return set(ssh(target, f"{bare_git(bare)} rev-list --all").split())


def measure(
    writes: list[Write],
    *,
    disaster_at: float,
    snapshot_at: float,
    recovered: Callable[[str], set[str]],
    promises: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Per kind: writes, recovered, newest recovered and oldest lost (seconds before the
    disaster), and the RPO. `recovered(kind)` gives the keys the recovered forge has; for
    commits, a key recovered means every earlier commit is too (the branch's history).
    Everything up to `snapshot_at` is known to be back (the drill compares it): a kind none
    of whose trickle came back has lost everything since the snapshot. `promises`: per kind,
    the seconds a setting promises at most are lost (see the module's docstring)."""
    out: dict[str, dict] = {}
    for kind in (*DATABASES, *FILES):
        mine = sorted((w for w in writes if w.kind == kind), key=lambda w: w.at)
        if not mine:
            continue
        have = recovered(kind)
        if kind in SUPERSEDED:
            last = max((i for i, w in enumerate(mine) if w.key in have), default=-1)
            kept = [i <= last for i in range(len(mine))]
        else:
            kept = [w.key in have for w in mine]
        got = [w for w, k in zip(mine, kept, strict=True) if k]
        lost = [w for w, k in zip(mine, kept, strict=True) if not k]
        newest = max((w.at for w in got), default=snapshot_at)
        oldest_lost = min((w.at for w in lost), default=None)
        out[kind] = {
            "written": len(mine),
            "recovered": len(got),
            "lost": len(lost),
            "last_write_s_before_disaster": round(disaster_at - mine[-1].at, 1),
            "newest_recovered_s_before_disaster": round(disaster_at - newest, 1),
            "oldest_lost_s_before_disaster": None
            if oldest_lost is None
            else round(disaster_at - oldest_lost, 1),
            # Nothing lost: every acknowledged write came back. Else the newest one that did.
            "rpo_seconds": 0.0 if not lost else round(disaster_at - newest, 1),
            # A write lost while a later one came back would be an inconsistent recovery.
            "lost_before_a_recovered_one": bool(
                lost and got and min(w.at for w in lost) < max(w.at for w in got)
            ),
        }
        if kind in (promises or {}):
            promise = float((promises or {})[kind])
            out[kind]["promise_seconds"] = promise
            out[kind]["promise_kept"] = oldest_lost is None or disaster_at - oldest_lost <= promise
    return out

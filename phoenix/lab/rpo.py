"""The drill's RPO per kind of data: writes that keep going until the primary is destroyed,
and what of them the recovered forge has.

A Trickle writes on the primary, each write stamped with the time its success came back: an
issue every `issue_every` seconds (Gitea's database), a chat through the backend every
`chat_every` (a Hermes session, in the backend house's state.db), a commit pushed every
`push_every` (the repositories). measure() then asks the recovered forge which came back and
gives, per kind, the newest write recovered, the oldest write lost, and the RPO: how long
before the disaster the newest recovered write was (0 when nothing was lost: every write
acknowledged before the disaster is there).

Two bounds, then. What a setting promises is "every write acknowledged more than N seconds
before the disaster came back": `oldest_lost_s_before_disaster <= N` (for the repositories,
N = frequent_snapshot_interval; `promise_kept`). `rpo_seconds` (disaster - newest recovered) is an
upper bound on it: it also holds the spacing between the trickle's writes (a push every
`push_every` s), since nothing was written between the newest recovered write and the next.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from phoenix.errors import PhoenixError
from phoenix.forge.api import Forge
from phoenix.lab.forgework import chat, push_commit, ssh
from phoenix.sshconf import Target

ISSUES = "issues (Gitea's database)"
SESSIONS = "Hermes sessions (the backend's state.db)"
COMMITS = "commits (the repositories)"


@dataclass
class Write:
    kind: str
    key: str  # issue number, session id, commit sha
    at: float  # when its success came back (time.time())


@dataclass
class Trickle:
    """Writes on the primary in a thread until stop(); only acknowledged writes count."""

    address: str | None  # the primary's: Gitea behind Caddy, over TLS for the forge's name
    token: str
    target: Target
    settings: dict
    repo: str
    issue_every: float = 1.0
    chat_every: float = 5.0
    push_every: float = 4.0
    writes: list[Write] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drill-trickle", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)

    def _run(self) -> None:
        forge = Forge.of(self.settings, address=self.address, token=self.token, timeout=5)
        due = {ISSUES: 0.0, SESSIONS: 0.0, COMMITS: 0.0}
        every = {ISSUES: self.issue_every, SESSIONS: self.chat_every, COMMITS: self.push_every}
        state_db = shlex.quote(
            f"{self.settings['hermes_root']}/{self.settings['backend_house']}/state.db"
        )
        n = 0
        pusher = ""
        while not self._stop.is_set():
            now = time.time()
            kind = min(due, key=lambda k: due[k])
            if due[kind] > now:
                self._stop.wait(due[kind] - now)
                continue
            due[kind] = now + every[kind]
            n += 1
            try:
                if kind == ISSUES:
                    made = forge.create_issue(self.repo, f"trickle {n}: written until the end")
                    self.writes.append(Write(kind, str(made["number"]), time.time()))
                elif kind == SESSIONS:
                    chat(self.target, self.settings, f"trickle {n}: keep this session")
                    sid = ssh(
                        self.target,
                        f"sqlite3 -readonly {state_db} "
                        "'SELECT id FROM sessions ORDER BY rowid DESC LIMIT 1'",
                    )
                    self.writes.append(Write(kind, sid.strip(), time.time()))
                else:
                    pusher = pusher or forge.me()["login"]
                    push_commit(
                        self.target,
                        self.settings,
                        self.repo,
                        f"trickle {n}",
                        user=pusher,
                        token=self.token,
                    )
                    acknowledged = time.time()  # the push returned: not after the next ask
                    head = forge.branches(self.repo)
                    self.writes.append(
                        Write(kind, head.get("main") or next(iter(head.values())), acknowledged)
                    )
            except (PhoenixError, OSError, StopIteration) as exc:  # the disaster, or a hiccup
                self.errors.append(f"{kind}: {exc}")


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
    bare = q(f"{settings['gitea_repo_root']}/{repo.lower()}.git")
    return set(ssh(target, f"git -c safe.directory='*' --git-dir={bare} rev-list --all").split())


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
    for kind in (ISSUES, SESSIONS, COMMITS):
        mine = sorted((w for w in writes if w.kind == kind), key=lambda w: w.at)
        if not mine:
            continue
        have = recovered(kind)
        if kind == COMMITS:
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

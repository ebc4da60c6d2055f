"""The forge seen through Gitea's API, from the operator's side (the one HTTP helper for it).

Used by the drill to write data and to compare what was there with what was recovered, and
by `phoenix validate`'s checks. Always HTTPS: the token goes in a header inside TLS, never in
a URL or a log. Before the DNS cutover the new host is reached by address while TLS and the
Host header speak for the forge's name (what `curl --resolve NAME:443:ADDRESS` does), so the
certificate checked is the one users will see.
What a user would miss is compared by kind: repositories and branches, issues with their
bodies and comments, attachments and avatars by sha256, LFS objects through the LFS batch
API, and logins: the API token, and a 2FA user's password with a TOTP code (X-Gitea-OTP),
which only works while the forge keeps the SECRET_KEY that encrypted the TOTP secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from phoenix.errors import PhoenixError
from phoenix.forge.tls import https_session

LFS_MEDIA = "application/vnd.git-lfs+json"
KINDS = (
    "repositories",
    "branches",
    "issues",
    "issue bodies",
    "comments",
    "attachments",
    "avatars",
    "lfs objects",
    "webhooks",
    "logins",
)


@dataclass(frozen=True)
class TwoFactorUser:
    """A user enrolled in TOTP: the password and the base32 secret an authenticator holds."""

    login: str
    password: str
    otp_secret: str


def totp(secret_b32: str, at: float | None = None) -> str:
    """The 6-digit RFC 6238 code an authenticator shows (SHA1, 30 s), as Gitea checks it."""
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(int.from_bytes(digest[offset : offset + 4], 'big') & 0x7FFFFFFF) % 1_000_000:06d}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Forge:
    def __init__(
        self,
        name: str,
        *,
        address: str | None = None,
        trust: str | None = None,
        token: str | None = None,
        timeout: float = 10,
    ) -> None:
        self.session, self.root = https_session(name, address=address, trust=trust)
        self.base = self.root + "/api/v1"
        self.where = f"https://{name}" + (f" (at {address})" if address else "")
        self.token = token
        if token:
            self.session.headers["Authorization"] = f"token {token}"
        self.timeout = timeout

    @classmethod
    def of(
        cls,
        settings: dict,
        *,
        address: str | None = None,
        token: str | None = None,
        timeout: float = 10,
    ) -> Forge:
        """The forge of group_data (gitea_domain, https_trust_bundle), at `address`."""
        return cls(
            settings["gitea_domain"],
            address=address,
            trust=settings.get("https_trust_bundle"),
            token=token,
            timeout=timeout,
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise PhoenixError(
                f"Gitea at {self.where}: TLS failed, the certificate is not "
                f"valid for the name or not from the trusted CA ({_why(exc)})"
            ) from None
        except requests.RequestException as exc:
            raise PhoenixError(
                f"Gitea at {self.where} is unreachable ({type(exc).__name__})"
            ) from None

    def _here(self, url: str) -> str:
        """A link Gitea gave (attachment, avatar, LFS action) names the forge by its ROOT_URL,
        which may not resolve from here yet (before the cutover): ask the Gitea we talk to."""
        mine, theirs = urlsplit(self.root), urlsplit(url)
        return urlunsplit((mine.scheme, mine.netloc, theirs.path, theirs.query, ""))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, self.base + path, **kwargs)
        if response.status_code == 401:
            raise PhoenixError(f"Gitea at {self.where} rejected the API token")
        if response.status_code >= 400:
            raise PhoenixError(
                f"Gitea {method} {path} answered {response.status_code}: {response.text[:200]}"
            )
        return response.json() if response.content else None

    def _pages(self, path: str, **params: Any) -> list[dict]:
        items: list[dict] = []
        page = 1
        while True:
            body = self._call("GET", path, params={**params, "page": page, "limit": 50})
            batch = body["data"] if isinstance(body, dict) else body
            items += batch
            if len(batch) < 50:
                return items
            page += 1

    def version(self) -> str:
        return self._call("GET", "/version")["version"]

    def me(self) -> dict:
        return self._call("GET", "/user")

    def repos(self) -> list[dict]:
        return self._pages("/repos/search")

    def users(self) -> list[dict]:
        return self._pages("/users/search")

    def issues(self, full_name: str) -> list[dict]:
        return self._pages(f"/repos/{full_name}/issues", state="all", type="issues")

    def branches(self, full_name: str) -> dict[str, str]:
        return {b["name"]: b["commit"]["id"] for b in self._pages(f"/repos/{full_name}/branches")}

    def system_hooks(self) -> list[dict]:
        """The system webhooks (an admin's token; [] for another, which may not list them)."""
        response = self._request("GET", f"{self.base}/admin/hooks")
        if response.status_code == 403:
            return []
        return self._pages("/admin/hooks")

    def comments(self, full_name: str, index: int) -> list[dict]:
        return self._call("GET", f"/repos/{full_name}/issues/{index}/comments")

    def create_issue(self, full_name: str, title: str, body: str = "") -> dict:
        return self._call("POST", f"/repos/{full_name}/issues", json={"title": title, "body": body})

    def close_issue(self, full_name: str, index: int) -> dict:
        return self._call("PATCH", f"/repos/{full_name}/issues/{index}", json={"state": "closed"})

    def create_comment(self, full_name: str, index: int, body: str) -> dict:
        return self._call(
            "POST", f"/repos/{full_name}/issues/{index}/comments", json={"body": body}
        )

    def attach(self, full_name: str, index: int, name: str, content: bytes) -> dict:
        return self._call(
            "POST",
            f"/repos/{full_name}/issues/{index}/assets",
            files={"attachment": (name, content, "application/octet-stream")},
        )

    def set_avatar(self, image: bytes) -> None:
        self._call("POST", "/user/avatar", json={"image": base64.b64encode(image).decode()})

    def download(self, url: str) -> bytes | None:
        """The bytes behind a link Gitea gave (attachment, avatar); None when it answers 404."""
        response = self._request("GET", self._here(url))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise PhoenixError(f"Gitea GET {url} answered {response.status_code}")
        return response.content

    def _lfs_batch(self, full_name: str, operation: str, oid: str, size: int) -> dict:
        response = self._request(
            "POST",
            f"{self.root}/{full_name}.git/info/lfs/objects/batch",
            json={
                "operation": operation,
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": size}],
            },
            headers={"Accept": LFS_MEDIA, "Content-Type": LFS_MEDIA},
        )
        if response.status_code >= 400:
            raise PhoenixError(
                f"Gitea's LFS batch ({operation}) for {full_name} answered "
                f"{response.status_code}: is [server] LFS_START_SERVER on?"
            )
        return response.json()["objects"][0]

    def lfs_upload(self, full_name: str, content: bytes) -> str:
        """One LFS object pushed as git-lfs does (batch upload, PUT); returns its oid."""
        oid = sha256(content)
        answer = self._lfs_batch(full_name, "upload", oid, len(content))
        upload = answer.get("actions", {}).get("upload")
        if upload:
            response = self._request(
                "PUT", self._here(upload["href"]), data=content, headers=upload.get("header") or {}
            )
            if response.status_code >= 400:
                raise PhoenixError(f"LFS upload of {oid[:12]} answered {response.status_code}")
        return oid

    def lfs_download(self, full_name: str, oid: str, size: int) -> bytes | None:
        """An LFS object as git-lfs fetches it (batch download, GET); None if not there."""
        answer = self._lfs_batch(full_name, "download", oid, size)
        link = answer.get("actions", {}).get("download")
        if not link:
            return None
        response = self._request("GET", self._here(link["href"]), headers=link.get("header") or {})
        return response.content if response.status_code == 200 else None

    def login_status(self, login: str, password: str, otp: str | None) -> int:
        """The status of GET /user with basic auth and (when given) X-Gitea-OTP."""
        headers = {
            "Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
        }
        if otp is not None:
            headers["X-Gitea-OTP"] = otp
        # inside TLS as every call; these headers replace the session's token for this one
        return self._request("GET", self.base + "/user", headers=headers).status_code


def _why(exc: Exception) -> str:
    """The innermost reason of a TLS failure (certificate verify failed: …)."""
    text = str(exc)
    for marker in ("certificate verify failed", "hostname", "handshake", "wrong version"):
        at = text.find(marker)
        if at >= 0:
            return text[at:].split("')")[0].split('")')[0][:160]
    return type(exc).__name__


def snapshot(
    forge: Forge,
    *,
    lfs: dict[str, dict[str, int]] | None = None,
    two_factor: Sequence[TwoFactorUser] = (),
) -> dict[str, dict[str, str]]:
    """What a user would miss, by kind ({kind: {what: fingerprint}}): every repository and
    branch head, every issue's title/state and body, every comment, every attachment and
    custom avatar by sha256, the LFS objects named in `lfs` ({repo: {oid: size}}), the system
    webhooks (where they deliver, which events), whether the API token still logs in, and
    whether each 2FA user logs in with a fresh TOTP code."""
    out: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for repo in sorted(forge.repos(), key=lambda r: r["full_name"]):
        name = repo["full_name"]
        out["repositories"][name] = "present"
        for branch, sha in forge.branches(name).items():
            out["branches"][f"{name} {branch}"] = sha
        for issue in forge.issues(name):
            key = f"{name}#{issue['number']}"
            out["issues"][key] = f"“{issue['title']}” ({issue['state']})"
            out["issue bodies"][key] = sha256((issue.get("body") or "").encode())
            for asset in issue.get("assets") or []:
                content = forge.download(asset["browser_download_url"])
                out["attachments"][f"{key} {asset['name']} ({asset['uuid']})"] = (
                    sha256(content) if content is not None else "missing"
                )
            if issue.get("comments"):
                for comment in forge.comments(name, issue["number"]):
                    out["comments"][f"{key} comment {comment['id']}"] = sha256(
                        (comment.get("body") or "").encode()
                    )
    for user in forge.users():
        url = user.get("avatar_url") or ""
        if "/avatars/" in url and len(url.rsplit("/", 1)[1]) == 64:  # an uploaded avatar
            content = forge.download(url)
            out["avatars"][user["login"]] = sha256(content) if content is not None else "missing"
    for name, objects in (lfs or {}).items():
        for oid, size in objects.items():
            content = forge.lfs_download(name, oid, size)
            out["lfs objects"][f"{name} {oid[:12]}"] = (
                sha256(content) if content is not None else "missing"
            )
    if forge.token:
        for hook in forge.system_hooks():  # Gitea never shows a secret: validation proves it
            state = "active" if hook.get("active") else "inactive"
            events = ",".join(sorted(hook.get("events") or []))
            out["webhooks"][f"system webhook to {hook['config'].get('url', '')}"] = (
                f"{events} ({state})"
            )
        try:
            out["logins"]["the API token"] = f"logs in as {forge.me()['login']}"
        except PhoenixError as exc:
            out["logins"]["the API token"] = str(exc)
    for enrolled in two_factor:
        code = forge.login_status(enrolled.login, enrolled.password, totp(enrolled.otp_secret))
        out["logins"][f"2FA login of {enrolled.login} with a TOTP code"] = (
            "works" if code == 200 else f"refused ({code})"
        )
    return out


Descends = Callable[[str, str, str], bool]


def compare(before: dict, after: dict, *, descends: Descends | None = None) -> list[str]:
    """Human-readable differences: what `before` had that `after` lacks or holds otherwise.
    `descends(branch, old, new)`: whether a branch's new head holds its old one (the
    repositories may come back newer than the snapshot); such a branch lost nothing."""
    lost: list[str] = []
    for kind, items in before.items():
        have = after.get(kind, {})
        for what, value in sorted(items.items()):
            got = have.get(what)
            if got is None:
                lost.append(f"{kind}: {what} is missing")
            elif got != value and not (
                kind == "branches" and descends is not None and descends(what, value, got)
            ):
                lost.append(f"{kind}: {what}: {_short(value)} before, {_short(got)} after")
    return lost


def tally(
    before: dict, after: dict, *, descends: Descends | None = None
) -> dict[str, dict[str, Any]]:
    """Per kind: how many there were, how many came back the same (or moved on from it), and
    which did not."""
    table: dict[str, dict[str, Any]] = {}
    for kind, items in before.items():
        lost = compare({kind: items}, {kind: after.get(kind, {})}, descends=descends)
        table[kind] = {"compared": len(items), "same": len(items) - len(lost), "lost": lost}
    return table


def _short(value: str) -> str:
    return value[:10] if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else value

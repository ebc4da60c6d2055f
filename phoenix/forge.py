"""The forge seen through Gitea's API, from the operator's side (the one HTTP helper for it).

Used by the drill to write data and to compare what was there with what was recovered, and
by `phoenix validate`'s step-9 check. The token goes in a header, never in a URL or a log.
"""

from __future__ import annotations

from typing import Any

import requests

from phoenix.errors import PhoenixError


class Forge:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PhoenixError(f"Gitea at {self.base} is unreachable ({type(exc).__name__})") \
                from None
        if response.status_code == 401:
            raise PhoenixError(f"Gitea at {self.base} rejected the API token")
        if response.status_code >= 400:
            raise PhoenixError(f"Gitea {method} {path} answered {response.status_code}: "
                               f"{response.text[:200]}")
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

    def repos(self) -> list[dict]:
        return self._pages("/repos/search")

    def issues(self, full_name: str) -> list[dict]:
        return self._pages(f"/repos/{full_name}/issues", state="all", type="issues")

    def branches(self, full_name: str) -> dict[str, str]:
        return {b["name"]: b["commit"]["id"] for b in self._pages(f"/repos/{full_name}/branches")}

    def create_issue(self, full_name: str, title: str, body: str = "") -> dict:
        return self._call("POST", f"/repos/{full_name}/issues", json={"title": title,
                                                                     "body": body})

    def close_issue(self, full_name: str, index: int) -> dict:
        return self._call("PATCH", f"/repos/{full_name}/issues/{index}", json={"state": "closed"})


def snapshot(forge: Forge) -> dict:
    """What a user would miss: every repository's branches and every issue's title and state."""
    out: dict[str, Any] = {}
    for repo in sorted(forge.repos(), key=lambda r: r["full_name"]):
        name = repo["full_name"]
        out[name] = {
            "branches": forge.branches(name),
            "issues": sorted((i["number"], i["title"], i["state"]) for i in forge.issues(name)),
        }
    return out


def compare(before: dict, after: dict) -> list[str]:
    """Human-readable differences: what `before` had that `after` lacks or holds otherwise."""
    lost: list[str] = []
    for name, repo in before.items():
        if name not in after:
            lost.append(f"repository {name} is missing")
            continue
        for branch, sha in repo["branches"].items():
            got = after[name]["branches"].get(branch)
            if got != sha:
                lost.append(f"{name} branch {branch}: {sha[:10]} before, {str(got)[:10]} after")
        have = {i[0]: i for i in after[name]["issues"]}
        for issue in repo["issues"]:
            got = have.get(issue[0])
            if got is None:
                lost.append(f"{name} issue #{issue[0]} “{issue[1]}” is missing")
            elif tuple(got) != tuple(issue):
                lost.append(f"{name} issue #{issue[0]}: “{issue[1]}” ({issue[2]}) before, "
                            f"“{got[1]}” ({got[2]}) after")
    return lost

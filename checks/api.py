"""Runbook step 9: an issue created through the Gitea API and closed again, from the
operator's side (the runbook's gitea-api.sh issue create / issue close)."""

from __future__ import annotations

import pytest
import requests

from .helpers import VALIDATION_ISSUE_TITLE


def _call(session, method: str, url: str, token: str, **kwargs) -> requests.Response:
    """One API call inside TLS (the token never travels in clear)."""
    try:
        response = session.request(
            method, url, timeout=15, headers={"Authorization": f"token {token}"}, **kwargs
        )
    except requests.RequestException as exc:
        pytest.fail(
            f"Gitea does not answer from here: {method} {url.split('/api/')[0]} failed "
            f"({type(exc).__name__})"
        )
    if response.status_code in (502, 503, 504):
        pytest.fail(
            f"Gitea does not answer behind Caddy: {method} /api/{url.split('/api/')[1]} "
            f"answered {response.status_code} (systemctl status gitea)"
        )
    return response


def test_step9_issue_create_and_close_through_api(forge_https, gitea_token, settings):
    session, base = forge_https
    api = f"{base}/api/v1"
    me = _call(session, "GET", f"{api}/user", gitea_token)
    if me.status_code in (401, 403):  # a failure, never a skip: step 9 is not proven without
        pytest.fail(
            f"the Gitea API token is not valid on this Gitea (GET /user answered "
            f"{me.status_code}): step 9 needs a token of the restored forge "
            "(gitea_api_token; a token made on the old forge comes back with its "
            "database)"
        )
    assert me.status_code == 200, f"GET {api}/user answered {me.status_code}, expected 200"
    repo = settings["validate_issue_repo"]
    created = _call(
        session,
        "POST",
        f"{api}/repos/{repo}/issues",
        gitea_token,
        json={
            "title": VALIDATION_ISSUE_TITLE,
            "body": "Automated post-recovery validation; closed by the same run.",
        },
    )
    assert created.status_code == 201, (
        f"creating an issue in {repo} answered {created.status_code}, expected 201: "
        f"{created.text[:200]} (validate_issue_repo; does the token's user have write access?)"
    )
    number = created.json()["number"]
    closed = _call(
        session,
        "PATCH",
        f"{api}/repos/{repo}/issues/{number}",
        gitea_token,
        json={"state": "closed"},
    )
    assert closed.status_code == 201 and closed.json().get("state") == "closed", (
        f"closing test issue #{number} in {repo} answered {closed.status_code}: close it by hand"
    )

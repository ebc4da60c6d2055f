"""The whole disaster and recovery in the lab (issue 7): nothing lost up to the snapshot."""

from __future__ import annotations

import json

from phoenix.lab import offsite
from phoenix.lab.drill import OFFSITE, drill
from phoenix.lab.rpo import DATABASES, FILES
from phoenix.lab.lab import ledger_for


def test_full_drill_loses_nothing_up_to_the_snapshot(lab):
    before = set(ledger_for(lab).read()["droplets"])
    report = drill(say=print, again=True)
    data = report.to_dict()

    assert [s["name"] for s in data["steps"]] == ["provision", "deploy", "certificate",
                                                  "validate", "cutover", "https", "protect"]
    assert all(s["ok"] for s in data["steps"]), data["steps"]
    # Runbook 9.1 after the cutover: the name through the lab DNS, Pebble's root only.
    assert "HTTP/2 200" in data["steps"][-2]["detail"], data["steps"][-2]
    # then the new primary's first full snapshot, off the RTO's path
    assert data["steps"][-1]["detail"].startswith("first full snapshot "), data["steps"][-1]
    assert data["data_lost_up_to_snapshot"] == "none"
    # Caddy's home came back: the recovered forge serves the primary's certificate, and its
    # certificate step asked the CA for nothing.
    assert data["certificate"].startswith("kept: "), data["certificate"]
    assert "; the primary's (" in data["certificate"], data["certificate"]
    # What was written after the full snapshot, 20 s and more before the disaster (older
    # than the promise), came back: files from the frequent snapshots, rows from the replicas.
    assert data["written_after_snapshot_and_lost"] == [], data["written_after_snapshot_and_lost"]
    # Every kind a user would miss was compared, and came back whole up to the snapshot
    compared = data["data_compared"]
    for kind in ("repositories", "branches", "issues", "issue bodies", "comments", "attachments",
                 "avatars", "lfs objects", "logins"):
        assert compared[kind]["compared"] > 0 and compared[kind]["lost"] == [], (kind, compared)
        assert compared[kind]["same"] == compared[kind]["compared"]
    assert data["logins_after_recovery"] == {"the API token": "logs in as timmy",
                                             "2FA login of ezra with a TOTP code": "works"}
    # The forge's SSH host keys came back: ezra (ed25519 key) and allegro (RSA-2048) clone
    # and push over SSH with the known_hosts they filled before the disaster, strictly.
    assert data["steps"][1]["detail"].endswith("host keys: the backup's"), data["steps"][1]
    assert data["ssh_host_keys"].startswith("the backup's host keys"), data["ssh_host_keys"]
    assert [line.split(":")[0] for line in data["git_over_ssh_after_recovery"]] == [
        "ezra (ssh-ed25519)", "allegro (ssh-rsa)"], data["git_over_ssh_after_recovery"]
    assert data["rto_seconds"] > 0 and data["rpo_seconds"] >= 0
    # Writes of every kind went on until the disaster. One promise: the databases lose
    # seconds at most, every file at most frequent_snapshot_interval (15 s in the lab), while
    # the frequent runs kept to their budget; only writes within it are lost, and never one
    # older than a write that came back. (rpo_seconds, disaster - newest recovered, also holds
    # the trickle's spacing between writes: reported, not the promise.)
    rpo = data["rpo_by_kind"]
    interval = data["frequent_snapshot_interval"]
    assert set(rpo) == set(DATABASES + FILES), rpo
    for kind in DATABASES + FILES:
        measured = rpo[kind]
        assert measured["written"] >= 2 and measured["recovered"] >= 1, (kind, rpo)
        assert not measured["lost_before_a_recovered_one"], (kind, rpo)
        lost = measured["oldest_lost_s_before_disaster"]
        bound = 10 if kind in DATABASES else interval
        assert lost is None or lost <= bound, (kind, rpo, data["repo_snapshot_last_run"])
    for kind in FILES:
        assert rpo[kind]["promise_seconds"] == interval and rpo[kind]["promise_kept"], (kind, rpo)
    # The recovered droplet is the primary after cutover: its marker, its backups on.
    after = data["one_primary"]["recovery after cutover"]
    assert after["role"] == "primary" and after["backup_timer"] == "active", after

    # A disaster strikes again minutes after the cutover: the recovered forge, written to,
    # is destroyed and `phoenix recover` runs as the operator would. Its validation passes
    # (no --force: the step-9 issue the first validation left is restored data), it gets a
    # droplet (a restic host, a replica folder) of its own, and every write older than its
    # promise comes back: from the recovered forge's own first snapshot, replicas and
    # repository snapshots, not its predecessor's hour-old line.
    again = data["second_disaster"]
    assert [s["name"] for s in again["steps"]] == ["provision", "deploy", "certificate", "validate",
                                                   "cutover", "https", "protect"], again
    assert all(s["ok"] for s in again["steps"]), again["steps"]
    assert again["second_droplet"] != again["first_droplet"], again
    assert again["destroyed_s_after_first_recovery"] < 300, again
    assert set(again["rpo_by_kind"]) == set(DATABASES + FILES), again
    for kind, measured in again["rpo_by_kind"].items():
        assert measured["written"] >= 1 and measured["lost"] == 0, (kind, again)

    # The report is on disk in both forms, and the lab is as the drill found it.
    saved = sorted(lab.state_dir.glob("drills/*/drill.report.json"))[-1]
    assert json.loads(saved.read_text())["data_lost_up_to_snapshot"] == "none"
    markdown = saved.with_suffix(".md").read_text()
    assert markdown.startswith("# phoenix drill") and "```mermaid\ngantt\n" in markdown
    assert saved.with_suffix(".svg").read_text().startswith("<svg")  # the picture, beside it
    assert set(ledger_for(lab).read()["droplets"]) == before
    assert offsite.load(lab, OFFSITE) is None


def test_standby_drill_promotes_the_warm_standby(lab):
    before = set(ledger_for(lab).read()["droplets"])
    data = drill(standby=True, say=print).to_dict()

    # No provisioning on the clock: the standby was there, warm; it is promoted.
    assert [s["name"] for s in data["steps"]] == ["deploy", "certificate", "validate",
                                                  "cutover", "https", "protect"]
    # a promotion's first full snapshot comes once users are served, not in its deploy
    assert data["steps"][-1]["detail"].startswith("first full snapshot "), data["steps"][-1]
    assert all(s["ok"] for s in data["steps"]), data["steps"]
    assert data["data_lost_up_to_snapshot"] == "none"
    assert data["logins_after_recovery"]["2FA login of ezra with a TOTP code"] == "works"
    # the promoted standby answers with the forge's host key: users' known_hosts still work
    assert data["ssh_host_keys"].startswith("the backup's host keys"), data["ssh_host_keys"]
    assert len(data["git_over_ssh_after_recovery"]) == 2, data["git_over_ssh_after_recovery"]
    assert "standby refresh (its timer's job)" in data["setup"]
    assert data["certificate"].startswith("kept: "), data["certificate"]
    assert "; the primary's (" in data["certificate"], data["certificate"]
    # Issue 21: the promotion replays the replicas as a recovery does
    rpo = data["rpo_by_kind"]
    for kind in ("issues (Gitea's database)", "Hermes sessions (the backend's state.db)"):
        assert rpo[kind]["written"] >= 3 and rpo[kind]["rpo_seconds"] <= 10, rpo
    # One primary: the standby ran no house, no cron, no backup until promoted ...
    before_p = data["one_primary"]["standby before promotion"]
    assert before_p == {"role": "standby", "houses_active": [], "cron": False,
                        "backup_timer": "inactive", "refresh_timer": "active"}, before_p
    # ... and is the forge after it, also after the README's converge of inventories/standby.py
    for when in ("standby after cutover", "standby after a later converge"):
        now = data["one_primary"][when]
        assert now == {"role": "primary", "houses_active": ["ezra", "allegro", "bezalel"],
                       "cron": True, "backup_timer": "active",
                       "refresh_timer": "inactive"}, (when, now)
    assert set(ledger_for(lab).read()["droplets"]) == before

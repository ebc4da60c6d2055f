"""`phoenix backup`: the offsite store from the operator's machine.

Registered on the `phoenix` group by phoenix/cli.py; expected failures are PhoenixError lines
there, as for every command.
"""

from __future__ import annotations

import json

import click

from phoenix.errors import PhoenixError, Unhealthy
from phoenix.state import ROLES


@click.group(help="Offsite backups with restic: init, verify, now, list, prune.")
def backup() -> None:
    pass


def _store():
    from phoenix.backup.store import store_from_settings
    from phoenix.settings import load

    return store_from_settings(load())


@backup.command("init", help="Create the restic repository unless it exists.")
def backup_init() -> None:
    from phoenix.backup import snapshots as bk
    from phoenix.check import Inputs, require

    require(Inputs(command="backup init", role="primary"))
    click.echo("repository created" if bk.init(_store()) else "repository already there")


@backup.command("verify", help="restic check with a read subset, then a test restore.")
@click.option(
    "--subset",
    default=None,
    help="Share of packs to read, e.g. 10% (default from group_data backup_verify_subset).",
)
@click.option("--snapshot", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print what was proved as JSON.")
def backup_verify(subset: str | None, snapshot: str, as_json: bool) -> None:
    import contextlib

    from phoenix.backup import snapshots as bk
    from phoenix.backup.store import append_only, forge_channel
    from phoenix.settings import load

    settings = load()
    # Append-only stores: also try, with the forge's own key, what a compromised forge would.
    with forge_channel(settings) if append_only(settings) else contextlib.nullcontext() as forge:
        result = bk.verify(
            _store(),
            snapshot=snapshot,
            forge=forge,
            read_data_subset=subset or settings.get("backup_verify_subset", "5%"),
            keys_expected=settings.get("backup_keys_expected"),
        )
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())


@backup.command(
    "store-setup",
    help="Make the store append-only for the forge, with its own "
    "retention timer (as root over ssh; files/phoenix_offsite_store.py).",
)
@click.option("--root-user", default="root", help="Who runs the setup on the store.")
def backup_store_setup(root_user: str) -> None:
    import subprocess
    from dataclasses import replace

    from phoenix.backup.store import forge_channel, setup_store, store_spec
    from phoenix.check import Inputs, require
    from phoenix.provision.droplet import operator_key
    from phoenix.secrets import read_secret
    from phoenix.settings import load
    from phoenix.sshconf import public_half

    require(Inputs(command="backup store-setup", role="primary"))
    settings = load()
    store = _store()
    if store.ssh is None:
        raise PhoenixError("store-setup needs an sftp backup_repository (the store's sshd)")
    with forge_channel(settings) as forge:
        proc = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(forge.key)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise PhoenixError(
                "the backup_ssh_key secret is not an SSH private key: "
                + (proc.stderr.strip() or "ssh-keygen -y failed")
            )
        spec = store_spec(
            settings,
            forge_key=proc.stdout,
            operator_key=public_half(operator_key()).read_text(),
            password=read_secret("restic_password", folder=settings.get("secrets_dir")),
        )
    changed = setup_store(replace(store.ssh, user=root_user), spec)
    click.echo(
        f"store {store.ssh.host} is append-only for the forge; "
        + (f"changed: {', '.join(changed)}" if changed else "nothing to change")
    )
    url = settings.get("litestream_replica_url")
    if url:  # Litestream's account beside it, when it lives on the same host
        from phoenix.backup import replication

        where = replication.parse_url(url)
        if where["host"] != store.ssh.host:
            raise PhoenixError(
                f"litestream_replica_url is on {where['host']}, not on the "
                f"restic store {store.ssh.host}: set its account up there "
                "(files/phoenix_offsite_store.py, spec: phoenix.backup.replication."
                "account_spec)"
            )
        key = read_secret("litestream_ssh_key", folder=settings.get("secrets_dir"))
        proc = subprocess.run(
            ["ssh-keygen", "-y", "-f", "/dev/stdin"],
            input=key.strip() + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PhoenixError(
                "the litestream_ssh_key secret is not an SSH private key: "
                + (proc.stderr.strip() or "ssh-keygen -y failed")
            )
        changed = setup_store(
            replace(store.ssh, user=root_user), replication.account_spec(url, proc.stdout)
        )
        click.echo(
            f"replica account {where['user']} on {where['host']} (SFTP, for "
            "Litestream); " + (f"changed: {', '.join(changed)}" if changed else "nothing to change")
        )


@backup.command(
    "prune",
    help="Apply the keep-* policy (restic forget --prune) with your key; "
    "the store's timer does it daily, the forge cannot.",
)
def backup_prune() -> None:
    from phoenix.backup import snapshots as bk
    from phoenix.check import Inputs, require
    from phoenix.settings import load

    require(Inputs(command="backup prune", role="primary"))
    settings = load()
    keep = {k: settings.get(f"backup_keep_{k}") for k in ("hourly", "daily", "weekly")}
    kept, removed = bk.prune(
        _store(), keep=keep, repo_within=settings.get("frequent_snapshot_keep_within") or "2d"
    )
    click.echo(
        f"kept {len(kept)} snapshot(s), removed {len(removed)}"
        + "".join(f"\n  removed {s['short_id']}  {s['time'][:19]}" for s in removed)
    )


@backup.command("now", help="Take a snapshot on a still-reachable forge (runbook step 4).")
@click.option(
    "--role",
    default="primary",
    type=click.Choice(ROLES),
    help="Whose droplet (from the state file), unless PHOENIX_HOST is set.",
)
def backup_now(role: str) -> None:
    from phoenix.backup.now import now
    from phoenix.check import Inputs, require
    from phoenix.settings import load
    from phoenix.sshconf import role_target

    require(Inputs(command="backup now", role=role))
    click.echo(now(role_target(role), settings=load(role=role)))


@backup.command(
    "status",
    help="Per kind of data, the newest point that holds it: each database replica's lag, "
    "the newest full and frequent snapshot's age, the last frequent run's length; exits 4 "
    "when one passes its threshold (backup_max_age, litestream_max_lag, "
    "frequent_snapshot_interval, frequent_snapshot_run_budget).",
)
@click.option(
    "--role",
    default="primary",
    type=click.Choice(ROLES),
    help="Whose droplet (from the state file), unless PHOENIX_HOST is set.",
)
@click.option("--json", "as_json", is_flag=True)
def backup_status(role: str, as_json: bool) -> None:
    from phoenix.backup import pitr, replication
    from phoenix.backup import snapshots as bk
    from phoenix.backup.store import repo_tag
    from phoenix.settings import load
    from phoenix.sshconf import role_target

    settings = load()
    store = _store()
    every = bk.list_snapshots(store, all_hosts=True)
    # a snapshot dated later than now (the forge writes its time) is a problem, not the newest
    future = pitr.future(every, float(settings.get("backup_future_tolerance") or 30))
    every = [s for s in every if s["id"] not in future]
    age = replication.snapshot_age([s for s in every if store.tag in s["tags"]])
    repo_age = replication.snapshot_age([s for s in every if repo_tag(store.tag) in s["tags"]])
    lags = (
        replication.replica_lags(role_target(role), settings, replication.binary_path(settings))
        if settings.get("litestream_replica_url")
        else []
    )
    # The last repository run's length against its budget: asked on the forge
    run_status = (
        replication.repo_run_status(role_target(role), settings)
        if replication.repo_snapshot_period(settings)
        else None
    )
    found = replication.problems(
        age,
        lags,
        settings,
        repo_age,
        check_repo=True,
        repo_status=run_status,
        future=future.values(),
    )
    # The newest snapshot may be the previous primary's: this one is protected only once it
    # has saved a full snapshot of its own.
    target = role_target(role)
    if replication.full_run_status(target, settings) is None:
        found.insert(
            0,
            f"not yet protected: {target.host} has saved no full snapshot of its "
            f"own ({settings['backup_status_file']} is missing; "
            "phoenix backup now)",
        )
    kinds = replication.newest_by_kind(age, repo_age, lags, settings)
    status = {
        "kinds": kinds,
        "snapshot_age_seconds": age,
        "replicas": lags,
        "repository_snapshot_age_seconds": repo_age,
        "repository_run": run_status,
        "problems": found,
    }
    unhealthy = Unhealthy(f"the backups are past a threshold: {len(found)} problem(s)")
    if as_json and found:
        unhealthy.output = status  # one document: the status with the error (main prints it)
    elif as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        for kind in kinds:
            seconds = kind["age_seconds"]
            click.echo(
                f"{kind['kind']}: {kind['from']}, "
                + ("none" if seconds is None else f"{seconds:.0f} s old")
                + f" (at most {kind['bound_seconds']:.0f} s)"
            )
        click.echo("newest full snapshot: " + ("none" if age is None else f"{age:.0f} s old"))
        click.echo(
            "newest frequent snapshot: " + ("none" if repo_age is None else f"{repo_age:.0f} s old")
        )
        if run_status and run_status.get("duration_seconds") is not None:
            click.echo(
                f"  its last run took {run_status['duration_seconds']:.1f} s "
                f"(frequent_snapshot_run_budget {settings['frequent_snapshot_run_budget']} s, "
                f"frequent_snapshot_interval {settings['frequent_snapshot_interval']} s)"
            )
        for db in lags:
            click.echo(
                f"  {db['path']}: "
                + (
                    f"unreadable: {db['error']}"
                    if db.get("error")
                    else f"replica lag {db['lag_seconds']:.1f} s "
                    f"(txid {db['replica_txid']} of "
                    f"{db['local_txid']})"
                )
            )
        for line in found:
            click.echo(f"problem: {line}", err=True)
    if found:
        raise unhealthy


@backup.command("list", help="The snapshots, oldest first.")
@click.option("--json", "as_json", is_flag=True)
def backup_list(as_json: bool) -> None:
    from phoenix.backup import snapshots as bk

    snaps = bk.list_snapshots(_store())
    if as_json:
        click.echo(json.dumps(snaps, indent=2))
        return
    for snap in snaps:
        click.echo(
            f"{snap['short_id']}  {snap['time']}  {snap['host']}  "
            f"{' '.join(snap.get('tags') or [])}"
        )

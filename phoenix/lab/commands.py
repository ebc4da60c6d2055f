"""The lab's commands: `phoenix lab ...` and `phoenix drill`. phoenix.cli names them and
imports this module only when one of them runs (or the help lists them); each command imports
the lab modules it needs when it runs."""

from __future__ import annotations

import json
import os

import click

from phoenix.lab import config as labconfig


@click.group(help="The lab: a DigitalOcean region on this machine (needs root).")
def lab() -> None:
    pass


@lab.command("up", help="Build what is missing: image, bridge, apt proxy, API servers.")
def lab_up() -> None:
    from phoenix.lab import lab as lablib

    timings = lablib.up(labconfig.load(), log=lambda m: click.echo(m, err=True))
    click.echo(f"lab up (image build {timings['image_build_s']:.1f} s)")


@lab.command("down", help="Remove every lab object; --purge also drops the image and caches.")
@click.option("--purge", is_flag=True, help="Also remove the state folder (image, apt cache).")
def lab_down(purge: bool) -> None:
    from phoenix.lab import lab as lablib

    seconds = lablib.down(labconfig.load(), purge=purge)
    click.echo(f"lab down in {seconds:.1f} s")


@lab.command("status", help="What the lab is running.")
@click.option("--json", "as_json", is_flag=True)
def lab_status(as_json: bool) -> None:
    from phoenix.lab import lab as lablib

    state = lablib.status(labconfig.load())
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"lab: {'up' if state['up'] else 'down'}")
    for name, alive in state["processes"].items():
        click.echo(f"  {name}: {'running' if alive else 'dead'}")
    for d in state["droplets"]:
        click.echo(
            f"  droplet {d['id']} {d['name']} {d['ip']} {d['status']}"
            + (f" error: {d['error']}" if d.get("error") else "")
        )


@lab.command("env", help="Shell exports a client needs to use the lab (tokens read from files).")
def lab_env() -> None:
    from phoenix.lab.client import env_exports

    click.echo(env_exports(labconfig.load()))


@lab.command(
    "ssh",
    help="SSH into a lab droplet by name, its host key pinned.",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_ssh(name: str, command: tuple[str, ...]) -> None:
    from phoenix.lab.client import droplet_target
    from phoenix.sshconf import ssh_command

    argv = ssh_command(droplet_target(labconfig.load(), name), *command)
    os.execvp(argv[0], argv)


@click.command(help="A whole disaster and recovery in the lab (root): RTO, RPO, data lost.")
@click.option("--standby", is_flag=True, help="Promote a warm standby instead of provisioning.")
@click.option("--keep-lab", is_flag=True, help="Leave the lab and the drill's droplets up.")
@click.option(
    "--again",
    is_flag=True,
    help="Then a second disaster: the recovered forge, "
    "written to, destroyed minutes after its cutover, and recovered in turn.",
)
@click.option(
    "--no-certificate-in-backup",
    "bare",
    is_flag=True,
    help="The first disaster: the primary's backups leave Caddy's home out, so the "
    "recovery gets its certificate over DNS-01 before the cutover.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drill(standby: bool, keep_lab: bool, again: bool, bare: bool, as_json: bool) -> None:
    from phoenix.console import Console
    from phoenix.lab import drill as drl

    if again and standby:
        raise click.UsageError("--again follows a recovery, not a promotion: drop --standby")
    report = drl.drill(
        standby=standby, say=Console(), keep_lab=keep_lab, again=again, no_certificate=bare
    )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


# The commands this module adds to `phoenix`, by name (phoenix.cli looks them up here).
COMMANDS: dict[str, click.Command] = {"lab": lab, "drill": drill}

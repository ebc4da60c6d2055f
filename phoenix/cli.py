"""The `phoenix` command. Expected failures print one line and exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import sys

import click

from phoenix.errors import PhoenixError
from phoenix.lab import config as labconfig


@click.group(help="Rebuild the forge VPS from code, prove it, and move DNS to it.")
def cli() -> None:
    pass


@cli.group(help="The lab: a DigitalOcean region on this machine (needs root).")
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
        click.echo(f"  droplet {d['id']} {d['name']} {d['ip']} {d['status']}"
                   + (f" error: {d['error']}" if d.get("error") else ""))


@lab.command("env", help="Shell exports a client needs to use the lab (tokens read from files).")
def lab_env() -> None:
    from phoenix.lab.client import env_exports

    click.echo(env_exports(labconfig.load()))


@lab.command("ssh", help="SSH into a lab droplet by name, its host key pinned.",
             context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def lab_ssh(name: str, command: tuple[str, ...]) -> None:
    from phoenix.lab.client import droplet_target
    from phoenix.sshconf import ssh_command

    argv = ssh_command(droplet_target(labconfig.load(), name), *command)
    os.execvp(argv[0], argv)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except PhoenixError as exc:
        click.echo(f"phoenix: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)

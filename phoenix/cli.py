"""The `phoenix` command. Expected failures print one line and exit with their code (EXIT_CODES),
never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from phoenix import __version__
from phoenix.backup.cli import backup
from phoenix.console import Console
from phoenix.context import Context, current, install
from phoenix.errors import INTERRUPTED, NotConfigured, PhoenixError, Unhealthy

# (name, what it sets): click wraps them to the terminal, whatever its width.
ENVIRONMENT = [
    ("PHOENIX_PROJECT", "the project folder (as --project)"),
    ("PHOENIX_ENV", "group_data override file to use (lab, recovery, standby)"),
    (
        "PHOENIX_ROLE",
        "whose settings (recovery, standby, primary): its group_data file on top, as pyinfra "
        "reads it (set for the validation suite)",
    ),
    ("DIGITALOCEAN_TOKEN", "DigitalOcean API token (or DIGITALOCEAN_ACCESS_TOKEN, doctl's)"),
    ("DIGITALOCEAN_ENDPOINT", "DigitalOcean API URL (or DIGITALOCEAN_API_URL)"),
    ("CLOUDFLARE_API_TOKEN", "Cloudflare token: Zone:Read + DNS:Edit"),
    ("CLOUDFLARE_BASE_URL", "Cloudflare API URL (the lab's, for a drill)"),
    ("PHOENIX_SSH_KEY", "the operator's SSH key (default ~/.ssh/id_ed25519)"),
    (
        "PHOENIX_STATE_DIR",
        "state files (default $XDG_STATE_HOME/phoenix, else ~/.local/state/phoenix)",
    ),
    (
        "PHOENIX_FACT_BATCH=0",
        "the deploy reads each host fact on its own (default: many per SSH round trip, the "
        "questions of the last converge kept in the state folder)",
    ),
    (
        "PHOENIX_SECRETS_DIR",
        "secret files, 0600 (default $XDG_CONFIG_HOME/phoenix/secrets, else "
        "~/.config/phoenix/secrets)",
    ),
    ("PHOENIX_<SECRET>", "one secret, e.g. PHOENIX_RESTIC_PASSWORD"),
    ("PHOENIX_HOST", "a host without a state file"),
    ("PHOENIX_KNOWN_HOSTS", "that host's pinned key"),
    ("RESTIC_*", "passed to restic (repository and password stay Phoenix's)"),
    ("XDG_CACHE_HOME", "restic's cache (default ~/.cache)"),
    ("PHOENIX_LAB_*", "the lab's folder, subnet, bridge and ports (see README)"),
]

EXIT_CODES = [
    ("0", "done"),
    ("1", "failed"),
    ("2", "usage: an unknown command or option"),
    ("3", "not configured: a setting, secret, token, key or file missing or wrong"),
    ("4", "unhealthy: validation failed, or backups past a threshold (backup status)"),
    ("130", "interrupted"),
]

# `phoenix --help` in a crisis's order: what the operator runs when the forge is down first,
# what keeps them ready next, the lab apart. Every command is in one section.
SECTIONS = [
    ("The forge is down (in this order)", ["check", "recover", "rollback"]),
    ("Step by step (what recover chains)", ["provision", "validate", "cutover"]),
    ("Before the disaster", ["backup", "adopt"]),
    ("The lab (this machine, as root)", ["drill", "lab"]),
]


class PhoenixGroup(click.Group):
    """`phoenix`'s commands; the lab's (phoenix.lab.commands) are imported only when named,
    so that an operator's command never loads the lab."""

    LAB = ("lab", "drill")

    def list_commands(self, ctx: click.Context) -> list[str]:
        known = [*super().list_commands(ctx), *self.LAB]
        ordered = [name for _, names in SECTIONS for name in names if name in known]
        return ordered + sorted(set(known) - set(ordered))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAB:
            from phoenix.lab.commands import COMMANDS

            return COMMANDS[cmd_name]
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = set()
        sections = [*SECTIONS, ("Other commands", self.list_commands(ctx))]
        for title, names in sections:
            rows = []
            for name in names:
                command = self.get_command(ctx, name)
                if name in listed or command is None or command.hidden:
                    continue
                listed.add(name)
                rows.append((name, command.get_short_help_str(limit=formatter.width)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Environment"):
            formatter.write_text(
                "Phoenix's own name first; the usual tools' names are accepted too."
            )
            formatter.write_paragraph()
            formatter.write_dl(ENVIRONMENT, col_max=24)
        with formatter.section("Exit codes"):
            formatter.write_text(
                "With --json a failure is also a JSON document on stdout (error, exit_code, "
                "problems)."
            )
            formatter.write_paragraph()
            formatter.write_dl(EXIT_CODES)
        with formatter.section("Shell completion (bash; zsh and fish alike)"):
            formatter.write_text('eval "$(_PHOENIX_COMPLETE=bash_source phoenix)"')


@click.group(
    cls=PhoenixGroup,
    help="Rebuild the forge VPS from code, prove it, and move DNS to it.",
    context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", "-V", prog_name="phoenix", message="%(prog)s %(version)s"
)
@click.option(
    "--project",
    type=click.Path(file_okay=False),
    default=None,
    help="The project folder (deploy.py, group_data/); default: the current one or one above it.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Also print pyinfra's own lines as the deploy runs (-vv: and its facts and no-ops).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr: only results and errors.")
def cli(project: str | None, verbose: int, quiet: bool) -> None:
    # The one context of this command: read by phoenix.settings.project(), and handed to the
    # pyinfra/pytest runs it starts (Context.child_env).
    if verbose and quiet:
        raise click.UsageError("-v and -q say opposite things: choose one")
    install(Context.from_process(project=project, verbosity=-1 if quiet else verbose))
    if project:
        from phoenix.settings import project as project_folder

        project_folder()  # a folder that is not a project: say so now


_say = Console()  # progress on stderr: waits and the deploy's operations update in place


def _role(standby: bool) -> str:
    return "standby" if standby else "recovery"


@cli.command(
    short_help="Every problem a command would meet, all at once, changing nothing.",
    help="Every problem a command would meet (tokens, secrets, settings, keys, the "
    "restore source), all at once, changing nothing; exit 3 when there is one.",
)
@click.option(
    "--for",
    "command",
    default="recover",
    show_default=True,
    type=click.Choice(
        [
            "recover",
            "provision",
            "cutover",
            "adopt",
            "backup init",
            "backup store-setup",
            "backup prune",
            "backup now",
        ]
    ),
    help="The command to check for.",
)
@click.option("--standby", is_flag=True, help="For the standby (a promotion).")
@click.option("--reserved-ip", is_flag=True, help="A cutover by the reserved IP, not DNS.")
@click.option(
    "--restore-source",
    "source",
    default=None,
    metavar="SOURCE",
    help="The restore source `recover` would get (default restic:latest).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def check(
    command: str, standby: bool, reserved_ip: bool, source: str | None, as_json: bool
) -> None:
    from phoenix import check as chk

    role = "primary" if command == "adopt" else _role(standby)
    inputs = chk.Inputs(command=command, role=role, source=source, reserved_ip=reserved_ip)
    found = chk.problems(inputs)
    checked = chk.needs(inputs)
    if found:  # exit 3; with --json, the problems in main()'s one document
        error = NotConfigured(
            f"{len(found)} problem(s) for `phoenix {command}`:\n  " + "\n  ".join(found), found
        )
        error.output = {"command": command, "checks": checked}
        raise error
    # which verification deploy.sh's commit gets, where the command deploys
    modes = {}
    if "timmy-config" in checked:
        from phoenix.configrepo import verification

        modes["timmy-config"] = verification(inputs.settings)
    click.echo(
        json.dumps({"command": command, "checks": checked, "problems": [], **modes}, indent=2)
        if as_json
        else f"no problem for `phoenix {command}` ({', '.join(checked)} checked)"
        + "".join(f"\n{name}: {mode}" for name, mode in modes.items())
    )


@cli.command(help="Create (or find) the replacement droplet and pin its SSH host key.")
@click.option("--standby", is_flag=True, help="Provision for inventories/standby.py.")
def provision(standby: bool) -> None:
    from phoenix.check import Inputs, require
    from phoenix.provision import do
    from phoenix.provision import droplet as prov
    from phoenix.settings import load
    from phoenix.state import State

    role = _role(standby)
    require(Inputs(command="provision", role=role))  # before a droplet is billed
    droplet = prov.provision(
        role=role,
        settings=load(role=role),
        client=do.client(say=_say),
        state=State(role),
        key=prov.operator_key(),
        progress=_say,
    )
    click.echo(f"{droplet['name']} ({droplet['id']}) is up at {droplet['ip']}")


@cli.command(help="Point the forge's DNS records (or a reserved IP) at the new droplet.")
@click.option("--standby", is_flag=True, help="Cut over to the standby instead.")
@click.option("--reserved-ip", is_flag=True, help="Move the DigitalOcean reserved IP instead.")
@click.option("--force", is_flag=True, help="Cut over even if validation has not passed.")
@click.option(
    "--fence",
    is_flag=True,
    help="Power the old primary off through DigitalOcean (disk kept) if it answers.",
)
@click.option(
    "--fence-unconfirmed",
    is_flag=True,
    help="As --fence; when DigitalOcean cannot power it off (an outage), go on only while "
    "the old primary answers on none of fence_probe_ports from here, and record that.",
)
@click.option("--no-wait", is_flag=True, help="Do not wait for the resolvers to agree.")
def cutover(
    standby: bool,
    reserved_ip: bool,
    force: bool,
    fence: bool,
    fence_unconfirmed: bool,
    no_wait: bool,
) -> None:
    from phoenix.check import Inputs, require
    from phoenix.cutover import traffic as cut
    from phoenix.cutover.primary import protect, unconfirmed_fencing
    from phoenix.provision.do import client as do_client
    from phoenix.settings import load
    from phoenix.state import State

    role = _role(standby)
    require(Inputs(command="cutover", role=role, reserved_ip=reserved_ip))
    fence = fence or fence_unconfirmed
    needs_do = reserved_ip or fence or bool(current().do_token)
    settings, state = load(role=role), State(role)
    ports = settings.get("fence_probe_ports", [22, 443]) if fence_unconfirmed else None
    with unconfirmed_fencing(ports):
        cut.cutover(
            settings=settings,
            state=state,
            do=do_client() if needs_do else None,
            reserved_ip=reserved_ip,
            force=force,
            say=_say,
            wait=not no_wait,
            fence_old=fence,
        )
    protect(state, settings, _say)  # users are served: now the new primary's first snapshot


@cli.command(help="Put the saved DNS values (or reserved IP) back; power the new droplet off.")
@click.option("--standby", is_flag=True)
@click.option("--keep-running", is_flag=True, help="Do not power the new droplet off.")
def rollback(standby: bool, keep_running: bool) -> None:
    from phoenix.cutover import traffic as cut
    from phoenix.provision.do import client as do_client
    from phoenix.state import State

    state = State(_role(standby))
    needs = cut.rollback_needs(state, power_off=not keep_running)
    if not needs:  # before a token is asked for: there is nothing to use it on
        _say(
            f"nothing to roll back: {state.path} holds no saved DNS values, reserved IP, "
            "fenced primary" + ("" if keep_running else " or droplet")
        )
        return
    cut.rollback(
        state=state,
        do=do_client(say=_say) if "digitalocean" in needs else None,
        say=_say,
        power_off=not keep_running,
    )


@cli.command(help="Prove the recovered host, step by step of the runbook (pytest-testinfra).")
@click.option("--standby", is_flag=True, help="Validate the standby instead.")
@click.option("--junit", type=click.Path(), default=None, help="Where to write JUnit XML.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(standby: bool, junit: str | None, as_json: bool) -> None:
    from pathlib import Path

    from phoenix.cutover.traffic import record_verdict
    from phoenix.settings import env_name
    from phoenix.sshconf import role_target
    from phoenix.state import State
    from phoenix.validate import run_validation

    role = _role(standby)
    state = State(role)
    junit_path = Path(junit) if junit else state.folder / f"{role}.validation.xml"
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    target = role_target(role)
    result = run_validation(target=target, settings_env=env_name(), junit=junit_path, role=role)
    if state.droplet:  # the verdict names the address it proved (PHOENIX_HOST may differ)
        record_verdict(state, target, passed=result.passed, junit=junit_path)
    if not result.passed:
        failed = Unhealthy(f"validation failed on {target.host}; see {junit_path}")
        if as_json:  # one document: the result with the error (main prints it)
            failed.output = result.to_dict()
        else:
            click.echo(result.render())
        raise failed
    click.echo(result.to_json() if as_json else result.render())


@cli.command(help="Provision, deploy (restoring the backup), validate and cut over; timed.")
@click.option(
    "--standby",
    is_flag=True,
    help="Promote the warm standby: the latest snapshot over its copy, then cut over.",
)
@click.option("--reserved-ip", is_flag=True, help="Cut over with the reserved IP, not DNS.")
@click.option("--no-cutover", is_flag=True, help="Stop after validation.")
@click.option(
    "--dry",
    is_flag=True,
    help="Print the plan and change nothing; with a droplet "
    "already there, also what the deploy would change (pyinfra --dry --diff).",
)
@click.option(
    "--restore-source",
    "source",
    default=None,
    metavar="SOURCE",
    help="What to restore (default restic:latest, the store's newest snapshot, the "
    "replicas and repository snapshots to their newest): restic:ID (that snapshot as it "
    "was, nothing replayed past it), a backup .tar.gz, a gitea dump .zip, the runbook's "
    "backup folder or .db file, forge:[PATH] on the old forge.",
)
@click.option(
    "--point-in-time",
    "point_in_time",
    default=None,
    metavar="TIME",
    help="Everything as it was at TIME (ISO 8601, UTC): the newest snapshot at or "
    "before it, the databases' replicas and the repositories to it.",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the report goes (default: beside the state file).",
)
@click.option(
    "--new-host-keys",
    is_flag=True,
    help="Keep the new droplet's own SSH host keys, not the backup's (after a compromise: "
    "the old key is the attacker's too). Users must update their known_hosts; the report "
    "gives the old and new fingerprints.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (seconds).")
def recover(
    standby: bool,
    reserved_ip: bool,
    no_cutover: bool,
    dry: bool,
    source: str | None,
    point_in_time: str | None,
    report_dir: Path | None,
    new_host_keys: bool,
    as_json: bool,
) -> None:
    from phoenix import recover as rec
    from phoenix.backup import pitr
    from phoenix.check import Inputs, require
    from phoenix.settings import project
    from phoenix.state import recovering

    project()  # group_data, deploy.py: nothing to recover with outside a project folder
    role = _role(standby)
    if point_in_time and source:
        raise PhoenixError("--point-in-time chooses the snapshot itself: drop --restore-source")
    data = rec.recovery_data(standby=standby, source=source, new_host_keys=new_host_keys)
    if point_in_time:
        data.update(pitr.recovery_data(point_in_time))
    inputs = Inputs(
        command="recover",
        role=role,
        source=data["restore_source"],
        reserved_ip=reserved_ip,
        cutover=not no_cutover,
    )
    if dry:
        for n, line in enumerate(rec.plan(role, data["restore_source"]), 1):
            click.echo(f"{n}. {line}")
        require(inputs)  # every problem, before the deploy's own dry run meets the first
        rec.dry_deploy(role, say=click.echo, data=data)
        return
    with recovering():  # a second run is refused before its checks, not after them
        require(inputs)  # before a droplet is billed
        report = rec.recover(
            role=role,
            reserved_ip=reserved_ip,
            skip_cutover=no_cutover,
            say=_say,
            deploy_data=data,
            report_dir=report_dir,
        )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


@cli.command(
    short_help="Back up today's forge as it is and prove the snapshot restores.",
    help="Back up the forge that runs today as it is (its backup job only), take a "
    "snapshot, prove it restores, and check the forge was left unchanged.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (seconds).")
def adopt(as_json: bool) -> None:
    from phoenix.check import Inputs, require
    from phoenix.forge import adopt as adp
    from phoenix.state import state_dir

    require(Inputs(command="adopt", role="primary"))
    report = adp.adopt(say=_say, report_dir=state_dir() / "adopt")
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())


cli.add_command(backup)


def _failure(message: str, exit_code: int) -> dict:
    """A failure that is no PhoenixError (click's usage errors, Ctrl-C), as --json says one."""
    return {"problems": [message], "error": message, "exit_code": exit_code}


def main(args: list[str] | None = None) -> None:
    """`phoenix`: an expected failure is one line on stderr and its exit code (README, "Exit
    codes"); with --json, also one JSON document on stdout that says so."""
    args = sys.argv[1:] if args is None else list(args)
    # Even a failure before the command runs (a usage error, no project) answers in JSON.
    as_json = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
    try:
        cli.main(args=args, prog_name="phoenix", standalone_mode=False)
    except PhoenixError as exc:
        if as_json:
            click.echo(json.dumps(exc.to_dict(), indent=2))
        click.echo(f"phoenix: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        if as_json:
            click.echo(json.dumps(_failure("interrupted", INTERRUPTED), indent=2))
        sys.exit(INTERRUPTED)
    except click.ClickException as exc:
        if as_json:
            click.echo(json.dumps(_failure(exc.format_message(), exc.exit_code), indent=2))
        exc.show()
        sys.exit(exc.exit_code)

"""The README as an operator reads it in a crisis: its first section says what to do, and every
`phoenix` command and option it names exists; so do those of docs/, and the make targets."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from phoenix.cli import cli
from tests.unit.test_cli import phoenix

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
HELP = {"-h", "--help"}


def named_commands(text: str = README, program: str = "phoenix") -> list[str]:
    """Every `phoenix …` (or `program …`) the text tells the reader to run: a code line or a
    backtick span that starts with it."""
    found, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            code = line.split("#", 1)[0].strip()
            if code.startswith(f"{program} "):
                found.append(code)
        else:
            found += [span for span in re.findall(r"`([^`]+)`", line)
                      if span.startswith(f"{program} ")]
    return found


def check_named(text: str) -> None:
    """Walk click's tree as the shell would hand it the words; an option or a command that
    is not there fails."""
    words = shlex.split(text.replace("[", " ").replace("]", " ").replace("…", " "))[1:]
    command: click.Command = cli
    ctx = click.Context(cli)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            option = next((p for p in command.params if name in getattr(p, "opts", [])
                           + getattr(p, "secondary_opts", [])), None)
            assert option is not None or name in HELP, f"`{text}`: {command.name} has no {name}"
            takes_value = isinstance(option, click.Option) and not (option.is_flag
                                                                   or option.count)
            i += 2 if takes_value and "=" not in word else 1
            continue
        if not isinstance(command, click.Group) or not re.fullmatch(r"[a-z][a-z-]*", word):
            return  # an argument or a placeholder (NAME, SOURCE, a time)
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`{text}`: no command {word!r} in {command.name}"
        command = sub
        i += 1


def test_the_first_section_is_what_to_do_when_the_forge_is_down():
    lines = README.splitlines()
    headings = [n for n, line in enumerate(lines) if line.startswith("## ")]
    assert lines[headings[0]] == "## The forge is down: do this"
    assert headings[0] < 12  # on the first screen, under a short introduction
    section = "\n".join(lines[headings[0]:headings[1]])
    for word in ("DIGITALOCEAN_TOKEN", "CLOUDFLARE_API_TOKEN", "PHOENIX_SSH_KEY",
                 "phoenix check", "phoenix recover", "phoenix rollback", "--fence",
                 "deploy.log"):
        assert word in section, word


def test_every_command_and_option_the_readme_names_exists():
    named = named_commands()
    assert len(named) > 30 and "phoenix cutover --fence-unconfirmed" in named
    for text in named:
        check_named(text)


def test_the_docs_name_only_commands_options_and_make_targets_that_exist():
    assert {"lab.md", "testing.md"} <= set(DOCS)
    assert "phoenix lab up" in named_commands(DOCS["lab.md"])
    for text in DOCS.values():
        for command in named_commands(text):
            check_named(command)
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = {m.split()[1] for text in [README, *DOCS.values()]
             for m in named_commands(text, "make")}
    assert {"drill", "test"} <= named and named <= targets, named - targets


def test_the_readme_keeps_its_two_commands_and_links_the_docs_that_exist():
    assert "make drill    #" in README and "make test     #" in README
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert {"docs/lab.md", "docs/testing.md"} <= set(links)
    for text in [README, *DOCS.values()]:
        for link in re.findall(r"\]\(([^)#:]+\.md)", text):
            base = ROOT if text is README else ROOT / "docs"
            assert (base / link).exists(), link


def test_the_check_finds_what_is_wrong_with_the_readme():
    with pytest.raises(AssertionError, match="has no --fence-everything"):
        check_named("phoenix cutover --fence-everything")
    with pytest.raises(AssertionError, match="no command 'restore'"):
        check_named("phoenix backup restore")


def test_the_crisis_commands_that_need_no_lab_run_as_written(tmp_path):
    """`phoenix -h`, then `phoenix check` on a machine where nothing is set yet: every
    problem, one per line, exit 3, no traceback."""
    assert "The forge is down" in phoenix("-h").stdout
    result = phoenix("check", tmp=tmp_path)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "no DigitalOcean token: set DIGITALOCEAN_TOKEN" in result.stderr
    assert "no Cloudflare token: set CLOUDFLARE_API_TOKEN" in result.stderr


def test_the_runtime_lock_is_the_development_locks_versions_without_its_tools():
    root = Path(__file__).resolve().parents[2]

    def pins(name: str) -> dict[str, tuple[str, frozenset]]:
        found = {}
        for block in re.split(r"\n(?=[A-Za-z0-9])", (root / name).read_text()):
            match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
            if match:
                found[match[1].lower()] = (match[2],
                                           frozenset(re.findall(r"sha256:([0-9a-f]{64})", block)))
        return found

    dev, runtime = pins("requirements.lock"), pins("requirements-runtime.lock")
    assert {"pyinfra", "pydo", "cloudflare", "click", "pytest-testinfra"} <= set(runtime)
    assert not {"ruff", "mypy", "openapi-schema-validator"} & set(runtime)
    for name, (version, hashes) in runtime.items():
        assert dev[name][0] == version and hashes and hashes <= dev[name][1], name

"""The operator's context: one reader of the environment, handed to what Phoenix runs."""

from __future__ import annotations

import threading
from pathlib import Path

from phoenix import context
from phoenix.context import Context


def test_names_resolve_as_documented(tmp_path):
    ctx = Context(environ={"DIGITALOCEAN_ACCESS_TOKEN": "t", "XDG_STATE_HOME": str(tmp_path),
                           "PHOENIX_SSH_KEY": "~/k", "RESTIC_PACK_SIZE": "64",
                           "RESTIC_PASSWORD": "never-passed", "PHOENIX_RESTIC_PASSWORD": "pw"})
    assert ctx.do_token == "t" and ctx.do_endpoint == "https://api.digitalocean.com"
    assert ctx.state_dir == tmp_path / "phoenix"
    assert ctx.ssh_key == Path("~/k").expanduser()
    assert ctx.restic_env() == {"RESTIC_PACK_SIZE": "64"}
    assert ctx.secret("restic_password") == "pw"


def test_a_child_gets_the_project_named_on_the_command_line():
    ctx = Context(environ={"PHOENIX_ENV": "lab", "PATH": "/bin"}, project="/somewhere")
    env = ctx.child_env({"PHOENIX_ROLE": "standby"}, drop=("PHOENIX_ENV",))
    assert env == {"PATH": "/bin", "PHOENIX_PROJECT": "/somewhere", "PHOENIX_ROLE": "standby"}


def test_the_installed_context_is_seen_from_other_threads_and_use_wins_in_its_block():
    saved = context._installed
    try:
        context.install(Context(environ={"PHOENIX_ENV": "lab"}))
        seen: list = []
        thread = threading.Thread(target=lambda: seen.append(context.current().env_name))
        thread.start()
        thread.join()
        assert seen == ["lab"]
        with context.use(Context(environ={"PHOENIX_ENV": "standby"})):
            assert context.current().env_name == "standby"
        assert context.current().env_name == "lab"
    finally:
        context._installed = saved

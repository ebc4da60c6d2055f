"""Whether Gitea's system webhooks are the ones the wizard houses expect."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase, QuoteString, StringCommand


class DispatchHooks(FactBase):
    """
    `ok`, or `differs: URL …` (files/phoenix_dispatch_hooks.py --check), or None when the
    database or the wanted list is not there yet:

    .. code:: python

        "ok"
    """

    def command(self, *, script: str, wanted: str, db: str, user: str) -> StringCommand:
        return StringCommand(
            "test", "-f", QuoteString(db), "&&", "test", "-f", QuoteString(wanted), "&&",
            "runuser", "-u", QuoteString(user), "--", "python3", "-c",
            f'"$(cat {shlex.quote(script)})"', "--check", QuoteString(db), "<",
            QuoteString(wanted), "||", "true",
        )  # fmt: skip

    def process(self, output: list[str]) -> str | None:
        value = output[0].strip() if output else ""
        return value or None

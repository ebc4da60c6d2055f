"""Who owns what below a folder."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class NotOwnedBy(FactBase):
    """
    The first path below (and including) `path` that `user` does not own, or None when every
    file and folder is theirs (or `path` does not exist):

    .. code:: python

        "/var/lib/hermes/ezra/skills"
    """

    def command(self, path: str, user: str) -> StringCommand:
        return StringCommand(
            "find",
            QuoteString(path),
            "!",
            "-user",
            QuoteString(user),
            "-print",
            "-quit",
            "2>/dev/null",
            "||",
            "true",
        )

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None

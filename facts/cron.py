"""The cron file built from timmy-config's cron/ folder, compared with the installed one."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand

HEADER = (
    "# Managed by Phoenix from the cron/*.cron files of timmy-config, their source of "
    "truth: change them there."
)


def build_command(source: str) -> StringCommand:
    """The file's content on stdout: every SOURCE/*.cron in C-locale order, each under a
    comment naming it. The task and the fact share it, so they cannot disagree."""
    return StringCommand(
        "(",
        "export",
        "LC_ALL=C;",
        "printf",
        "'%s\\n'",
        QuoteString(HEADER),
        ";",
        "for",
        "f",
        "in",
        StringCommand(QuoteString(source), "/*.cron", _separator=""),
        ";",
        "do",
        "[",
        "-f",
        '"$f"',
        "]",
        "||",
        "continue;",
        "printf",
        "'\\n# --- %s\\n'",
        '"${f##*/}";',
        "cat",
        '"$f";',
        "done",
        ")",
    )


class CronFileInSync(FactBase):
    """
    Whether `dest` holds exactly what build_command(source) makes now; False when `dest` is
    missing (a fresh host):

    .. code:: python

        True
    """

    def command(self, source: str, dest: str) -> StringCommand:
        return StringCommand(
            "if",
            "[",
            "-f",
            QuoteString(dest),
            "]",
            "&&",
            "[",
            '"$(',
            build_command(source),
            "|",
            "sha256sum",
            ')"',
            "=",
            '"$(',
            "sha256sum",
            "<",
            QuoteString(dest),
            ')"',
            "];",
            "then",
            "echo",
            "in-sync;",
            "fi",
        )

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return "in-sync" in output

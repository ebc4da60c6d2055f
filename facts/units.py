"""What systemd holds of unit files: whether `daemon-reload` is due."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class NeedDaemonReload(FactBase):
    """
    Whether systemd runs an older copy of one of `units` than the files on disk (its unit file
    or a drop-in changed since it was loaded): True or False. A unit systemd has not loaded yet
    (a new file) needs no reload: systemd reads it on its first start (systemd >= 246 looks
    again for a unit it found missing once the unit folders changed).

    .. code:: python

        True
    """

    def command(self, units: tuple[str, ...]) -> StringCommand:
        return StringCommand(
            "systemctl",
            "show",
            "--property=NeedDaemonReload",
            "--value",
            "--",
            *(QuoteString(unit) for unit in units),
        )

    def process(self, output: list[str]) -> bool:
        return any(line.strip() == "yes" for line in output)

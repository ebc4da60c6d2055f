"""Whether dpkg was cut off in the middle of its work."""

from __future__ import annotations

from pyinfra.api import FactBase


class DpkgInterrupted(FactBase):
    """
    True when dpkg was interrupted (a converge killed during `apt-get install` leaves its
    journal in /var/lib/dpkg/updates, or packages half-configured): every apt call then fails
    until `dpkg --configure -a`. False otherwise:

    .. code:: python

        False
    """

    def command(self) -> str:
        return (
            'if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] '
            '|| [ -n "$(dpkg --audit 2>/dev/null)" ]; then echo interrupted; fi'
        )

    def requires_command(self) -> str:
        return "dpkg"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return "interrupted" in output

"""Markers: one-line files in which the deploy records what it already did."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class Marker(FactBase):
    """
    The first line of a marker file, or None when there is none:

    .. code:: python

        "fbfe06515a6bcee32cc358bdea1d6577cb35a8eb"
    """

    def command(self, path: str) -> StringCommand:
        return StringCommand("head", "-n1", QuoteString(path), "2>/dev/null", "||", "true")

    def process(self, output: list[str]) -> str | None:
        value = output[0].strip() if output else ""
        return value or None

"""sshd's Diffie-Hellman group-exchange moduli (/etc/ssh/moduli)."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand


class WeakModuli(FactBase):
    """
    How many moduli in `path` are smaller than `min_bits` (the file's fifth column is the
    size minus one, as ssh-keygen writes it); 0 when the file is missing:

    .. code:: python

        34
    """

    def command(self, path: str, min_bits: int) -> StringCommand:
        return StringCommand(
            "awk",
            QuoteString(f"!/^#/ && NF >= 7 && $5 < {int(min_bits)}"),
            QuoteString(path),
            "2>/dev/null",
            "|",
            "wc",
            "-l",
        )

    def process(self, output: list[str]) -> int:
        return int(output[0].strip()) if output and output[0].strip().isdigit() else 0

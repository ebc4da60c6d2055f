"""facts.sshd: how many group-exchange moduli are too small, counted by awk here on a file in
ssh-keygen's format (time type tests trials size-1 generator modulus)."""

from __future__ import annotations

from facts.sshd import WeakModuli
from tests.unit.facts.test_batch import alone

MODULI = """\
#    $OpenBSD: moduli,v 1.37 2024/04/04 00:00:00 dtucker Exp $
# Time Type Tests Tries Size Generator Modulus
20240401000000 2 6 100 2047 2 C1A7F0
20240401000000 2 6 100 2047 5 D2B8E1
20240401000000 2 6 100 3071 2 E3C9F2
20240401000000 2 6 100 4095 5 F4DAA3
"""


def test_moduli_below_the_floor_are_counted_and_comments_are_not(tmp_path):
    path = tmp_path / "moduli"
    path.write_text(MODULI)
    assert alone(WeakModuli, {"path": str(path), "min_bits": 3071}) == 2
    assert alone(WeakModuli, {"path": str(path), "min_bits": 4095}) == 3
    assert alone(WeakModuli, {"path": str(path), "min_bits": 1024}) == 0


def test_a_missing_moduli_file_has_none_weak(tmp_path):
    assert alone(WeakModuli, {"path": str(tmp_path / "moduli"), "min_bits": 3071}) == 0

"""facts.markers: the first line of a marker file the deploy wrote, read here with sh."""

from __future__ import annotations

from facts.markers import Marker
from tests.unit.facts.test_batch import alone


def test_a_marker_is_its_first_line_and_a_missing_or_empty_one_is_none(tmp_path):
    marker = tmp_path / "restored"
    assert alone(Marker, {"path": str(marker)}) is None
    marker.write_text("fbfe06515a6bcee32cc358bdea1d6577cb35a8eb\nsecond line\n")
    assert alone(Marker, {"path": str(marker)}) == "fbfe06515a6bcee32cc358bdea1d6577cb35a8eb"
    marker.write_text("\n")
    assert alone(Marker, {"path": str(marker)}) is None

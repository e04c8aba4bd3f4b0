"""Undo round trip on a sandbox portal: convert with each policy variant, undo, compare snapshots.

"Create missing custom fields" is on: the fields the conversion created are deleted by the undo,
and the snapshots (which hold the field definitions) must be identical except for the records the
undo deleted and modification stamps (bench/undo.py says which fields and why); requests stay
within 1.05x of the undo's floor (every write batch keeping a slot for the mode check).
"""

from __future__ import annotations

import pytest

from bench.undo import VARIANTS, round_trip


@pytest.mark.parametrize("variant", VARIANTS)
def test_convert_then_undo_leaves_the_portal_as_it_was(variant: str, tmp_path) -> None:
    trip = round_trip(variant, leads=30, plan="fast", db=f"sqlite:///{tmp_path / 'app.db'}")
    counts = trip.report.to_dict()["counts"]
    assert trip.converted > 0
    assert counts == {"reverted": trip.converted, "kept": 0, "failed": 0}
    assert trip.diff.lines == []  # the custom field definitions the conversion created too
    assert set(trip.diff.explained) <= {"lead.IS_RETURN_CUSTOMER"}
    assert trip.report.fields and {f.status for f in trip.report.fields} == {"removed"}
    assert trip.refused == 0
    assert trip.requests <= 1.05 * trip.floor, (trip.requests, trip.floor)


@pytest.mark.services
def test_the_round_trip_on_postgresql(fresh_postgres_url: str) -> None:
    trip = round_trip("both/move", leads=30, plan="fast", db=fresh_postgres_url)
    assert trip.report.to_dict()["counts"] == {
        "reverted": trip.converted,
        "kept": 0,
        "failed": 0,
    }
    assert trip.diff.lines == []

"""``python -m tests.bench.hops`` attributes each probe's time to the right hop."""

from __future__ import annotations

import pytest

from tests.bench.hops import HOPS, follow, report


def test_each_probe_is_followed_to_the_first_score_of_its_number_or_a_later_one() -> None:
    sent = {"probe-1": 0.0, "probe-2": 0.1, "probe-3": 0.2}
    stored = {"probe-1": (0.05, 0.07), "probe-2": (0.15, 0.16)}  # probe-3 not recorded yet
    scored = [(1.0, 0.10, 0.12), (2.0, 0.30, 0.33)]
    timings = follow(sent, stored, scored)
    expected = {
        HOPS[0]: [0.05, 0.05],
        HOPS[1]: [0.02, 0.01],
        HOPS[2]: [0.03, 0.14],
        HOPS[3]: [0.02, 0.03],
        HOPS[4]: [0.12, 0.23],
    }
    assert {hop: pytest.approx(values) for hop, values in expected.items()} == timings


def test_a_score_recorded_before_the_reading_does_not_count_for_it() -> None:
    timings = follow({"probe-2": 0.0}, {"probe-2": (0.5, 0.6)}, [(2.0, 0.4, 0.45)])
    assert timings[HOPS[0]] == [0.5]
    assert timings[HOPS[2]] == []


def test_the_report_has_a_row_per_hop_and_leaves_unmeasured_ones_blank() -> None:
    lines = report({HOPS[0]: [0.010, 0.020], HOPS[1]: []}).splitlines()
    assert lines[2] == f"| {HOPS[0]} | 2 | 20 | 20 | 20 |"
    assert lines[3] == f"| {HOPS[1]} | 0 |  |  |  |"

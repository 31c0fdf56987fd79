"""The fault runner's table (tests/fault_table.py): one row per scenario, in scenario order, with the
outcome and the time to recover ("-" when the scenario has none)."""

from __future__ import annotations

import pytest

from tests.fault_table import Row, table

pytestmark = pytest.mark.unit


def test_given_rows_when_tabled_then_sorted_by_scenario_with_outcome_and_recovery():
    rows = [Row(21, "alert while down", "test_b", "failed", 95.2, None),
            Row(4, "leader killed", "test_a", "passed", 301.0, 18.44)]
    lines = table(rows)
    assert lines[0].split() == ["#", "scenario", "result", "recovered", "in", "test", "took"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[:1] == ["4"] and "leader killed" in lines[2] and "passed" in lines[2]
    assert lines[2].split()[-2:] == ["18.4s", "301s"]
    assert lines[3].startswith("21") and "failed" in lines[3] and lines[3].split()[-2:] == ["-", "95s"]
    # columns line up: every row's result starts where the header's does
    col = lines[0].index("result")
    assert all(line[col:].split()[0] in ("result", "passed", "failed") for line in (lines[0], *lines[2:]))

"""The fault runner's report (``make faults`` loads it with ``-p tests.fault_table``): at the end of the
session, one row per test marked ``scenario(number, title)``: its scenario in the reliability list, the
outcome, and the time to recover the test measured (``record_property("recovery_s", seconds)``; "-" when
the scenario has no recovery to time, e.g. a payload refused)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Row:
    number: int
    title: str
    test: str
    outcome: str = "not run"
    seconds: float = 0.0
    recovery: float | None = None


_rows: dict[str, Row] = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("scenario")
        if mark is not None:
            _rows[item.nodeid] = Row(int(mark.args[0]), str(mark.args[1]), item.nodeid.rsplit("::", 1)[-1])


def pytest_runtest_logreport(report):
    row = _rows.get(report.nodeid)
    if row is None:
        return
    if report.when == "call" or report.outcome != "passed":
        if report.when != "call" and report.outcome == "failed":
            row.outcome = f"error ({report.when})"
        elif report.when == "call" or row.outcome == "not run":
            row.outcome = report.outcome
    if report.when == "call":
        row.seconds = report.duration
        row.recovery = next((float(v) for k, v in report.user_properties if k == "recovery_s"), None)


def table(rows: list[Row]) -> list[str]:
    """The rows as a fixed-width text table (pure, so it is tested without a session)."""
    head = ("#", "scenario", "result", "recovered in", "test took")
    cells = [(str(r.number), r.title, r.outcome, "-" if r.recovery is None else f"{r.recovery:.1f}s",
              f"{r.seconds:.0f}s") for r in sorted(rows, key=lambda r: (r.number, r.test))]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    line = lambda c: "  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip()  # noqa: E731
    return [line(head), line(tuple("-" * w for w in widths)), *[line(c) for c in cells]]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _rows:
        return
    terminalreporter.section("fault scenarios")
    for text in table(list(_rows.values())):
        terminalreporter.write_line(text)

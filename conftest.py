"""Test-session glue shared by tests/ and the nbval run over nbs/.

1. nbdev_clean keeps outputs but sets every execution_count to null, and nbval then fails such a cell
   with "Unrun reference cell has outputs". Give those cells a count when nbval collects them.
2. Every notebook should run top to bottom in about two minutes: sum each notebook's cell times,
   print them, and fail the session when one exceeds TT_NOTEBOOK_BUDGET_S (default 120).
"""
from __future__ import annotations

import os
from collections import defaultdict

import pytest

_notebook_seconds: dict[str, float] = defaultdict(float)
_budget_s = float(os.environ.get("TT_NOTEBOOK_BUDGET_S", "120"))


def pytest_collection_modifyitems(items):
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is not None and cell.get("execution_count") is None and cell.get("outputs"):
            cell["execution_count"] = 1


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def _over_budget() -> dict[str, float]:
    return {nb: s for nb, s in _notebook_seconds.items() if s > _budget_s}


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook run times")
    for nb, seconds in sorted(_notebook_seconds.items()):
        flag = "  OVER BUDGET" if seconds > _budget_s else ""
        terminalreporter.write_line(f"{seconds:7.1f}s  {nb}{flag}")
    for nb, seconds in _over_budget().items():
        terminalreporter.write_line(f"FAILED: {nb} took {seconds:.0f}s; the budget is {_budget_s:.0f}s per notebook",
                                    red=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if _over_budget() and session.exitstatus == 0 and not hasattr(session.config, "workerinput"):
        session.exitstatus = 1

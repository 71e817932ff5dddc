"""A pytest plugin the README's test command loads (``-p tests.no_skips``): there, every
optional part is installed, so a skipped test means a part failed to install or start,
and the run fails instead of passing quietly. Plain ``pytest`` still allows skips."""

from __future__ import annotations

import pytest

_skipped: list[str] = []


def _record(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report) -> None:
    _record(report)


def pytest_collectreport(report) -> None:
    _record(report)


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped:
        terminalreporter.section("skipped tests fail this run (an optional part is missing)", red=True)
        for line in _skipped:
            terminalreporter.line(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

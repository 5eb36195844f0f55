"""Shared fixtures: a synthetic evalset the project writes itself, and the shared data location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from route_switch.core.evalset import from_records
from route_switch.core.paths import data_dir
from route_switch.testing.synthetic import EASY, HARD, WORDS, synthetic_records  # noqa: F401  (tests import them from here)


@pytest.fixture(scope="session")
def synthetic():
    return from_records(synthetic_records(), source="synthetic")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not (d / "dcrouter.parquet").exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {d} (set ROUTE_SWITCH_DATA)")
        pytest.skip(f"shared data not found at {d} (set ROUTE_SWITCH_DATA)")
    return d


def pytest_sessionfinish(session, exitstatus):
    """In CI nothing may be skipped silently: a skipped test (missing model, data, extra) fails the run."""
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} test(s) were skipped; failing the run", red=True)
        for rep in skipped[:10]:
            reporter.write_line(f"  skipped: {rep.nodeid} {rep.longrepr}")
        session.exitstatus = 1

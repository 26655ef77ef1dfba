"""A real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port, started with the same code as
`ctxsync dev up --with prometheus`, scraping the targets a test names every second.

Usage: `from tests.fixtures_prometheus import prometheus  # noqa: F401`, then in the test
`prom = prometheus({"ctxsync-connectors": ["127.0.0.1:PORT"]})`, run something, and
`prom.wait_for('ctxsync_connector_records_total{outcome="written"}', lambda v: v == {...})`.
Each call starts its own server (about 1 s); all are stopped when the test ends.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from ctxsync.prometheus import api, query, write_config
from ctxsync.servers import LocalServers

Result = dict[tuple[tuple[str, str], ...], float]


class RunningPrometheus:
    """One started Prometheus: its URL, instant queries, and waiting until a query shows a value."""

    def __init__(self, local: LocalServers) -> None:
        self.local = local
        self.url = local.servers["prometheus"].endpoints["prometheus"]

    def query(self, expr: str) -> Result:
        return query(self.url, expr)

    def wait_for(self, expr: str, accept: Callable[[Result], bool], timeout_s: float = 30.0) -> Result:
        """Poll `expr` until `accept(result)`; fail with the last result (scrapes run every second)."""
        deadline = time.monotonic() + timeout_s
        result: Result = {}
        while time.monotonic() < deadline:
            result = self.query(expr)
            if accept(result):
                return result
            time.sleep(0.25)
        raise AssertionError(f"{expr} did not reach the expected value within {timeout_s:.0f}s; last: {result}")

    def targets(self, count: int, timeout_s: float = 30.0) -> list[dict]:
        """Wait until Prometheus lists `count` active targets (up or not: a config loads within ~1 s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = api(self.url, "/api/v1/targets")["activeTargets"]
            if len(active) >= count:
                return active
            time.sleep(0.1)
        raise AssertionError(f"{count} targets not listed within {timeout_s:.0f}s: {active}")

    def targets_up(self, timeout_s: float = 30.0) -> list[dict]:
        """Wait until every target has been scraped successfully once; returns /api/v1/targets' active ones."""
        deadline = time.monotonic() + timeout_s
        active: list[dict] = []
        while time.monotonic() < deadline:
            active = api(self.url, "/api/v1/targets")["activeTargets"]
            if active and all(t["health"] == "up" for t in active):
                return active
            time.sleep(0.25)
        raise AssertionError(f"targets not all up within {timeout_s:.0f}s: "
                             f"{[(t['scrapeUrl'], t['health'], t['lastError']) for t in active]}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., RunningPrometheus]]:
    """Factory: prometheus(targets={job: ["host:port", ...]}, rule_files=()) -> a running Prometheus."""
    started: list[LocalServers] = []

    def start(targets: Mapping[str, Iterable[str]], rule_files: Iterable[Path] = ()) -> RunningPrometheus:
        local = LocalServers(tmp_path / f"prometheus-{len(started)}")
        started.append(local)
        write_config(local.run_dir, targets, interval_s=1.0, rule_files=rule_files)
        local.start("prometheus")
        return RunningPrometheus(local)

    try:
        yield start
    finally:
        for local in started:
            local.down()

"""A real Prometheus (the fixture, the `dev` server) scraping real endpoints; the alert rules checked by promtool."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server

from ctxsync.servers import free_port
from tests.fixtures_prometheus import prometheus  # noqa: F401


def test_prometheus_scrapes_a_target_and_answers_queries(prometheus) -> None:  # noqa: F811
    registry = CollectorRegistry()
    counter = Counter("ctxsync_fixture_probe", "a probe", ["kind"], registry=registry)
    counter.labels("a").inc(3)
    counter.labels("b").inc(5)
    port = free_port()
    server, _ = start_http_server(port, "127.0.0.1", registry)
    try:
        prom = prometheus({"probe": [f"127.0.0.1:{port}"]})
        assert [t["labels"]["job"] for t in prom.targets_up()] == ["probe"]
        result = prom.wait_for("ctxsync_fixture_probe_total", lambda r: len(r) == 2)
        by_kind = {dict(labels)["kind"]: value for labels, value in result.items()}
        assert by_kind == {"a": 3.0, "b": 5.0}
    finally:
        server.shutdown()

#!/usr/bin/env python3
"""Screenshot of Prometheus showing a ctxsync query (docs/observability.md, Prometheus and alerts).

By default it builds its own live scene on loopback: redis-server, Apache Kafka, noida-db (Elasticsearch API)
and a Prometheus (the same code as `ctxsync dev up --with prometheus`), both connectors with their metrics endpoints, and a producer writing
views and history records (a few of them broken, for the dead-letter counts) for `--seconds`; then it
photographs Prometheus' graph page for `--query` in headless chromium (Debian's, as
scripts/install-system-deps.sh installs it). With --url it photographs a Prometheus that is already running
(e.g. the `prometheus=` URL of `ctxsync dev status`).

    python scripts/screenshot_prometheus.py                       # docs/img/prometheus.png
    python scripts/screenshot_prometheus.py --url http://127.0.0.1:PORT --query 'ctxsync_dlq_records'
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chromium_screenshot import screenshot  # noqa: E402  (scripts/, this script's folder)
from ctxsync.io.connector_metrics import serve_metrics  # noqa: E402
from ctxsync.io.connectors import elasticsearch_connector, redis_connector, run_all  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.prometheus import write_config  # noqa: E402
from ctxsync.servers import LocalServers, free_port  # noqa: E402
from transforms.timestamps import format_iso_ms  # noqa: E402

QUERY = "histogram_quantile(0.95, sum by (le, connector) (rate(ctxsync_propagation_seconds_bucket[10s])))"


def produce(config: dict, seconds: float, rate: int) -> None:
    """Views and history records at about `rate` per second each, event times 5-150 ms old; 1 % broken."""
    out, rng, version = producer(config), random.Random(7), 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(rate // 10):
            version += 1
            user = f"user-{rng.randrange(200):05d}"
            stamp = format_iso_ms(int(time.time() * 1000) - rng.randint(5, 150))
            view = {"key": f"behavioral:{user}", "category": "behavioral", "userId": user, "version": version,
                    "updatedAt": stamp, "attributes": {}, "targetModels": ["churn-predictor"]}
            history = {"eventId": f"e{version}", "timestamp": stamp, "eventType": "context.updated",
                       "source": {"modelId": "risk-model"}, "contextDelta": {"userId": user, "updates": {}},
                       "aggregates": [view["key"]], "applied": [], "stale": [], "violation": False,
                       "conflict": False}
            broken = rng.random() < 0.01
            out.produce("context.views", key=view["key"].encode(), value=b"{broken" if broken else orjson.dumps(view))
            out.produce("context.history", key=user.encode(), value=orjson.dumps(history))
        out.flush(10)
        time.sleep(0.1)


def scene(run_dir: Path, seconds: float) -> tuple[LocalServers, list]:
    """Servers, connectors with metrics and a Prometheus scraping them; returns once the producer is done."""
    import redis
    from elasticsearch import Elasticsearch

    local = LocalServers(run_dir)
    local.up(["redis", "kafka", "noida"])
    endpoints = local.endpoints()
    config = {"bootstrap.servers": endpoints["kafka"]}
    ensure_topics(config, [TopicSpec("context.views", 2), TopicSpec("context.history", 2),
                           TopicSpec("context.violations", 1), TopicSpec("context.dlq", 1)])
    connectors = {"redis": redis_connector(config, redis.Redis.from_url(endpoints["redis"])),
                  "elasticsearch": elasticsearch_connector(config, Elasticsearch(endpoints["elasticsearch"]))}
    ports = {"redis": free_port(), "elasticsearch": free_port()}
    served = serve_metrics(connectors, "127.0.0.1", ports)
    write_config(local.run_dir, {"ctxsync-connectors": [f"127.0.0.1:{p}" for p in ports.values()]})
    local.start("prometheus")
    stop = threading.Event()
    runner = threading.Thread(target=run_all, args=(connectors, False, stop), daemon=True)
    runner.start()
    produce(config, seconds, rate=300)
    time.sleep(3)  # the last batches written and scraped
    stop.set()
    runner.join(30)
    return local, served


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running Prometheus (default: start the scene described above)")
    parser.add_argument("--query", default=QUERY, help="PromQL to show (default: p95 propagation per connector)")
    parser.add_argument("--seconds", type=float, default=45.0, help="how long the scene produces records")
    parser.add_argument("--range", default="1m", help="graph range (default 1m)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "prometheus.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        local, served = (None, []) if args.url else scene(Path(work), args.seconds)
        try:
            url = args.url or local.servers["prometheus"].endpoints["prometheus"]
            page = f"{url}/graph?" + urllib.parse.urlencode(
                {"g0.expr": args.query, "g0.tab": "0", "g0.range_input": args.range, "g0.stacked": "0"})
            screenshot(page, args.out.resolve(), (1400, 900), wait_ms=15000)
        finally:
            for metrics in served:
                metrics.close()
            if local is not None:
                local.down()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

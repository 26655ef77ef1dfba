"""The history connector's documents/s on OpenSearch 2.19 vs noida-db's Elasticsearch API, in one run.

Both engines start side by side (with Apache Kafka); the same history records are produced once to a Kafka
topic, and each engine gets a fresh copy of the Elasticsearch connector (its own consumer group) that reads
the topic to its end: bulk `create` with the deterministic ids, templates installed first, then a refresh and
a count that must equal what was produced. Not a test: numbers depend on the machine and its load (printed).

    .venv/bin/python bench/search_throughput.py --records 20000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxsync.config import ElasticsearchEndpoint  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.io.clients import es_client  # noqa: E402
from ctxsync.io.connectors import elasticsearch_connector  # noqa: E402
from ctxsync.io.es_history import HISTORY_PREFIX  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.servers import LocalServers  # noqa: E402

ENGINES = {"noida": ("elasticsearch", "elasticsearch"), "opensearch": ("opensearch", "opensearch")}


def history_records(count: int, users: int) -> list[dict[str, Any]]:
    """Generated events made history records (what the job writes for an accepted event)."""
    records = []
    options = GeneratorOptions(events=count, users=users, seed=7, duplicate_rate=0.0, invalid_rate=0.0)
    for line in generate_lines(options):  # no duplicates, no invalid events: what the job accepts
        event = json.loads(line)
        user = event["contextDelta"]["userId"]
        event.update(aggregates=[f"behavioral:{user}"], applied=sorted(event["contextDelta"]["updates"]), stale=[],
                     violation=False, conflict=False)
        records.append(event)
    return records


def produce(config: dict[str, str], topic: str, records: list[dict[str, Any]]) -> None:
    p = producer(config)
    for record in records:
        p.produce(topic, key=record["contextDelta"]["userId"].encode(), value=json.dumps(record).encode())
        p.poll(0)
    if p.flush(120) != 0:
        raise RuntimeError("records not delivered")


def drain(config: dict[str, str], server: str, url: str, topics: tuple[str, str], dlq: str) -> dict[str, Any]:
    """One connector copy reading the history topic to its end into `server`'s engine."""
    engine = ENGINES[server][1]
    client = es_client(ElasticsearchEndpoint(hosts=url), engine)
    connector = elasticsearch_connector(config, client, topics, dlq, f"bench-{server}-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    stats = connector.run(until_caught_up=True)
    seconds = time.monotonic() - started
    client.indices.refresh(index=HISTORY_PREFIX + "*")
    stored = client.count(index=HISTORY_PREFIX + "*")["count"]
    return {"engine": server, "written": stats.written, "dead_lettered": stats.dead_lettered, "stored": stored,
            "seconds": seconds, "docs_per_s": stats.written / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--first", choices=tuple(ENGINES), default="noida",
                        help="which engine drains first (run both orders: the machine's load drifts)")
    args = parser.parse_args()
    records = history_records(args.records, args.users)
    with tempfile.TemporaryDirectory(prefix="ctxsync-bench-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        started = time.monotonic()
        servers.up(["kafka", "noida", "opensearch"])
        print(f"servers up in {time.monotonic() - started:.1f}s; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        try:
            config = {"bootstrap.servers": servers.endpoints()["kafka"]}
            topics, dlq = ("bench.history", "bench.violations"), "bench.dlq"
            ensure_topics(config, [TopicSpec(topics[0], 4), TopicSpec(topics[1], 4), TopicSpec(dlq, 1)])
            produce(config, topics[0], records)
            print(f"{len(records):,} history records on {topics[0]}")
            for server in sorted(ENGINES, key=lambda name: name != args.first):
                url = servers.endpoints()[ENGINES[server][0]]
                result = drain(config, server, url, topics, dlq)
                print(f"{server:<11} {result['written']:>8,} written  {result['stored']:>8,} stored  "
                      f"{result['dead_lettered']} dead-lettered  {result['seconds']:6.1f}s  "
                      f"{result['docs_per_s']:8,.0f} docs/s   (load {os.getloadavg()[0]:.1f})")
        finally:
            servers.down()


if __name__ == "__main__":
    main()

"""Snapshot create and restore times for N views on loopback servers (redis-server, Apache Kafka).

N synthetic views (4 categories per user, 3 attributes, 2 target models) are produced to a views topic and
applied to Redis by the real Redis connector; 1 % of them then get a newer version after the snapshot, so
the restore's replay has real work. Timed: `snapshot create` (from Redis), and `restore` = checksum +
decompress + write into an empty Redis, then the connector's replay of context.views from the snapshot's
offsets. Not a test: numbers depend on the machine and its load.

    flock /tmp/ctxsync-cpu.lock .venv/bin/python bench/snapshot.py --views 100000 1000000
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxsync.consistency import snapshot as snap  # noqa: E402
from ctxsync.io.connectors import REDIS_GROUP, redis_connector  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.servers import LocalServers  # noqa: E402

CATEGORIES = ("financial", "behavioral", "temporal", "general")


def view(n: int, version: int) -> dict:
    user = f"user-{n // len(CATEGORIES):08d}"
    category = CATEGORIES[n % len(CATEGORIES)]
    stamp = f"2026-11-24T10:{version % 60:02d}:00.000Z"
    attrs = {f"attr{a}": {"value": f"v{n}-{version}-{a}", "confidence": 0.9, "updatedAt": stamp,
                          "eventId": f"evt-{n}-{version}", "modelId": "risk-model"} for a in range(3)}
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": stamp, "attributes": attrs, "targetModels": ["churn-predictor", "recommendation-engine"]}


def produce(config: dict, topic: str, numbers: range, version: int) -> None:
    out = producer(config, **{"linger.ms": 20})
    for n in numbers:
        record = view(n, version)
        while True:
            try:
                out.produce(topic, key=record["key"].encode(), value=orjson.dumps(record))
                break
            except BufferError:
                out.poll(0.05)
    assert out.flush(120) == 0


def bench(servers: LocalServers, count: int, root: Path) -> None:
    import redis

    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    client = redis.Redis.from_url(servers.endpoints()["redis"])
    client.flushall()
    topic = f"bench.views.{count}"
    ensure_topics(config, [TopicSpec(topic, 4, (("cleanup.policy", "compact"),)), TopicSpec("bench.dlq", 1)])
    connector = lambda: redis_connector(config, client, "ctx", 10_000, topic, "bench.dlq", REDIS_GROUP)  # noqa: E731
    started = time.monotonic()
    produce(config, topic, range(count), 1)
    connector().run(until_caught_up=True)
    print(f"{count:,} views: produced and applied to Redis in {time.monotonic() - started:.1f} s "
          f"(Redis used_memory {client.info('memory')['used_memory'] / 1e6:.0f} MB)")

    manifest = snap.create_from_redis(client, "ctx", config, topic, REDIS_GROUP, root, f"bench-{count}")
    print(f"  snapshot create: {manifest.seconds:.2f} s, {manifest.bytes / 1e6:.1f} MB "
          f"({manifest.bytes / count:.0f} B/view)")
    produce(config, topic, range(0, count, 100), 2)  # 1 % newer after the snapshot
    connector().run(until_caught_up=True)
    never_lost = sorted(client.scan_iter(match="ctx:*:{*}", count=10_000, _type="hash"))
    sample = [client.hgetall(k) for k in never_lost[::max(1, count // 1000)]]

    client.flushall()
    started = time.monotonic()
    _, written, _ = snap.restore(client, "ctx", root, f"bench-{count}")
    loaded = time.monotonic() - started
    snap.rewind_connector(config, REDIS_GROUP, manifest)
    stats = connector().run(until_caught_up=True)
    total = time.monotonic() - started
    print(f"  restore: load {written:,} views {loaded:.2f} s ({written / loaded:,.0f} views/s), replay "
          f"{stats.consumed:,} newer records {stats.seconds:.2f} s, total {total:.2f} s")
    after = sorted(client.scan_iter(match="ctx:*:{*}", count=10_000, _type="hash"))
    again = [client.hgetall(k) for k in after[::max(1, count // 1000)]]
    assert after == never_lost and again == sample, "restored Redis differs from the never-lost one"
    print("  restored Redis equals the never-lost one (all keys, sampled values)")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, nargs="+", default=[100_000], help="view counts (default 100000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctxsync-bench-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        servers.up(["redis", "kafka"])
        try:
            for count in args.views:
                bench(servers, count, Path(tmp))
        finally:
            servers.down()


if __name__ == "__main__":
    main()

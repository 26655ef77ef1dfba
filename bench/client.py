"""Latency of the model client (ctxsync.client) on a loopback redis-server, next to plain redis-py
baselines measured in the same run. Not a test: numbers depend on the machine and its load.

    .venv/bin/python bench/client.py [--users 10000] [--reads 20000] [--changes 2000]

Views are written with the connector's own sink (RedisViewSink: CAS script + change stream), one per
category per user. Reads pick users uniformly at random; the cached client is measured after a warm-up
over a hot set of users (`--hot`), which it then reads from (its hit rate is printed). Subscription
latency is from just before the sink's write of a view to the feed's loop body receiving it (same
process, a consumer thread), at `--rate` changes per second.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from ctxsync.client import ContextClient, from_urls  # noqa: E402
from ctxsync.io.redis_views import RedisViewSink, ViewWrite, stream_key, view_key  # noqa: E402
from ctxsync.servers import LocalServers  # noqa: E402
from tests.helpers import SETTINGS  # noqa: E402

CATEGORIES = ("financial", "behavioral", "temporal")
MODEL = "churn-predictor"


def a_view(user: str, category: str, version: int) -> dict:
    stamp = "2026-11-17T10:00:00.000Z"
    attribute = {"value": f"v{version}", "confidence": 0.9, "updatedAt": stamp, "eventId": f"e{version}",
                 "modelId": "risk-model"}
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": stamp, "targetModels": [MODEL], "attributes": {f"{category}A": attribute,
                                                                        f"{category}B": attribute}}


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    """Microseconds per call."""
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def row(name: str, samples: list[float], extra: str = "") -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"| {name} | {q[49]:,.0f} | {q[98]:,.0f} | {len(samples):,} | {extra} |")


def subscription(client: ContextClient, sink: RedisViewSink, changes: int, rate: float) -> list[float]:
    """Write `changes` views at `rate`/s; microseconds from the write to the loop body, per change."""
    sent: dict[int, float] = {}
    got: list[float] = []
    feed = client.changes(group="bench", max_idle_s=2.0)

    def consume() -> None:
        for change in feed:
            got.append((time.perf_counter() - sent[change.version]) * 1e6)
            if len(got) == changes:
                feed.close()

    write_while_consuming(sink, "sub-user-feed", changes, rate, sent, consume)
    return got


def plain_xread(plain: redis.Redis, sink: RedisViewSink, prefix: str, changes: int, rate: float) -> list[float]:
    """The same writes read with a bare XREAD BLOCK (no group, no acknowledgement)."""
    stream = stream_key(prefix, MODEL)
    start_id = plain.xinfo_stream(stream)["last-generated-id"]
    sent: dict[int, float] = {}
    got: list[float] = []

    def consume() -> None:
        last = start_id
        while len(got) < changes:
            for _, entries in plain.xread({stream: last}, block=2000, count=100) or []:
                for entry_id, fields in entries:
                    got.append((time.perf_counter() - sent[int(fields[b"version"])]) * 1e6)
                    last = entry_id

    write_while_consuming(sink, "sub-user-xread", changes, rate, sent, consume)
    return got


def write_while_consuming(sink: RedisViewSink, user: str, changes: int, rate: float, sent: dict[int, float],
                          consume: Callable[[], None]) -> None:
    """Run `consume` in a thread while writing versions 1..changes of one view at `rate`/s, noting in `sent`
    when each version was written."""
    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    for version in range(1, changes + 1):
        sent[version] = time.perf_counter()
        sink.write([ViewWrite(a_view(user, "financial", version))])
        time.sleep(1 / rate)
    thread.join()


def cached_under_writes(cached: ContextClient, sink: RedisViewSink, hot: list[str], picks: list[str],
                        write_rate: float) -> tuple[list[float], float, int]:
    """Cached reads while a thread rewrites random hot views (new versions) at `write_rate` per second."""
    done = threading.Event()
    rng = random.Random(11)

    def writer() -> None:
        version = 2
        while not done.is_set():
            sink.write([ViewWrite(a_view(rng.choice(hot), "financial", version))])
            version += 1
            time.sleep(1 / write_rate)

    hits, misses, invalidations = cached.cache.hits, cached.cache.misses, cached.cache.invalidations
    thread = threading.Thread(target=writer)
    thread.start()
    samples = timed(len(picks), lambda i: cached.get(picks[i]))
    done.set()
    thread.join()
    got_hits, got_misses = cached.cache.hits - hits, cached.cache.misses - misses
    return samples, got_hits / max(1, got_hits + got_misses), cached.cache.invalidations - invalidations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--hot", type=int, default=1_000, help="users the cached client reads")
    parser.add_argument("--changes", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second for the subscription")
    parser.add_argument("--write-rate", type=float, default=200.0,
                        help="hot views rewritten per second while the cached client reads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctxsync-bench-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        servers.up(["redis"])
        try:
            bench(args, servers.endpoints()["redis"])
        finally:
            servers.down()


def bench(args: argparse.Namespace, url: str) -> None:
    prefix = "ctx"
    plain = redis.Redis.from_url(url)
    sink = RedisViewSink(redis.Redis.from_url(url), prefix)
    users = [f"user-{i:05d}" for i in range(args.users)]
    for i in range(0, len(users), 500):
        sink.write([ViewWrite(a_view(u, c, 1)) for u in users[i:i + 500] for c in CATEGORIES])
    rng = random.Random(7)
    picks = [rng.choice(users) for _ in range(args.reads)]
    hot = users[:args.hot]
    hot_picks = [rng.choice(hot) for _ in range(args.reads)]
    endpoints = from_urls(url, settings=SETTINGS, prefix=prefix)
    client = ContextClient(endpoints, MODEL)
    cached = ContextClient(endpoints, MODEL, cache=True)
    categories = len(client.categories)
    batches = [[rng.choice(users) for _ in range(100)] for _ in range(args.reads // 100)]

    def pipelined(keys: list[str]) -> list:
        pipe = plain.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()

    print(f"{args.users:,} users x {len(CATEGORIES)} views on loopback redis-server; get() reads "
          f"{categories} categories ({', '.join(client.categories)})\n")
    print("| what | p50 µs | p99 µs | calls | note |\n|---|---|---|---|---|")
    row("plain HGETALL, 1 key (redis-py)", timed(args.reads, lambda i: plain.hgetall(
        view_key(prefix, "financial", picks[i]))))
    row("get(user, ['financial']), no cache", timed(args.reads, lambda i: client.get(picks[i], ["financial"])))
    row(f"plain pipeline of {categories} HGETALL", timed(args.reads, lambda i: pipelined(
        [view_key(prefix, c, picks[i]) for c in client.categories])))
    row("get(user), no cache", timed(args.reads, lambda i: client.get(picks[i])))
    for user in hot:  # warm-up: every hot user once
        cached.get(user)
    hits, misses = cached.cache.hits, cached.cache.misses
    samples = timed(args.reads, lambda i: cached.get(hot_picks[i]))
    rate = (cached.cache.hits - hits) / max(1, cached.cache.hits - hits + cached.cache.misses - misses)
    row(f"get(user), client cache ({args.hot:,} hot users)", samples, f"hit rate {rate:.1%}")
    samples, rate, invalidated = cached_under_writes(cached, sink, hot, hot_picks, args.write_rate)
    row(f"get(user), client cache, hot views rewritten at {args.write_rate:,.0f}/s", samples,
        f"hit rate {rate:.1%}, {invalidated:,} invalidations")
    row("plain pipeline of 100 x {0} HGETALL".format(categories), timed(len(batches), lambda i: pipelined(
        [view_key(prefix, c, u) for u in batches[i] for c in client.categories])))
    row("get_many(100 users), no cache", timed(len(batches), lambda i: client.get_many(batches[i])))
    row("subscription: bare XREAD BLOCK", plain_xread(plain, sink, prefix, args.changes, args.rate),
        f"{args.rate:,.0f} changes/s")
    row("subscription: changes(group) loop body", subscription(client, sink, args.changes, args.rate),
        f"{args.rate:,.0f} changes/s, ack per change")
    client.close()
    cached.close()


if __name__ == "__main__":
    main()

"""How events travel in batches between the engine's Java side and Python (pure, no engine imports).

The engine groups events by *bucket* (a hash of userId, computed in Java before any Python call) and hands
Python one string per bucket and time window: the events' framed payloads in arrival order. Every event of
a user must land in the same bucket, because the user's state lives in the bucket's keyed state; the
Python side recomputes the bucket of the userId it parsed (`bucket_of`) and never applies an event that
arrived in another one.
"""
from __future__ import annotations

from dataclasses import dataclass
from hashlib import md5


@dataclass(frozen=True)
class Batching:
    """How events are batched: window length, bucket count (fixed for the life of a job's state: a user's
    state lives in its bucket) and the most events one Python emission covers."""

    window_ms: int = 20
    buckets: int = 4
    max_events: int = 2_000


def bucket_of(user_id: str, buckets: int) -> int:
    """The bucket of a userId; the same function as the engine's SQL expression (pipelines/flink/batches.py):
    the first 16 bits of MD5(UTF-8 of userId), modulo `buckets`."""
    return int(md5(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:4], 16) % buckets


def frame(payload: str, seq: int, part: int) -> str:
    """One framed item, `<length> <seq> <part> <payload>`: a length prefix, because payloads (Kafka records)
    may contain any character, newlines included. The engine builds the same form in SQL."""
    return f"{len(payload)} {seq} {part} {payload}"


def split_batch(batch: str) -> list[tuple[int, int, str]]:
    """(seq, part, payload) of each framed item of a batch, in order."""
    items: list[tuple[int, int, str]] = []
    pos, end = 0, len(batch)
    find = batch.index
    while pos < end:
        a = find(" ", pos)
        b = find(" ", a + 1)
        c = find(" ", b + 1)
        start = c + 1
        stop = start + int(batch[pos:a])
        items.append((int(batch[a + 1:b]), int(batch[b + 1:c]), batch[start:stop]))
        pos = stop
    return items

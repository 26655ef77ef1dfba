"""Erase one user from the sinks (`ctxsync erase`): Redis views and change-stream entries, Elasticsearch
history and violations, tombstones on the compacted views topic, the erase command on the input topic.

Each function returns counts for the receipt. The user is found under every name the sinks may hold:
the clear userId and, with privacy on, the token (history, violations and their documents use it).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ctxsync.io.redis_views import floor_key, stream_key, view_key
from ctxsync.io.search import as_backend


def erase_redis(client: Any, prefix: str, user_id: str, categories: Iterable[str]) -> tuple[int, int, int]:
    """(views deleted, change-stream entries deleted, change-feed bookkeeping entries deleted) of the user's
    aggregates in every category. The bookkeeping: each model group's acknowledged versions next to its
    stream (ctxsync/client/changes.py; a sorted set `<stream>:acked:<group>`, a hash `<stream>:seen:<group>`
    in older releases), one member per aggregate key it handled."""
    categories = sorted(set(categories))
    keys = {view_key(prefix, category, user_id) for category in categories}
    floors = [floor_key(key) for key in keys]  # they name the user too
    views = int(client.delete(*keys)) if keys else 0
    if floors:
        client.delete(*floors)
    entries = 0
    wanted = {k.encode() for k in keys}
    for stream in client.scan_iter(match=stream_key(prefix, "*"), count=1000, _type="stream"):
        ids = [entry_id for entry_id, fields in client.xrange(stream) if fields.get(b"key") in wanted]
        if ids:
            entries += int(client.xdel(stream, *ids))
    aggregates = [f"{category}:{user_id}" for category in categories]
    seen = 0
    for name in client.scan_iter(match=stream_key(prefix, "*"), count=1000, _type="zset"):  # <stream>:acked:<group>
        seen += int(client.zrem(name, *aggregates))
    for name in client.scan_iter(match=stream_key(prefix, "*"), count=1000, _type="hash"):  # <stream>:seen:<group>
        seen += int(client.hdel(name, *aggregates))
    return views, entries, seen


def erase_elasticsearch(client: Any, names: list[str], categories: Iterable[str], history_index: str,
                        violations_index: str) -> tuple[int, int]:
    """(history documents, violation documents) deleted: history by contextDelta.userId, violations by
    their aggregate keys, for each of the user's `names` (clear id, token)."""
    keys = [f"{category}:{name}" for category in categories for name in names]
    backend = as_backend(client)  # Elasticsearch or OpenSearch
    history = backend.delete_by_query(history_index, {"terms": {"contextDelta.userId": names}})
    violations = backend.delete_by_query(violations_index, {"terms": {"key": keys}})
    return history, violations


def send(producer: Any, records: list[tuple[str, bytes, bytes | None]], timeout_s: float = 30.0) -> list[Any]:
    """Produce (topic, key, value) records, None value = tombstone; the delivered messages, in order, or
    RuntimeError naming the first failure."""
    delivered: list[Any] = [None] * len(records)
    errors: list[str] = []

    def report(index: int):
        def done(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            delivered[index] = message
        return done

    for index, (topic, key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=report(index))
    if producer.flush(timeout_s) != 0 or errors:
        raise RuntimeError(errors[0] if errors else "not delivered in time")
    return delivered

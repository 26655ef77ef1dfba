"""The job's own Redis writer: each batch's views are applied in Redis as soon as the batch is processed.

Why in the job: a model waited for two more hops before (the views topic, then the Redis connector in its
own process), and with exactly-once delivery for the commit of the Kafka transaction at the next
checkpoint. A view is idempotent by version, so it needs no transaction: the batch's views go to Redis in
one pipelined round trip, before the batch's records reach the (transactional) Kafka sink. `context.views`
stays the compacted changelog for other consumers and for rebuilds (`ctxsync connect redis`).

What a reader of Redis may see: views of events whose Kafka outputs are not committed yet. After a crash
the job restores its last checkpoint and processes those events again; where the recomputation differs
(validation reads the wall clock), the write runs in "sync" mode (redis_views.CAS_SCRIPT): Redis holds
what the restored state computes, even when that is an older version or other content under the same
version. Redis mirrors the job's state; the views topic mirrors its committed state.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from ctxsync.config import RedisEndpoint
from ctxsync.io.clients import redis_client
from ctxsync.io.redis_views import RedisViewSink, SentBatch, ViewWrite

log = logging.getLogger(__name__)
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
RETRY_FOR_S = 300.0  # Redis unreachable longer than this: the batch fails and Flink restarts the job


@dataclass
class ViewChanges:
    """One batch's view changes in processing order: a view (JSON text, TTL, origin of the event that made
    it) or a tombstone (None) per aggregate key; only the last change of a key is written."""

    latest: dict[str, tuple[str | None, int | None, str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    acks: list[tuple[str, str, bytes]] = field(default_factory=list)  # (model id, ack nonce, outcome JSON)

    def view(self, key: str, text: str, ttl: int | None, origin: str) -> None:
        self.latest[key] = (text, ttl, origin)

    def tombstone(self, key: str, origin: str) -> None:
        self.latest[key] = (None, None, origin)
        self.deleted.add(key)

    def ack(self, model_id: str, nonce: str, outcome: dict) -> None:
        """The outcome of an event that asked for one (`"ack": "<nonce>"`), pushed after the batch's views."""
        self.acks.append((model_id, nonce, orjson.dumps(outcome)))

    def __bool__(self) -> bool:
        return bool(self.latest) or bool(self.acks)


@dataclass(frozen=True)
class Refused:
    """A view Redis would not take: its record, the event's origin, Redis' reason (short)."""

    view: str
    origin: str
    reason: str


class JobViewWriter:
    """Applies ViewChanges to Redis; opened in the operator's worker (the client is not picklable)."""

    def __init__(self, endpoint_json: str) -> None:
        self.endpoint_json = endpoint_json  # ctxsync.config.RedisEndpoint as JSON (password included)
        self.sink: RedisViewSink | None = None

    def open(self) -> None:
        endpoint = RedisEndpoint.model_validate(orjson.loads(self.endpoint_json))
        self.sink = RedisViewSink(redis_client(endpoint), endpoint.prefix, endpoint.stream_maxlen)

    def apply(self, changes: ViewChanges) -> list[Refused]:
        """Write the batch and wait for Redis (`send`, then `wait()`)."""
        return self.send(changes).wait()

    def send(self, changes: ViewChanges) -> "PendingViews":
        """Send the batch (deletes first: a user erased and back in one batch starts from a clean hash); the
        caller does other work, then `wait()`s for Redis before its batch ends."""
        assert self.sink is not None, "open() first"
        writes, origins = [], {}
        for text, ttl, origin in changes.latest.values():
            if text is not None:
                write = ViewWrite(orjson.loads(text), ttl, sync=True)
                writes.append(write)
                origins[id(write)] = (text, origin)
        return PendingViews(self.sink, writes, sorted(changes.deleted), changes.acks, origins)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.client.close()


def views_endpoint(profile: Any) -> str | None:
    """The profile's Redis as the JSON the job's view writer opens (password included: the job's operator
    carries it as the key store's endpoint is carried); None when the profile has no Redis (no views then)."""
    if profile.redis is None:
        return None
    endpoint = profile.redis.model_dump(mode="json")
    if profile.redis.password is not None:
        endpoint["password"] = profile.redis.password.get_secret_value()
    return orjson.dumps(endpoint).decode()


class PendingViews:
    """One batch's views on their way to Redis. `wait()` returns what Redis refused; while Redis is
    unreachable it sends the batch again with backoff, then raises (the job restarts from its checkpoint)."""

    def __init__(self, sink: RedisViewSink, writes: list[ViewWrite], deletes: list[str],
                 acks: list[tuple[str, str, bytes]], origins: dict[int, tuple[str, str]]) -> None:
        self.sink, self.writes, self.deletes, self.acks, self.origins = sink, writes, deletes, acks, origins
        self.sent: SentBatch | None = None
        try:
            self.sent = sink.send(writes, deletes, acks)
        except TRANSIENT:
            pass  # wait() sends it again

    def wait(self) -> list[Refused]:
        deadline, delay = time.monotonic() + RETRY_FOR_S, 0.1
        while True:
            try:
                if self.sent is None:
                    self.sent = self.sink.send(self.writes, self.deletes, self.acks)
                result = self.sent.result()
                break
            except TRANSIENT as exc:
                self.sent = None
                if time.monotonic() > deadline:
                    raise
                log.warning("redis: %s; sending the batch's %d views again in %.1fs", exc, len(self.writes), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        return [Refused(*self.origins[id(write)], reason) for write, reason in result.refused]

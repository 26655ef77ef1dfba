"""A model's change feed: its change stream (`ctx:changes:<model>`) read with a consumer group.

Every instance of a model reads with the same group, so each change goes to one of them. A change is
acknowledged (XACK) only when the loop body that received it has returned and the loop asks for the next
one; a change whose instance crashed stays pending and is claimed (XAUTOCLAIM) by another instance after
`claim_idle_ms`. Delivery is therefore at-least-once. Per aggregate, the stream holds versions in
increasing order (the connector's compare-and-set only appends a newer version), and one instance
receives them in stream order; a redelivered or claimed older entry is flagged `duplicate` when the
group already acknowledged that version or a newer one (a per-group high-water version per aggregate).

The high-water versions are a sorted set (aggregate key -> version) raised with ZADD GT, not a script: a
model's Redis user gets no scripting (ctxsync/io/redis_acl.py), so a model cannot run Lua on the server.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis

from ctxsync.client.model import Change, View
from ctxsync.io.redis_views import high_water_key


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ChangeFeed:
    """Iterate to receive changes; `close()` (or `max_idle_s`) ends the iteration."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, *, start: str = "$",
                 batch: int = 100, block_ms: int = 500, claim_idle_ms: int = 30_000,
                 max_idle_s: float | None = None) -> None:
        """`start`: where a new group begins ("$": changes from now on, "0": everything retained).
        `claim_idle_ms`: how long another instance's unacknowledged change waits before it is taken
        over. `max_idle_s`: end the iteration after this long without a change (None: never)."""
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_idle_s = max_idle_s
        self.seen_key = high_water_key(stream, group)
        self.delivered = 0
        self.acknowledged = 0
        self._closed = False
        self._claim_from = "0-0"
        try:
            client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: join it where it is
                raise

    def close(self) -> None:
        self._closed = True

    def __iter__(self) -> Iterator[Change]:
        idle_since = time.monotonic()
        next_claim = 0.0
        first = True
        while not self._closed:
            if first:  # a restarted instance (same consumer name) resumes what it had not acknowledged
                entries, redelivered, first = self._read("0"), True, False
            elif time.monotonic() >= next_claim:
                entries, redelivered = self._claim(), True
                # more may be waiting right behind a claimed batch; otherwise look again in a while
                next_claim = time.monotonic() + (0 if entries else self.claim_idle_ms / 2000)
            else:
                entries, redelivered = [], False
            if not entries:
                entries, redelivered = self._read(">"), False
            if not entries:
                if self.max_idle_s is not None and time.monotonic() - idle_since >= self.max_idle_s:
                    return
                continue
            idle_since = time.monotonic()
            for change in self._changes(entries, redelivered):
                self.delivered += 1
                yield change
                self.ack(change)

    def ack(self, change: Change) -> None:
        """Record the version as handled for the group, then acknowledge the entry (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.seen_key, {change.key: change.version}, gt=True)  # raise only
        pipe.xack(self.stream, self.group, change.entry_id)
        pipe.execute()
        self.acknowledged += 1

    def _read(self, start: str) -> list[tuple[Any, Any]]:
        block = None if start == "0" else self.block_ms
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.batch,
                                       block=block)
        return reply[0][1] if reply else []

    def _claim(self) -> list[tuple[Any, Any]]:
        """Take over entries idle for claim_idle_ms; the scan goes on from where the last one stopped, so
        a long pending list is covered bit by bit instead of its head being rescanned every time."""
        reply = self.client.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms,
                                       start_id=self._claim_from, count=self.batch)
        if not reply:
            return []
        self._claim_from = _text(reply[0])
        return reply[1]

    def _changes(self, entries: list[tuple[Any, Any]], redelivered: bool) -> list[Change]:
        live = [(entry_id, fields) for entry_id, fields in entries if fields]
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # trimmed from the stream before anyone handled them: nothing left to deliver
            self.client.xack(self.stream, self.group, *gone)
        if not live:
            return []
        decoded = [(_text(entry_id), {_text(k): v for k, v in fields.items()}) for entry_id, fields in live]
        views = [View.from_record(orjson.loads(fields["view"])) for _, fields in decoded]
        seen = self.client.zmscore(self.seen_key, [v.key for v in views]) if redelivered else [None] * len(views)
        return [Change(entry_id, view.key, view.version, view,
                       duplicate=high is not None and view.version <= int(high), redelivered=redelivered)
                for (entry_id, _), view, high in zip(decoded, views, seen)]

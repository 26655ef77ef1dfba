"""Read your own writes: wait for the job's answer to one published event.

An event published with `"ack": "<nonce>"` makes the job push its outcome to `<prefix>:ack:<model>:<nonce>`
(ctxsync/io/redis_views.ack_key) once the event's views are applied in Redis, in the same round trip. The
client blocks on that list (BLPOP), so the answer arrives as soon as it is written, with no polling.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ctxsync.errors import RuntimeFailure
from ctxsync.io.redis_views import ack_key


BLOCK_SLICE_S = 5.0


class OutcomeTimeout(RuntimeFailure):
    """No outcome in time: the job is behind or stopped, or the event was dead-lettered after all."""


@dataclass(frozen=True)
class Outcome:
    """What the job did with an event: `outcome` is applied, stale, rejected or duplicate; `versions` are
    the new versions of the views it changed (readable now); `waited_ms` from publish to answer."""

    event_id: str
    outcome: str
    applied: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    conflict: bool = False
    violation: bool = False
    versions: dict[str, int] = field(default_factory=dict)
    waited_ms: float = 0.0

    @classmethod
    def from_record(cls, record: dict[str, Any], waited_ms: float) -> "Outcome":
        return cls(record["eventId"], record["outcome"], tuple(record.get("applied", ())),
                   tuple(record.get("stale", ())), bool(record.get("conflict")), bool(record.get("violation")),
                   dict(record.get("versions", {})), waited_ms)


def new_nonce() -> str:
    """A fresh ack nonce for one publish: its answer cannot be another publish's, even of the same eventId."""
    return uuid.uuid4().hex


def wait_outcome(redis: Any, prefix: str, model_id: str, event_id: str, nonce: str, timeout_s: float,
                 started: float | None = None) -> Outcome:
    """Block until the job's outcome for the event published with this nonce arrives, or raise OutcomeTimeout."""
    started = time.perf_counter() if started is None else started
    deadline = time.monotonic() + timeout_s
    key, found = ack_key(prefix, model_id, nonce), None
    while found is None and (left := deadline - time.monotonic()) > 0:
        # in slices shorter than the connection's socket timeout (10 s, ctxsync.io.clients.redis_client)
        found = redis.blpop([key], timeout=min(left, BLOCK_SLICE_S))
    if found is None:
        raise OutcomeTimeout(f"no outcome for event {event_id} within {timeout_s:g} s",
                             f"the job may be behind or stopped, or it dead-lettered the event: "
                             f"`ctxsync trace {event_id}` shows where it went")
    return Outcome.from_record(orjson.loads(found[1]), (time.perf_counter() - started) * 1000)

"""Publishing context events from a model: built to the contract, checked by the job's own rules
(transforms.ingest: validation and the optional expectations suite) before anything is sent, and
keyed by userId through the same murmur2 producer as `ctxsync replay`, so the event lands in its
user's partition and keeps that user's order.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from ctxsync.client.clock import PROCESS_CLOCK
from ctxsync.client.endpoints import Endpoints
from ctxsync.client.model import Scalar
from ctxsync.errors import RuntimeFailure
from ctxsync.io.kafka_io import TopicSpec, check_reachable, ensure_topics, producer
from transforms.ingest import DEAD_LETTER_KEY, ingest
from transforms.records import untag
from transforms.settings import SyncSettings
from transforms.timestamps import format_iso_ms

_ABSENT: Any = object()


class Update(NamedTuple):
    """One attribute change; `previous` (when given) is a precondition the job checks (a conflict if
    the attribute's current value differs)."""

    value: Scalar
    confidence: float = 1.0
    previous: Scalar = _ABSENT


class InvalidEvent(ValueError):
    """The event breaks a contract rule; `reason` is the dead-letter code the job would have used."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Published:
    event_id: str
    expected_version: int | None
    partition: int
    offset: int


def _update_body(update: Any) -> dict[str, Any]:
    if not isinstance(update, Update):
        update = Update(update)
    body: dict[str, Any] = {"current": update.value, "confidence": update.confidence}
    if update.previous is not _ABSENT:
        body["previous"] = update.previous
    return body


def build_event(model_id: str, instance_id: str, user_id: str, updates: Mapping[str, Any], *,
                expected_version: int | None = None, targets: Iterable[str] | None = None,
                ttl: int | None = None, priority: str | None = None, event_type: str = "context.updated",
                session_id: str | None = None, event_id: str | None = None,
                now_ms: int | None = None) -> dict[str, Any]:
    """A context event (contract v1 section 1), not yet validated; stamped by the process's clock unless
    `now_ms` is given (a random eventId then, unless `event_id` is)."""
    if now_ms is None:
        now_ms, event_id = PROCESS_CLOCK.stamp(event_id)
    delta: dict[str, Any] = {"userId": user_id,
                             "updates": {name: _update_body(u) for name, u in updates.items()}}
    if session_id is not None:
        delta["sessionId"] = session_id
    if expected_version is not None:
        delta["expectedVersion"] = expected_version
    event: dict[str, Any] = {
        "eventId": event_id or uuid.uuid4().hex,
        "timestamp": format_iso_ms(now_ms),
        "eventType": event_type,
        "source": {"modelId": model_id, "instanceId": instance_id},
        "contextDelta": delta,
    }
    rules = {k: v for k, v in (("targetModels", list(targets) if targets is not None else None),
                               ("priority", priority), ("ttl", ttl)) if v is not None}
    if rules:
        event["propagationRules"] = rules
    return event


def check_event(raw: bytes, settings: SyncSettings, now_ms: int | None = None) -> None:
    """Raise InvalidEvent when the job would dead-letter this payload (the same ingest step)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    key, result = ingest(raw, 0, "client", now, settings)
    if key == DEAD_LETTER_KEY:
        record = orjson.loads(untag(result)[3])
        raise InvalidEvent(record["reason"], record["detail"])


class Publisher:
    """A Kafka producer for one client; `send` returns when the broker has the event."""

    def __init__(self, kafka: dict[str, Any], endpoints: Endpoints, settings: SyncSettings,
                 timeout_s: float = 30.0) -> None:
        check_reachable(kafka)
        if endpoints.create_topics:
            ensure_topics(kafka, [TopicSpec(endpoints.events_topic, endpoints.partitions)])
        self.topic = endpoints.events_topic
        self.settings = settings
        self.timeout_s = timeout_s
        self.producer = producer(kafka, **{"linger.ms": 0})  # one event at a time: send it now

    def send(self, event: dict[str, Any]) -> Published:
        raw = orjson.dumps(event)
        check_event(raw, self.settings)
        outcome: list[Any] = []
        self.producer.produce(self.topic, key=event["contextDelta"]["userId"].encode(), value=raw,
                              on_delivery=lambda err, msg: outcome.append((err, msg)))
        self.producer.flush(self.timeout_s)
        if not outcome:
            raise RuntimeFailure(f"event {event['eventId']} not delivered to {self.topic} in {self.timeout_s}s",
                                 "is Kafka reachable?")
        err, msg = outcome[0]
        if err is not None:
            raise RuntimeFailure(f"event {event['eventId']} not delivered to {self.topic}: {err}")
        return Published(event["eventId"], event["contextDelta"].get("expectedVersion"),
                         msg.partition(), msg.offset())

    def close(self) -> None:
        self.producer.flush(self.timeout_s)

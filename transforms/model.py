"""The values that flow between operators: a validated event and a dead letter.

Both are NamedTuples so they pickle small and fast across an engine's shuffle.
"""
from __future__ import annotations

import marshal
from typing import Any, NamedTuple


class Update(NamedTuple):
    """One attribute update of an event."""

    attribute: str
    current: Any
    confidence: float
    has_previous: bool
    previous: Any


class SubEvent(NamedTuple):
    """The part of an event that touches one category (one context aggregate)."""

    category: str
    updates: tuple[Update, ...]


class Event(NamedTuple):
    """A valid context event, with the fields the operators need pulled out of `doc`.

    `seq` is the position in the source (line number, or offset) and orders outputs deterministically;
    `doc` is the event as received (unknown fields kept) with its timestamp normalized, for history.
    """

    seq: int
    origin: str
    event_id: str
    ts: int
    user_id: str
    model_id: str
    expected_version: int | None
    sub_events: tuple[SubEvent, ...]
    targets: tuple[str, ...]
    ttl: int | None
    doc: dict[str, Any]


class DeadLetter(NamedTuple):
    """An input that could not be accepted, with the reason and the original payload."""

    seq: int
    origin: str
    reason: str
    detail: str
    stage: str
    raw: str
    raw_encoding: str  # "utf-8" or "base64"


def event_to_wire(event: Event) -> bytes:
    """A compact byte form of an Event for an engine's shuffle: marshal of plain tuples is about twice
    as fast as pickling the NamedTuples (no class lookups). Read back with `event_from_wire`."""
    return marshal.dumps((
        event.seq, event.origin, event.event_id, event.ts, event.user_id, event.model_id,
        event.expected_version,
        tuple((s.category, tuple(tuple(u) for u in s.updates)) for s in event.sub_events),
        event.targets, event.ttl, event.doc,
    ))


def event_from_wire(data: bytes) -> Event:
    fields = marshal.loads(data)
    sub_events = tuple(SubEvent(c, tuple(Update(*u) for u in updates)) for c, updates in fields[7])
    return Event(*fields[:7], sub_events, *fields[8:])

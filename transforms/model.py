"""The values that flow between operators: a validated event and a dead letter.

Event and DeadLetter are NamedTuples (one per input, they pickle small and fast across a shuffle). The
parts of an event, which are many per event, are plain tuples with the index names below:

    sub-event: (category, updates)
    update:    (attribute, current, confidence, has_previous, previous)
"""
from __future__ import annotations

import marshal
from typing import Any, NamedTuple

Update = tuple[str, Any, float, bool, Any]
U_ATTRIBUTE, U_CURRENT, U_CONFIDENCE, U_HAS_PREVIOUS, U_PREVIOUS = range(5)

SubEvent = tuple[str, tuple[Update, ...]]  # the part of an event that touches one category (one aggregate)
S_CATEGORY, S_UPDATES = range(2)


class Event(NamedTuple):
    """A valid context event, with the fields the operators need pulled out of `doc`.

    `seq` is the position in the source (line number, or offset) and orders outputs deterministically;
    `ts` is the event time in epoch ms and `stamp` the same instant as output text (ISO UTC with ms);
    `doc` is the event as received (unknown fields kept) with its timestamp normalized, for history.
    """

    seq: int
    origin: str
    event_id: str
    ts: int
    stamp: str
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
    """A compact byte form of an Event for an engine's shuffle (marshal of a plain tuple: no class
    lookups, about twice as fast as pickle). Read back with `event_from_wire`."""
    return marshal.dumps(tuple(event))


def event_from_wire(data: bytes) -> Event:
    return Event._make(marshal.loads(data))

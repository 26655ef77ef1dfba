"""The values that flow between operators: a validated event and a dead letter.

Both are NamedTuples so they pickle small and fast across an engine's shuffle.
"""
from __future__ import annotations

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

"""Output records of contract v1 section 5, as plain dicts, plus the tagged line form engines emit.

Engines move outputs as one tagged text line each: `<kind letter><seq>\t<aux>\t<json>`. The letter routes
the record to its sink; `seq` (source position) lets file outputs be ordered identically at any
parallelism; `aux` carries what a sink needs without parsing the JSON (a view's key, a history record's
stale-update count).
"""
from __future__ import annotations

from typing import Any

from transforms.aggregate import (
    A_CONFIDENCE, A_EVENT_ID, A_MODEL_ID, A_STAMP, A_VALUE, ATTRS, TARGETS, UPDATED_STAMP, VERSION, Aggregate,
)
from transforms.json_values import dumps_compact
from transforms.model import DeadLetter, Event
from transforms.timestamps import format_iso_ms

HISTORY, VIEW, ORDERING, CONFLICT, DEAD_LETTER, DUPLICATE = "H", "V", "O", "C", "D", "U"
TOMBSTONE = "T"  # the end of an aggregate's view: a null record on the views topic, a delete in Redis


def aggregate_key(category: str, user_id: str) -> str:
    return f"{category}:{user_id}"


def view_record(category: str, user_id: str, agg: Aggregate) -> dict[str, Any]:
    """The consistent view of one aggregate; tombstoned attributes are left out (attrs are kept sorted)."""
    return {
        "key": aggregate_key(category, user_id),
        "category": category,
        "userId": user_id,
        "version": agg[VERSION],
        "updatedAt": agg[UPDATED_STAMP],
        "attributes": {
            name: {"value": a[A_VALUE], "confidence": a[A_CONFIDENCE], "updatedAt": a[A_STAMP],
                   "eventId": a[A_EVENT_ID], "modelId": a[A_MODEL_ID]}
            for name, a in agg[ATTRS].items()
            if a[A_VALUE] is not None
        },
        "targetModels": list(agg[TARGETS]),
    }


def tombstone_line(seq: int, key: str) -> str:
    """The end of an aggregate's view (its user was erased, or it starts a new life after a state TTL)."""
    return tagged(TOMBSTONE, seq, {"key": key})


def ordering_violation(key: str, event: Event, lag_ms: int) -> dict[str, Any]:
    return {
        "kind": "ordering", "key": key, "eventId": event.event_id,
        "timestamp": event.stamp, "lagMs": lag_ms, "maxTimestamp": format_iso_ms(event.ts + lag_ms),
        "modelId": event.model_id,
    }


def conflict_violation(key: str, event: Event, found: dict[str, Any], policy: str) -> dict[str, Any]:
    record = {
        "kind": "conflict", "key": key, "eventId": event.event_id,
        "timestamp": event.stamp, "policy": policy, "modelId": event.model_id,
    }
    record.update(found)
    return record


def history_record(
    event: Event, keys: list[str], applied: list[str], stale: list[str], violation: bool, conflict: bool
) -> dict[str, Any]:
    """The event as received (timestamp normalized) plus what happened to it."""
    record = dict(event.doc)
    record["aggregates"] = keys
    record["applied"] = sorted(applied)
    record["stale"] = sorted(stale)
    record["violation"] = violation
    record["conflict"] = conflict
    return record


def dead_letter_record(dl: DeadLetter) -> dict[str, Any]:
    return {
        "reason": dl.reason, "detail": dl.detail, "stage": dl.stage, "raw": dl.raw,
        "rawEncoding": dl.raw_encoding, "origin": dl.origin,
    }


def duplicate_record(event: Event) -> dict[str, Any]:
    return {"eventId": event.event_id, "userId": event.user_id, "origin": event.origin}


def tagged(kind: str, seq: int, record: dict[str, Any], aux: str = "") -> str:
    return f"{kind}{seq}\t{aux}\t{dumps_compact(record)}"


def untag(line: str) -> tuple[str, int, str, str]:
    """(kind letter, seq, aux, json text) of a tagged line."""
    head, aux, text = line.split("\t", 2)
    return head[0], int(head[1:]), aux, text

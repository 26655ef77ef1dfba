"""Deduplication by eventId within a retention window of event time (contract v1 section 3.2).

State is per user (the physical partition key): `{"seen": {eventId: ts}, "clock": max ts, "limit": n}`.
The retention clock is the user's largest event time seen, so the result does not depend on
watermarks, parallelism or the engine: an eventId is remembered while `clock - ts <= retention`.
"""
from __future__ import annotations

from typing import Any

DedupState = dict[str, Any]
_MIN_PURGE = 64


def new_dedup_state() -> DedupState:
    return {"seen": {}, "clock": None, "limit": _MIN_PURGE}


def dedup_step(state: DedupState, event_id: str, ts: int, retention_ms: int) -> tuple[DedupState, bool]:
    """Return (state, is_duplicate); a duplicate leaves the state unchanged."""
    clock = state["clock"]
    clock = ts if clock is None or ts > clock else clock
    horizon = clock - retention_ms
    seen: dict[str, int] = state["seen"]
    first = seen.get(event_id)
    if first is not None and first >= horizon:
        return state, True
    state["clock"] = clock
    seen[event_id] = ts
    if len(seen) > state["limit"]:
        # Forgetting expired ids only bounds memory: the horizon check above already ignores them.
        state["seen"] = seen = {k: v for k, v in seen.items() if v >= horizon}
        state["limit"] = max(_MIN_PURGE, 2 * len(seen))
    return state, False

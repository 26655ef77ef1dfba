"""One context aggregate (`<category>:<userId>`): ordering, conflicts, apply, view (contract v1 section 4).

Aggregate state is a small list so it serializes cheaply:
`[version, maxTimestamp, updatedAt, targetModels(sorted list), {attr: [value, confidence, updatedAt, eventId, modelId]}]`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from transforms.json_values import json_equal
from transforms.model import Event, SubEvent

Aggregate = list[Any]
VERSION, MAX_TS, UPDATED_AT, TARGETS, ATTRS = range(5)
A_VALUE, A_CONFIDENCE, A_UPDATED_AT, A_EVENT_ID, A_MODEL_ID = range(5)


class Outcome(NamedTuple):
    """What one sub-event did to its aggregate."""

    lag_ms: int | None  # set when the sub-event is an ordering violation
    max_ts: int | None  # the aggregate's maxTimestamp before this sub-event
    conflict: dict[str, Any] | None  # the mismatched expectation, when there is a conflict
    applied: list[str]
    stale: list[str]


def new_aggregate() -> Aggregate:
    return [0, None, None, [], {}]


def _conflict(agg: Aggregate, sub: SubEvent, expected_version: int | None) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    if expected_version is not None and expected_version != agg[VERSION]:
        found["expectedVersion"] = expected_version
        found["actualVersion"] = agg[VERSION]
    mismatches = []
    attrs = agg[ATTRS]
    for update in sub.updates:
        if update.has_previous:
            stored = attrs.get(update.attribute)
            actual = None if stored is None else stored[A_VALUE]
            if not json_equal(update.previous, actual):
                mismatches.append(
                    {"attribute": update.attribute, "expected": update.previous, "actual": actual}
                )
    if mismatches:
        found["mismatches"] = mismatches
    return found or None


def aggregate_step(
    agg: Aggregate, sub: SubEvent, event: Event, policy: str
) -> tuple[Aggregate, Outcome]:
    """Apply one sub-event in arrival order; the aggregate is updated in place and returned."""
    max_ts = agg[MAX_TS]
    lag = max_ts - event.ts if max_ts is not None and event.ts < max_ts else None
    if max_ts is None or event.ts > max_ts:
        agg[MAX_TS] = event.ts
    conflict = _conflict(agg, sub, event.expected_version)
    applied: list[str] = []
    stale: list[str] = []
    if conflict is None or policy != "reject":
        attrs = agg[ATTRS]
        ts, event_id = event.ts, event.event_id
        for update in sub.updates:
            stored = attrs.get(update.attribute)
            if stored is None or (ts, event_id) > (stored[A_UPDATED_AT], stored[A_EVENT_ID]):
                attrs[update.attribute] = [
                    update.current, update.confidence, ts, event_id, event.model_id
                ]
                applied.append(update.attribute)
            else:
                stale.append(update.attribute)
        if applied:
            agg[VERSION] += 1
            if agg[UPDATED_AT] is None or ts > agg[UPDATED_AT]:
                agg[UPDATED_AT] = ts
            if event.targets:
                agg[TARGETS] = sorted(set(agg[TARGETS]).union(event.targets))
    return agg, Outcome(lag, max_ts, conflict, applied, stale)

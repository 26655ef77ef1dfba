"""One context aggregate (`<category>:<userId>`): ordering, conflicts, apply (contract v1 section 4).

Aggregate state is a small list so it serializes cheaply:
`[version, maxTimestamp, updatedAt, targetModels (sorted list), {attr: entry}, updatedAt as text]`,
an entry being `(value, confidence, updatedAt, eventId, modelId, updatedAt as text)`. Times are epoch ms
(compared and subtracted); their text form is kept next to them so a view never formats a timestamp.
The attribute dict is kept sorted by name, the order of the view (re-sorted only when a name is new).
Entries are tuples of atoms: the garbage collector stops tracking them, which matters with many users.
"""
from __future__ import annotations

from bisect import insort
from typing import Any

from transforms.json_values import json_equal
from transforms.model import Event, Update

Aggregate = list[Any]
VERSION, MAX_TS, UPDATED_AT, TARGETS, ATTRS, UPDATED_STAMP = range(6)
A_VALUE, A_CONFIDENCE, A_UPDATED_AT, A_EVENT_ID, A_MODEL_ID, A_STAMP = range(6)

Outcome = tuple[int | None, dict[str, Any] | None, bool]
"""What one sub-event did: (lagMs if it is an ordering violation, the mismatched expectation if it is a
conflict, whether at least one update was applied)."""


def new_aggregate() -> Aggregate:
    return [0, None, None, [], {}, None]


def _conflict(agg: Aggregate, updates: tuple[Update, ...], expected_version: int | None) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    if expected_version is not None and expected_version != agg[VERSION]:
        found = {"expectedVersion": expected_version, "actualVersion": agg[VERSION]}
    mismatches = None
    for attribute, _, _, has_previous, previous in updates:
        if has_previous:
            stored = agg[ATTRS].get(attribute)
            actual = None if stored is None else stored[A_VALUE]
            if not json_equal(previous, actual):
                mismatches = mismatches or []
                mismatches.append({"attribute": attribute, "expected": previous, "actual": actual})
    if mismatches:
        found = found or {}
        found["mismatches"] = mismatches
    return found


def aggregate_step(
    agg: Aggregate, updates: tuple[Update, ...], event: Event, policy: str, applied: list[str], stale: list[str]
) -> Outcome:
    """Apply one sub-event's updates in arrival order; `agg` is updated in place.

    The names of applied and stale updates are appended to `applied` and `stale` (the event's lists:
    history reports them over all of its sub-events).
    """
    ts = event.ts
    max_ts = agg[MAX_TS]
    lag = None
    if max_ts is None or ts > max_ts:
        agg[MAX_TS] = ts
    elif ts < max_ts:
        lag = max_ts - ts
    conflict = _conflict(agg, updates, event.expected_version)
    if conflict is not None and policy == "reject":
        return lag, conflict, False
    attrs = agg[ATTRS]
    event_id = event.event_id
    changed = added = False
    for attribute, current, confidence, _, _ in updates:
        stored = attrs.get(attribute)
        if stored is None:
            added = True
        elif not (ts > stored[A_UPDATED_AT] or (ts == stored[A_UPDATED_AT] and event_id > stored[A_EVENT_ID])):
            stale.append(attribute)
            continue
        attrs[attribute] = (current, confidence, ts, event_id, event.model_id, event.stamp)
        applied.append(attribute)
        changed = True
    if changed:
        agg[VERSION] += 1
        if agg[UPDATED_AT] is None or ts > agg[UPDATED_AT]:
            agg[UPDATED_AT] = ts
            agg[UPDATED_STAMP] = event.stamp
        if added:
            agg[ATTRS] = dict(sorted(attrs.items()))
        targets = agg[TARGETS]
        for target in event.targets:
            if target not in targets:
                insort(targets, target)
    return lag, conflict, changed

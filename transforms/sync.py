"""The keyed step of context-sync: everything that happens to one valid event of one user.

`sync_step(state, event, settings) -> (state, outputs)` composes dedup, category split, the
per-aggregate step and the record builders. Engines key by userId, keep `state` (one serializable
value per user: one state read and one write per event) and route the tagged output lines.

With `settings.state_ttl_ms` (transforms/state_ttl.py) a user idle longer than the TTL starts afresh, and
each aggregate's first view (version 1) follows a tombstone of its key: the sinks may still hold a view of
an earlier life of the aggregate, with a higher version, that the new one must replace.
"""
from __future__ import annotations

from typing import Any

from transforms.aggregate import VERSION, aggregate_step, new_aggregate
from transforms.dedup import dedup_step, new_dedup_state
from transforms.json_values import dumps_compact
from transforms.model import Event
from transforms.records import (
    CONFLICT, DUPLICATE, HISTORY, ORDERING, VIEW, aggregate_key, conflict_violation, duplicate_record,
    history_record, ordering_violation, tagged, tombstone_line, view_record,
)
from transforms.settings import SyncSettings
from transforms.state_ttl import expired

UserState = dict[str, Any]


def new_user_state() -> UserState:
    return {"dedup": new_dedup_state(), "aggs": {}}


def sync_step(state: UserState | None, event: Event, settings: SyncSettings) -> tuple[UserState, list[str]]:
    """Process one valid event of this state's user, in arrival order; return tagged output lines."""
    ttl_ms = settings.state_ttl_ms
    if state is None or (ttl_ms is not None and expired(state, event.ts, ttl_ms)):
        state = new_user_state()
    _, duplicate = dedup_step(state["dedup"], event.event_id, event.ts, settings.dedup_retention_ms)
    seq = event.seq
    if duplicate:
        return state, [tagged(DUPLICATE, seq, duplicate_record(event))]
    outputs: list[str] = []
    views: list[str] = []
    keys: list[str] = []
    applied: list[str] = []
    stale: list[str] = []
    violation = conflict = False
    policy = settings.conflict_policy
    aggs = state["aggs"]
    user_id = event.user_id
    for category, updates in event.sub_events:
        key = aggregate_key(category, user_id)
        keys.append(key)
        agg = aggs.get(category)
        if agg is None:
            agg = aggs[category] = new_aggregate()
        lag_ms, found, changed = aggregate_step(agg, updates, event, policy, applied, stale)
        if lag_ms is not None:
            violation = True
            outputs.append(tagged(ORDERING, seq, ordering_violation(key, event, lag_ms)))
        if found is not None:
            conflict = True
            outputs.append(tagged(CONFLICT, seq, conflict_violation(key, event, found, policy)))
        if changed:
            if ttl_ms is not None and agg[VERSION] == 1:
                views.append(tombstone_line(seq, key))
            views.append(tagged(VIEW, seq, view_record(category, user_id, agg), dumps_compact(key)))
    outputs.extend(views)
    history = history_record(event, keys, applied, stale, violation, conflict)
    outputs.append(tagged(HISTORY, seq, history, str(len(stale))))
    return state, outputs

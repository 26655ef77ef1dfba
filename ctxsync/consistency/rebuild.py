"""The views the history says there should be, rebuilt with the job's own per-aggregate step.

A history record is the accepted event plus the names of the attributes it applied. An aggregate's view
depends only on the *set* of applied updates, not on their order: each applied update was newer, by
(timestamp, eventId), than what the attribute held, so the stored value is the newest applied one; the
version counts the sub-events that applied something; updatedAt is the newest applied time; targetModels is
the union of their targets. So records may be read in any order (the history topic is not keyed by user):
per user they are sorted by (timestamp, eventId) and only their applied updates are fed to
`transforms.aggregate.aggregate_step` (under last-writer-wins, which then applies each one), and the view
is built by `transforms.records.view_record`, exactly as the job builds it.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from transforms.aggregate import VERSION, Aggregate, aggregate_step, new_aggregate
from transforms.model import Event
from transforms.records import view_record
from transforms.settings import SyncSettings
from transforms.validate import parse_event


@dataclass
class Rebuilt:
    """Expected views by aggregate key, and the history records that could not be read as events."""

    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    unreadable: list[str] = field(default_factory=list)  # origins of history records that are not events


def rebuild_views(records: Iterable[tuple[str, bytes]], settings: SyncSettings, user: str | None = None) -> Rebuilt:
    """Views from (origin, history record bytes) pairs, in any order; only `user`'s if given."""
    out = Rebuilt()
    by_user: dict[str, list[Event]] = defaultdict(list)
    now_ms = int(time.time() * 1000)  # accepted events were never in the future: they pass the skew check
    needle = user.encode() if user is not None else None
    settings = replace(settings, max_event_bytes=2**62)  # a record is its event plus a few fields: never too large
    for n, (origin, raw) in enumerate(records):
        out.records += 1
        if needle is not None and needle not in raw:  # cheap pre-filter before parsing
            continue
        event = parse_event(raw, n, origin, now_ms, settings)
        if not isinstance(event, Event) or not isinstance(event.doc.get("applied"), list):
            out.unreadable.append(origin)
            continue
        if user is None or event.user_id == user:
            by_user[event.user_id].append(event)
    for user_id in sorted(by_user):
        for category, agg in _replay(by_user[user_id], settings).items():
            view = view_record(category, user_id, agg)
            out.views[view["key"]] = view
    return out


def _replay(events: list[Event], settings: SyncSettings) -> dict[str, Aggregate]:
    aggs: dict[str, Aggregate] = {}
    events.sort(key=lambda e: (e.ts, e.event_id))
    for event in events:
        applied = set(event.doc["applied"])
        for category, updates in event.sub_events:
            chosen = tuple(u for u in updates if u[0] in applied)
            if chosen:
                agg = aggs.get(category)
                if agg is None:
                    agg = aggs[category] = new_aggregate()
                aggregate_step(agg, chosen, event, "last-writer-wins", [], [])
    return {c: a for c, a in aggs.items() if a[VERSION] >= 1}

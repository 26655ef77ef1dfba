"""The views the history says there should be, rebuilt with the job's own per-aggregate step.

A history record is the accepted event plus the names of the attributes it applied (and of those that were
stale). An aggregate's view depends only on the *set* of applied updates, not on their order: each applied
update was newer, by (timestamp, eventId), than what the attribute held, so the stored value is the newest
applied one; the version counts the sub-events that applied something; updatedAt is the newest applied time;
targetModels is the union of their targets. So records may be read in any order (the history topic is not
keyed by user): per user they are sorted by (timestamp, eventId) and only their chosen updates are fed to
`transforms.aggregate.aggregate_step` (under last-writer-wins, which then applies each one), and the view
is built by `transforms.records.view_record`, exactly as the job builds it.

Which updates are fed decides the question answered:
- APPLIED: what the job actually holds (verify; and, cut at the records' write time, what it held then);
- EFFECTIVE (applied or stale, i.e. all but those a `reject` policy refused): the event-time view, what the
  job would hold had the accepted events arrived in (timestamp, eventId) order; a late event then counts at
  its own time (point-in-time questions).
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from transforms.aggregate import VERSION, Aggregate, aggregate_step, new_aggregate
from transforms.model import Event
from transforms.records import view_record
from transforms.settings import SyncSettings
from transforms.validate import parse_event

APPLIED, EFFECTIVE = ("applied",), ("applied", "stale")


@dataclass
class Rebuilt:
    """Expected views by aggregate key, and the history records that could not be read as events."""

    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    unreadable: list[str] = field(default_factory=list)  # origins of history records that are not events


def parse_history(records: Iterable[Sequence[Any]], settings: SyncSettings, user: str | None = None,
                  keep: Callable[[Sequence[Any], Event], bool] | None = None) -> tuple[dict[str, list[Event]], Rebuilt]:
    """Events by user from (origin, raw, ...) history records; only `user`'s, and those `keep` accepts."""
    out = Rebuilt()
    by_user: dict[str, list[Event]] = defaultdict(list)
    now_ms = int(time.time() * 1000)  # accepted events were never in the future: they pass the skew check
    needle = user.encode() if user is not None else None
    settings = replace(settings, max_event_bytes=2**62)  # a record is its event plus a few fields: never too large
    for n, record in enumerate(records):
        origin, raw = record[0], record[1]
        out.records += 1
        if needle is not None and needle not in raw:  # cheap pre-filter before parsing
            continue
        event = parse_event(raw, n, origin, now_ms, settings)
        if not isinstance(event, Event) or not isinstance(event.doc.get("applied"), list):
            out.unreadable.append(origin)
            continue
        if (user is None or event.user_id == user) and (keep is None or keep(record, event)):
            by_user[event.user_id].append(event)
    return by_user, out


def rebuild_views(records: Iterable[Sequence[Any]], settings: SyncSettings, user: str | None = None,
                  updates: tuple[str, ...] = APPLIED, keep: Callable[[Sequence[Any], Event], bool] | None = None
                  ) -> Rebuilt:
    """Views from (origin, raw, ...) history records, in any order; only `user`'s if given."""
    by_user, out = parse_history(records, settings, user, keep)
    for user_id in sorted(by_user):
        for category, agg in replay_events(by_user[user_id], updates).items():
            view = view_record(category, user_id, agg)
            out.views[view["key"]] = view
    return out


def replay_events(events: list[Event], updates: tuple[str, ...] = APPLIED) -> dict[str, Aggregate]:
    """One user's aggregates (version >= 1) from their history events, fed in (timestamp, eventId) order."""
    aggs: dict[str, Aggregate] = {}
    events.sort(key=lambda e: (e.ts, e.event_id))
    for event in events:
        chosen_names = {name for part in updates for name in event.doc.get(part, ())}
        for category, sub_updates in event.sub_events:
            chosen = tuple(u for u in sub_updates if u[0] in chosen_names)
            if chosen:
                agg = aggs.get(category)
                if agg is None:
                    agg = aggs[category] = new_aggregate()
                aggregate_step(agg, chosen, event, "last-writer-wins", [], [])
    return {c: a for c, a in aggs.items() if a[VERSION] >= 1}

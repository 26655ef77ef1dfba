"""Point-in-time context: a user's views as they were at a moment, rebuilt from the history.

Two clocks, two questions:
- event time (default): the views the job would hold had every accepted event with timestamp <= T arrived
  in (timestamp, eventId) order. A late event counts at its own time; an event after T never leaks in.
  This is the leakage-free answer a training set needs.
- write time (`seen_by=M`): what model M could have read at T: only history records the job had written by
  T (their Kafka timestamps; a view and its history record are written in one transaction), with the
  updates the job really applied, and only views that list M in targetModels (the ones pushed to M's
  change stream).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ctxsync.consistency.rebuild import APPLIED, EFFECTIVE, rebuild_views
from transforms.settings import SyncSettings


def views_as_of(records: Iterable[Sequence[Any]], settings: SyncSettings, at_ms: int, user: str | None = None,
                category: str | None = None, seen_by: str | None = None) -> list[dict[str, Any]]:
    """Views at `at_ms` (epoch ms, inclusive) from (origin, raw, written_ms) history records, by key."""
    if seen_by is None:
        rebuilt = rebuild_views(records, settings, user, EFFECTIVE, keep=lambda _, event: event.ts <= at_ms)
    else:
        rebuilt = rebuild_views(records, settings, user, APPLIED, keep=lambda record, _: record[2] <= at_ms)
    return [view for key, view in sorted(rebuilt.views.items())
            if (category is None or view["category"] == category)
            and (seen_by is None or seen_by in view["targetModels"])]

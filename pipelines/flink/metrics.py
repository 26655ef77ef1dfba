"""The context-sync operator's metrics on Flink (names: ctxsync/metric_names.py), updated once per batch.

Registered under the operator's group `ctxsync`; labels are key/value groups (`outcome`, `reason`, `le`),
which Flink's Prometheus reporter turns into labels (`job_series` gives the exposed names).

Why counters only: in thread mode a Python distribution is a gauge of its last value, so durations are
histogram parts built from counters (transforms/tally.py); and the users-in-cache gauge is a counter moved
by the change since the last batch, so the reporter's scrape thread never calls into Python.
"""
from __future__ import annotations

from typing import Any

from ctxsync.metric_names import JOB_GROUP
from transforms.tally import BATCH_BOUNDS_MS, LAG_BOUNDS_MS, OUTCOMES, Histogram, Tally, bucket_labels, histogram


class HistogramCounters:
    """`<name>_bucket{le}`, `<name>_sum`, `<name>_count` counters of one histogram."""

    def __init__(self, group: Any, name: str, bounds: tuple[int, ...]) -> None:
        self.bounds = bounds
        self.buckets = [group.add_group("le", le).counter(f"{name}_bucket") for le in bucket_labels(bounds)]
        self.sum = group.counter(f"{name}_sum")
        self.count = group.counter(f"{name}_count")

    def add(self, values: list[int]) -> None:
        if values:
            self.add_histogram(histogram(values, self.bounds))

    def add_histogram(self, h: Histogram) -> None:
        for counter, n in zip(self.buckets, h.cumulative):
            if n:
                counter.inc(n)
        self.sum.inc(h.total)
        self.count.inc(h.count)


class FlinkJobMetrics:
    """The job metrics of one operator instance (one subtask)."""

    def __init__(self, metric_group: Any) -> None:
        group = self.group = metric_group.add_group(JOB_GROUP)
        self.events = {outcome: group.add_group("outcome", outcome).counter("events_total") for outcome in OUTCOMES}
        self.reasons: dict[str, Any] = {}  # created on a reason's first dead letter: the codes are open-ended
        self.violations = group.counter("ordering_violations_total")
        self.conflicts = group.counter("conflicts_total")
        self.stale = group.counter("stale_updates_total")
        self.views = group.counter("views_emitted_total")
        self.lag = HistogramCounters(group, "event_lag_ms", LAG_BOUNDS_MS)
        self.batch = HistogramCounters(group, "batch_ms", BATCH_BOUNDS_MS)
        self.users = group.counter("state_users")
        self.users_reported = 0

    def record(self, tally: Tally, lags_ms: list[int], batch_ms: int, users: int) -> None:
        """What one batch did: its tally, the lag of each accepted event, its time, users now cached."""
        for outcome, n in tally.outcomes().items():
            if n:
                self.events[outcome].inc(n)
        for reason, n in tally.dead_letter_reasons.items():
            counter = self.reasons.get(reason)
            if counter is None:
                counter = self.reasons[reason] = self.group.add_group("reason", reason).counter("dead_letters_total")
            counter.inc(n)
        for counter, n in ((self.violations, tally.ordering_violations), (self.conflicts, tally.conflicts),
                           (self.stale, tally.stale_updates), (self.views, tally.views_emitted)):
            if n:
                counter.inc(n)
        self.lag.add(lags_ms)
        self.batch.add([batch_ms])
        if users != self.users_reported:
            self.users.inc(users - self.users_reported)
            self.users_reported = users

"""The live signals of a job and its connectors, computed from two scrapes of their endpoints.

Counters become rates over the time between the scrapes (a counter that went down was reset by a
restart: its new value is the increase). Latency percentiles come from histogram buckets: of the
observations between the scrapes when there were any, else of all since the process started (`window`
says which). Job metrics are summed over Flink's per-subtask series; names come from ctxsync.metric_names.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from ctxsync.metric_names import job_series
from ctxsync.observe.scrape import Scrape, Sample

EVENTS, DEAD_LETTERS = job_series("events_total"), job_series("dead_letters_total")
VIOLATIONS, CONFLICTS = job_series("ordering_violations_total"), job_series("conflicts_total")
STALE, VIEWS = job_series("stale_updates_total"), job_series("views_emitted_total")
EVENT_LAG_BUCKETS = job_series("event_lag_ms_bucket")  # le in milliseconds
RECORDS = "ctxsync_connector_records_total"
WRITE_BUCKETS, PROPAGATION_BUCKETS = "ctxsync_connector_write_seconds_bucket", "ctxsync_propagation_seconds_bucket"
LAG, DLQ = "ctxsync_connector_lag_records", "ctxsync_dlq_records"


@dataclass
class Counter:
    total: float
    per_s: float


@dataclass
class Latency:
    p95_s: float
    window: str          # "interval" (between the scrapes) or "total" (since the process started)
    count: int           # observations in that window
    beyond: bool = False  # the quantile is in the +Inf bucket: p95_s is the largest bound, the truth is above


@dataclass
class EndpointState:
    name: str
    url: str
    up: bool
    error: str | None


@dataclass
class ConnectorSignals:
    records_per_s: float | None = None
    records: dict[str, float] = field(default_factory=dict)   # outcome -> total
    propagation: Latency | None = None
    write: Latency | None = None


@dataclass
class Status:
    interval_s: float
    endpoints: list[EndpointState]
    events_per_s: float | None = None
    events: dict[str, float] = field(default_factory=dict)            # outcome -> total
    dead_letters: dict[str, float] = field(default_factory=dict)      # reason -> total
    dead_letters_per_s: float | None = None
    ordering_violations: Counter | None = None
    conflicts: Counter | None = None
    stale_updates: Counter | None = None
    views_per_s: float | None = None
    event_lag: Latency | None = None                                  # processing time - event time
    connectors: dict[str, ConnectorSignals] = field(default_factory=dict)
    lag: list[tuple[str, str, int, float]] = field(default_factory=list)  # connector, topic, partition, records
    dlq_records: dict[str, float] = field(default_factory=dict)       # dead-letter topic -> records
    dlq_per_s: float | None = None

    @property
    def down(self) -> list[str]:
        return [e.name for e in self.endpoints if not e.up]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lag"] = [{"connector": c, "topic": t, "partition": p, "records": r} for c, t, p, r in self.lag]
        data["down"] = self.down
        return data


def compute(before: list[Scrape], after: list[Scrape]) -> Status:
    """The signals between two scrapes of the same endpoints (`before` may hold fewer answers)."""
    earlier = {s.endpoint: s for s in before if s.up}
    now = [s for s in after if s.up]
    intervals = [s.at - earlier[s.endpoint].at for s in now if s.endpoint in earlier]
    status = Status(interval_s=round(max(intervals), 3) if intervals else 0.0,
                    endpoints=[EndpointState(s.endpoint.name, s.endpoint.url, s.up, s.error) for s in after])
    old = _samples([earlier[s.endpoint] for s in now if s.endpoint in earlier])
    new = _samples(now)
    seconds = status.interval_s

    if EVENTS in new:
        status.events = _by(new, EVENTS, "outcome")
        status.events_per_s = _rate(new, old, EVENTS, seconds)
    if DEAD_LETTERS in new:
        status.dead_letters = _by(new, DEAD_LETTERS, "reason")
        status.dead_letters_per_s = _rate(new, old, DEAD_LETTERS, seconds)
    for name, attribute in ((VIOLATIONS, "ordering_violations"), (CONFLICTS, "conflicts"), (STALE, "stale_updates")):
        if name in new:
            setattr(status, attribute, Counter(_sum(new[name]), _rate(new, old, name, seconds) or 0.0))
    if VIEWS in new:
        status.views_per_s = _rate(new, old, VIEWS, seconds)
    status.event_lag = _latency(new, old, EVENT_LAG_BUCKETS, 0.95, unit_s=0.001)

    for connector in sorted({s.labels.get("connector", "") for n in (RECORDS, PROPAGATION_BUCKETS, WRITE_BUCKETS)
                             for s in new.get(n, [])} - {""}):
        mine = {n: [s for s in samples if s.labels.get("connector") == connector] for n, samples in new.items()}
        theirs = {n: [s for s in samples if s.labels.get("connector") == connector] for n, samples in old.items()}
        status.connectors[connector] = ConnectorSignals(
            records_per_s=_rate(mine, theirs, RECORDS, seconds) if mine.get(RECORDS) else None,
            records=_by(mine, RECORDS, "outcome"),
            propagation=_latency(mine, theirs, PROPAGATION_BUCKETS, 0.95),
            write=_latency(mine, theirs, WRITE_BUCKETS, 0.95))
    status.lag = sorted((s.labels.get("connector", ""), s.labels.get("topic", ""),
                         int(s.labels.get("partition", "0") or 0), s.value) for s in new.get(LAG, []))
    if DLQ in new:  # every connector reports the same topics' size: one value per topic, not a sum
        status.dlq_records = _largest(new, DLQ, "topic")
        if seconds > 0 and DLQ in old:
            before = _largest(old, DLQ, "topic")
            status.dlq_per_s = sum(max(0.0, n - before.get(t, n)) for t, n in status.dlq_records.items()) / seconds
    return status


def _samples(scrapes: list[Scrape]) -> dict[str, list[Sample]]:
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for scrape in scrapes:
        for sample in scrape.samples:
            by_name[sample.name].append(sample)
    return by_name


def _sum(samples: list[Sample]) -> float:
    return sum(s.value for s in samples if not math.isnan(s.value))


def _by(samples: dict[str, list[Sample]], name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for s in samples.get(name, []):
        totals[s.labels.get(label, "")] += s.value
    return dict(sorted(totals.items()))


def _largest(samples: dict[str, list[Sample]], name: str, label: str) -> dict[str, float]:
    largest: dict[str, float] = {}
    for s in samples.get(name, []):
        key = s.labels.get(label, "")
        largest[key] = max(largest.get(key, s.value), s.value)
    return dict(sorted(largest.items()))


def _rate(new: dict[str, list[Sample]], old: dict[str, list[Sample]], name: str, seconds: float) -> float | None:
    """Increase per second summed over the series; a series that went down restarted (its value is the
    increase); None without two scrapes to compare."""
    if seconds <= 0 or name not in old:
        return None
    before = {_series(s): s.value for s in old[name]}
    increase = 0.0
    for s in new.get(name, []):
        previous = before.get(_series(s), 0.0)
        increase += s.value - previous if s.value >= previous else s.value
    return increase / seconds


def _series(sample: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sample.labels.items()))


def _buckets(samples: list[Sample]) -> dict[float, float]:
    buckets: dict[float, float] = defaultdict(float)
    for s in samples:
        buckets[float(s.labels["le"])] += s.value
    return buckets


def _latency(new: dict[str, list[Sample]], old: dict[str, list[Sample]], buckets: str, q: float,
             unit_s: float = 1.0) -> Latency | None:
    """The q-quantile of a histogram's `<name>_bucket` series summed over all series (`unit_s`: seconds
    per unit of `le`), in seconds."""
    now = _buckets(new.get(buckets, []))
    if not now:
        return None
    before = _buckets(old.get(buckets, []))
    interval = {le: count - before.get(le, 0.0) for le, count in now.items()}
    inf = math.inf
    if before and interval.get(inf, 0.0) > 0 and all(v >= 0 for v in interval.values()):
        window, buckets_used = "interval", interval
    elif now.get(inf, 0.0) > 0:
        window, buckets_used = "total", now
    else:
        return None
    finite = [count for le, count in buckets_used.items() if le != inf]
    beyond = q * buckets_used[inf] > max(finite, default=0.0)
    return Latency(histogram_quantile(q, buckets_used) * unit_s, window, int(buckets_used[inf]), beyond)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds rank q * count
    (the lower bound of the first bucket is 0; a rank in the +Inf bucket gives the largest finite bound)."""
    ordered = sorted(buckets.items())
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower

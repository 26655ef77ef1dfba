"""What one batch adds to the job metrics (ctxsync/metric_names.py), counted from the tagged output lines
the batch produced anyway.

The operator is hot (thousands of events a second), so engines do not touch a metric per event: they
collect the batch's tagged lines and accepted event times, tally them here in one pass, and update each
metric once per batch (pipelines/flink/metrics.py, pipelines/beam/metrics.py). Pure: no engine imports.

Durations are whole milliseconds because engine counters are integers; a distribution is carried as
Prometheus histogram parts (cumulative `le` bucket counts, a sum and a count), which Flink's reporter can
expose as plain counters and Prometheus' `histogram_quantile` reads.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from transforms.records import CONFLICT, DEAD_LETTER, DUPLICATE, HISTORY, ORDERING, VIEW

# Upper bounds (ms, inclusive) of the histogram buckets; "+Inf" follows the last.
LAG_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 3_600_000)
BATCH_BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000)
OUTCOMES = ("accepted", "duplicate", "dead_lettered")


@dataclass
class Tally:
    """Counts of one batch's outputs, named like the job metrics they feed."""

    accepted: int = 0
    duplicate: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    ordering_violations: int = 0
    conflicts: int = 0
    stale_updates: int = 0
    views_emitted: int = 0

    def outcomes(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicate": self.duplicate, "dead_lettered": self.dead_lettered}


def tally_lines(lines: Iterable[str]) -> Tally:
    """Count tagged output lines (transforms.records) by kind; other kinds (e.g. control records) are not
    events and are left out. A history line's aux is its stale-update count; a dead letter's reason is
    read from its JSON (rare lines: the parse costs nothing at the batch's scale)."""
    counts: dict[str, int] = {}
    stale = 0
    reasons: dict[str, int] = {}
    for line in lines:
        kind = line[0]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == HISTORY:
            tab = line.index("\t")
            if line[tab + 1] != "0":
                stale += int(line[tab + 1:line.index("\t", tab + 1)])
        elif kind == DEAD_LETTER:
            reason = orjson.loads(line.split("\t", 2)[2])["reason"]
            reasons[reason] = reasons.get(reason, 0) + 1
    return Tally(
        accepted=counts.get(HISTORY, 0), duplicate=counts.get(DUPLICATE, 0),
        dead_lettered=counts.get(DEAD_LETTER, 0), dead_letter_reasons=reasons,
        ordering_violations=counts.get(ORDERING, 0), conflicts=counts.get(CONFLICT, 0),
        stale_updates=stale, views_emitted=counts.get(VIEW, 0),
    )


@dataclass
class Histogram:
    """Prometheus histogram parts of some values: `cumulative[i]` counts values <= bounds[i], and the last
    entry (`+Inf`) counts all of them."""

    cumulative: list[int]
    total: int
    count: int


def histogram(values: Iterable[int], bounds: tuple[int, ...]) -> Histogram:
    per_bucket = [0] * (len(bounds) + 1)
    total = count = 0
    for value in values:
        per_bucket[bisect_left(bounds, value)] += 1
        total += value
        count += 1
    running, cumulative = 0, []
    for n in per_bucket:
        running += n
        cumulative.append(running)
    return Histogram(cumulative, total, count)


def bucket_labels(bounds: tuple[int, ...]) -> tuple[str, ...]:
    """The `le` label values of a histogram's buckets, in order."""
    return (*(str(b) for b in bounds), "+Inf")


def lags_ms(event_times_ms: Iterable[int], now_ms: int) -> list[int]:
    """Processing time minus event time per event; an event stamped in the future counts as 0."""
    return [max(now_ms - t, 0) for t in event_times_ms]

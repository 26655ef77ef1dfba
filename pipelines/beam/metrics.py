"""The job metrics (ctxsync/metric_names.py) on Beam: counters in the Beam Metrics namespace `ctxsync`,
updated once per unit of work the runner hands a DoFn (a chunk read, a user's fold), from its tally.

Beam metrics have no labels, so a labelled series is one counter whose name carries the label in
Prometheus' notation (`beam_name`): `events_total{outcome="accepted"}`. Histograms are the same counter
parts as on Flink (transforms/tally.py). `state_users` has no Beam twin: the runner, not the DoFn, holds
Beam's keyed state.
"""
from __future__ import annotations

from typing import Any

from apache_beam.metrics.metric import Metrics, MetricsFilter

from ctxsync.metric_names import JOB_GROUP
from transforms.tally import BATCH_BOUNDS_MS, LAG_BOUNDS_MS, Tally, bucket_labels, histogram


def beam_name(name: str, **labels: str) -> str:
    """The Beam counter name of a job metric series: `name{key="value",...}`, or `name` without labels."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


_COUNTERS: dict[str, Any] = {}  # Beam's counters resolve the running step's container at each inc()


def _inc(name: str, n: int) -> None:
    if n:
        counter = _COUNTERS.get(name)
        if counter is None:
            counter = _COUNTERS[name] = Metrics.counter(JOB_GROUP, name)
        counter.inc(n)


def _histogram(name: str, values: list[int], bounds: tuple[int, ...]) -> None:
    if not values:
        return
    h = histogram(values, bounds)
    for le, n in zip(bucket_labels(bounds), h.cumulative):
        _inc(beam_name(f"{name}_bucket", le=le), n)
    _inc(f"{name}_sum", h.total)
    _inc(f"{name}_count", h.count)


def record_tally(tally: Tally, lags_ms: list[int] = (), batch_ms: int | None = None) -> None:
    """Add one unit of work's tally, its accepted events' lags and its time (ms) to the counters."""
    for outcome, n in tally.outcomes().items():
        _inc(beam_name("events_total", outcome=outcome), n)
    for reason, n in tally.dead_letter_reasons.items():
        _inc(beam_name("dead_letters_total", reason=reason), n)
    _inc("ordering_violations_total", tally.ordering_violations)
    _inc("conflicts_total", tally.conflicts)
    _inc("stale_updates_total", tally.stale_updates)
    _inc("views_emitted_total", tally.views_emitted)
    _histogram("event_lag_ms", list(lags_ms), LAG_BOUNDS_MS)
    if batch_ms is not None:
        _histogram("batch_ms", [batch_ms], BATCH_BOUNDS_MS)


def job_counters(result: Any) -> dict[str, int]:
    """Beam counter name -> committed value of a finished pipeline's job metrics (summed over steps)."""
    got: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(JOB_GROUP))["counters"]:
        name = counter.key.metric.name
        got[name] = got.get(name, 0) + counter.committed
    return got

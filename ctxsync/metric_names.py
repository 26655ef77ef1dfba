"""The one catalogue of ctxsync's metric names, shared by the job, the connectors, Prometheus rules,
the dashboard and `ctxsync signals`, so a rename is one edit and a test can check every query against it.

Job metrics are registered under the operator's metric group `ctxsync` (Flink) or the Beam Metrics
namespace `ctxsync`; Flink's Prometheus reporter prefixes them with its scope (JOB_PREFIX) and turns
key/value groups (e.g. `outcome`) into labels, and the group's key stays in the name: use `job_series`
for the exposed name. Flink's Python metrics have no histogram (a Python distribution reaches the reporter
as its last value only), so the job's durations are histogram parts made of counters: `<name>_bucket{le}`
(cumulative, `le` in ms as in the name, up to "+Inf"), `<name>_sum` and `<name>_count`
(transforms/tally.py). Connector metrics are served by `prometheus-client` as named.
"""
from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    name: str          # as registered (job) or exposed (connectors)
    kind: str          # counter | gauge | histogram | distribution
    labels: tuple[str, ...]
    help: str


JOB_GROUP = "ctxsync"
# Flink's Prometheus reporter: the local job (pipelines/flink/env.py) and the loopback cluster (ctxsync/cluster.py).
FLINK_REPORTER_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# How Flink's Prometheus reporter names an operator metric of group JOB_GROUP (checked by the job metrics test).
JOB_PREFIX = "flink_taskmanager_job_task_operator_ctxsync_"

JOB_METRICS = (
    Metric("events_total", "counter", ("outcome",), "events read, by outcome: accepted, duplicate, dead_lettered"),
    Metric("dead_letters_total", "counter", ("reason",), "dead-lettered events by reason code"),
    Metric("ordering_violations_total", "counter", (), "ordering violations (sub-events)"),
    Metric("conflicts_total", "counter", (), "optimistic-concurrency conflicts (sub-events)"),
    Metric("stale_updates_total", "counter", (), "attribute updates not applied because a newer one is stored"),
    Metric("views_emitted_total", "counter", (), "view records emitted (one per applied aggregate change)"),
    Metric("event_lag_ms", "histogram", ("le",), "processing time minus event time, per accepted event (ms)"),
    Metric("batch_ms", "histogram", ("le",), "Python time per batch handed over by the engine (ms)"),
    Metric("state_users", "gauge", (), "users whose state this operator instance holds in its cache"),
)
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def job_series(name: str) -> str:
    """The name Flink's Prometheus reporter exposes for a job metric (or a histogram part such as
    `event_lag_ms_bucket`): the key of a key/value group joins the scope before the name, e.g.
    events_total by outcome -> flink_taskmanager_job_task_operator_ctxsync_outcome_events_total{outcome=..}.
    The reporter exposes every Flink counter as a Prometheus gauge; rate() and increase() still apply."""
    for metric in JOB_METRICS:
        if metric.kind == "histogram" and name.startswith(metric.name) and name[len(metric.name):] in HISTOGRAM_PARTS:
            return JOB_PREFIX + ("le_" if name.endswith("_bucket") else "") + name
        if metric.name == name:
            return JOB_PREFIX + "".join(f"{label}_" for label in metric.labels) + name
    raise KeyError(f"{name} is not a job metric of ctxsync.metric_names")

CONNECTOR_METRICS = (
    Metric("ctxsync_connector_records_total", "counter", ("connector", "outcome"),
           "records consumed by a connector, by outcome: written, skipped, dead_lettered"),
    Metric("ctxsync_connector_write_seconds", "histogram", ("connector",), "time per bulk write to the sink"),
    Metric("ctxsync_connector_lag_records", "gauge", ("connector", "topic", "partition"),
           "records between the connector's position and the partition's end"),
    Metric("ctxsync_propagation_seconds", "histogram", ("connector",),
           "source event time to its record applied in the sink (view in Redis, document in Elasticsearch)"),
    Metric("ctxsync_dlq_records", "gauge", ("topic",), "records in a dead-letter topic (sum of end offsets)"),
    Metric("ctxsync_consistency_ratio", "gauge", ("sink",), "share of views that match the history (ctxsync verify)"),
)

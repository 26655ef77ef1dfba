"""The one catalogue of ctxsync's metric names, shared by the job, the connectors, Prometheus rules,
the dashboard and `ctxsync status`, so a rename is one edit and a test can check every query against it.

Job metrics are registered under the operator's metric group `ctxsync` (Flink) or the Beam Metrics
namespace `ctxsync`; Flink's Prometheus reporter prefixes them with its scope (JOB_PREFIX) and turns
key/value groups (e.g. `outcome`) into labels. Connector metrics are served by `prometheus-client` as named.
"""
from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    name: str          # as registered (job) or exposed (connectors)
    kind: str          # counter | gauge | histogram | distribution
    labels: tuple[str, ...]
    help: str


JOB_GROUP = "ctxsync"
# How Flink's Prometheus reporter names an operator metric of group JOB_GROUP (checked by the job metrics test).
JOB_PREFIX = "flink_taskmanager_job_task_operator_ctxsync_"

JOB_METRICS = (
    Metric("events_total", "counter", ("outcome",), "events read, by outcome: accepted, duplicate, dead_lettered"),
    Metric("dead_letters_total", "counter", ("reason",), "dead-lettered events by reason code"),
    Metric("ordering_violations_total", "counter", (), "ordering violations (sub-events)"),
    Metric("conflicts_total", "counter", (), "optimistic-concurrency conflicts (sub-events)"),
    Metric("stale_updates_total", "counter", (), "attribute updates not applied because a newer one is stored"),
    Metric("views_emitted_total", "counter", (), "view records emitted (one per applied aggregate change)"),
    Metric("event_lag_seconds", "distribution", (), "processing time minus event time, per accepted event"),
    Metric("batch_seconds", "distribution", (), "Python time per batch handed over by the engine"),
    Metric("state_users", "gauge", (), "users whose state this operator instance holds in its cache"),
)

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

"""Prometheus metrics of one sink connector (`ctxsync connect`), served by prometheus-client over HTTP.

Names come from ctxsync.metric_names. Everything is observed once per batch, after the batch is written
(the hot loop stays a consume/write/commit loop): outcome counters from the ConnectorStats deltas, the
sink write time, and propagation latency from a sample of the batch's records. Consumer lag and the
dead-letter topic's size need broker round trips, so they are refreshed every `refresh_s` seconds only.

Propagation latency is the record's *event time* (a view's `updatedAt`: its newest applied event; a
history or violation record's `timestamp`) to the moment its batch is written. Producers set no
produce-time header, so this includes how late the event was when it was produced; a replay of old
events shows as large latencies.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ctxsync.errors import RuntimeFailure
from ctxsync.metric_names import CONNECTOR_METRICS
from transforms.timestamps import parse_iso_ms

# The field holding a record's event time, by connector kind (see the module docstring).
EVENT_TIME_FIELD = {"redis": "updatedAt", "elasticsearch": "timestamp"}
PROPAGATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAMPLE_PER_BATCH = 100  # records of a batch whose propagation is observed (evenly spread), bounding the cost
OUTCOMES = ("written", "skipped", "dead_lettered")

_SPEC = {m.name: m for m in CONNECTOR_METRICS}


def _base(name: str, suffix: str) -> str:
    """prometheus-client appends `_total` to counters itself: register the name without it."""
    return name[: -len(suffix)] if name.endswith(suffix) else name


class ConnectorMetrics:
    """The metrics of one connector in its own registry (no process-global state shared between tests)."""

    def __init__(self, connector: str, time_field: str | None = None, refresh_s: float = 5.0,
                 registry: CollectorRegistry | None = None) -> None:
        self.connector = connector
        self.time_field = time_field or EVENT_TIME_FIELD.get(connector, "timestamp")
        self.refresh_s = refresh_s
        self.registry = registry if registry is not None else CollectorRegistry()
        records, write, lag, propagation, dlq = (_SPEC[n] for n in (
            "ctxsync_connector_records_total", "ctxsync_connector_write_seconds", "ctxsync_connector_lag_records",
            "ctxsync_propagation_seconds", "ctxsync_dlq_records"))
        self.records = Counter(_base(records.name, "_total"), records.help, records.labels, registry=self.registry)
        self.write_seconds = Histogram(write.name, write.help, write.labels, buckets=WRITE_BUCKETS,
                                       registry=self.registry).labels(connector)
        self.lag = Gauge(lag.name, lag.help, lag.labels, registry=self.registry)
        self.propagation = Histogram(propagation.name, propagation.help, propagation.labels,
                                     buckets=PROPAGATION_BUCKETS, registry=self.registry).labels(connector)
        self.dlq = Gauge(dlq.name, dlq.help, dlq.labels, registry=self.registry)
        self._outcomes = {outcome: self.records.labels(connector, outcome) for outcome in OUTCOMES}
        self._seen = dict.fromkeys(OUTCOMES, 0)
        self._next_refresh = 0.0
        self._dlq_partitions: list[int] | None = None
        self._server: Any = None
        self.port: int | None = None  # bound by serve()

    def after_batch(self, batch: list[Any], stats: Any) -> None:
        """Observe one written batch: outcome counts (ConnectorStats deltas), write time, propagation."""
        applied_ms = time.time() * 1000
        for outcome in OUTCOMES:
            total = getattr(stats, outcome)
            if total > self._seen[outcome]:
                self._outcomes[outcome].inc(total - self._seen[outcome])
                self._seen[outcome] = total
        self.write_seconds.observe(stats.write_seconds)
        for seconds in self.propagation_samples(batch, applied_ms):
            self.propagation.observe(seconds)

    def propagation_samples(self, batch: list[Any], applied_ms: float) -> Iterable[float]:
        """Event time -> applied, in seconds, for up to SAMPLE_PER_BATCH records; unreadable ones are skipped
        (the handler dead-letters them)."""
        step = max(1, len(batch) // SAMPLE_PER_BATCH)
        for message in batch[::step]:
            try:
                stamp = orjson.loads(message.value())[self.time_field]
                event_ms = parse_iso_ms(stamp) if isinstance(stamp, str) else None
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if event_ms is not None:
                yield max(0.0, (applied_ms - event_ms) / 1000)

    def refresh(self, consumer: Any, partitions: Iterable[tuple[str, int]], dlq_topic: str,
                force: bool = False) -> None:
        """Consumer lag per partition and the DLQ's size, at most every `refresh_s` seconds unless forced."""
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        from confluent_kafka import KafkaException, TopicPartition

        try:
            tps = [TopicPartition(t, p) for t, p in sorted(partitions)]
            positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(tps)}
            unknown = [tp for tp in tps if positions[(tp.topic, tp.partition)] < 0]
            if unknown:  # nothing consumed yet in this run: the group's committed offset is the position
                for tp in consumer.committed(unknown, timeout=5):
                    positions[(tp.topic, tp.partition)] = tp.offset
            for tp in tps:
                low, high = consumer.get_watermark_offsets(tp, timeout=5)
                position = positions[(tp.topic, tp.partition)]
                lag = high - (position if position >= 0 else low)
                self.lag.labels(self.connector, tp.topic, str(tp.partition)).set(max(0, lag))
            self.dlq.labels(dlq_topic).set(self._dlq_size(consumer, dlq_topic))
        except KafkaException:
            pass  # the broker is briefly unreachable: keep the last values, the loop retries its own work

    def _dlq_size(self, consumer: Any, topic: str) -> int:
        """Sum of the DLQ's end offsets: every dead letter ever written (retention does not lower it)."""
        from confluent_kafka import TopicPartition

        if self._dlq_partitions is None:
            metadata = consumer.list_topics(timeout=5).topics.get(topic)  # by name it could auto-create
            if metadata is None or metadata.error is not None:
                return 0  # not created yet: nothing dead-lettered
            self._dlq_partitions = sorted(metadata.partitions)
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                   for p in self._dlq_partitions)

    def serve(self, host: str, port: int) -> None:
        """Serve the registry at http://host:port/metrics (prometheus-client's thread) until close()."""
        try:
            self._server, _ = start_http_server(port, host, self.registry)
        except OSError as exc:
            raise RuntimeFailure(f"cannot serve {self.connector} connector metrics on {host}:{port}: {exc}",
                                 "pick another port with --metrics-port, 0 for a free one, or off") from exc
        self.port = self._server.server_port  # the one bound: port 0 takes a free one

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def serve_metrics(connectors: dict[str, Any], host: str,
                  ports: dict[str, int | None]) -> list[ConnectorMetrics]:
    """Give each connector with a port (by kind; 0 = a free one) its metrics, served on host:port; close()
    them."""
    served: list[ConnectorMetrics] = []
    try:
        for kind, connector in connectors.items():
            if ports.get(kind) is not None:
                metrics = ConnectorMetrics(kind)
                metrics.serve(host, ports[kind])
                served.append(metrics)
                connector.metrics = metrics
    except RuntimeFailure:
        for metrics in served:
            metrics.close()
        raise
    return served

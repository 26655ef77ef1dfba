"""Connector metrics (ctxsync.io.connector_metrics): real connectors against loopback Apache Kafka,
redis-server and noida-db (ES) with known records (bad ones included), read from their registries and
scraped by a real Prometheus."""
from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from ctxsync.io.connector_metrics import ConnectorMetrics, serve_metrics
from ctxsync.io.connectors import elasticsearch_connector, redis_connector
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.servers import free_port
from transforms.timestamps import format_iso_ms
from tests.fixtures_prometheus import prometheus  # noqa: F401
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import event

AGE_S = 3  # event times are this far in the past when produced, so propagation is at least this


def stamp(age_s: float = AGE_S) -> str:
    return format_iso_ms(int((time.time() - age_s) * 1000))


def view(version: int, user: str = "u1") -> dict:
    return {"key": f"behavioral:{user}", "category": "behavioral", "userId": user, "version": version,
            "updatedAt": stamp(), "attributes": {}, "targetModels": []}


def history(event_id: str) -> dict:
    return {**event(eventId=event_id, timestamp=stamp()), "aggregates": ["behavioral:u1"], "applied": ["segment"],
            "stale": [], "violation": False, "conflict": False}


def produce(config: dict, topic: str, values: list[bytes]) -> None:
    p = producer(config)
    for value in values:
        p.produce(topic, key=b"k", value=value)
    assert p.flush(10) == 0


def redis_setup(servers, redis_client, unique: str):  # noqa: F811
    """A views topic with 3 versions of one view (1 written, 2 coalesced away) and 2 bad records."""
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    topic, dlq = f"views-{unique}", f"dlq-{unique}"
    ensure_topics(config, [TopicSpec(topic, 2), TopicSpec(dlq, 1)])
    produce(config, topic, [orjson.dumps(view(v)) for v in (1, 2, 3)] + [b"{not json", b'{"key": "a:b"}'])
    return config, redis_connector(config, redis_client, topic=topic, dlq_topic=dlq, group_id=f"g-{unique}")


def sample(metrics: ConnectorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_redis_connector_run_counts_outcomes_latency_lag_and_dead_letters(servers, redis_client, unique):  # noqa: F811
    config, connector = redis_setup(servers, redis_client, unique)
    metrics = connector.metrics = ConnectorMetrics("redis")
    topic, dlq = connector.topics[0], connector.dlq_topic

    # before the run: nothing consumed, so the lag of the topic's two partitions adds up to its 5 records
    probe = Consumer({**config, "group.id": f"g-{unique}"})
    probe.assign([TopicPartition(topic, p) for p in (0, 1)])
    metrics.refresh(probe, [(topic, 0), (topic, 1)], dlq, force=True)
    probe.close()
    lag = [sample(metrics, "ctxsync_connector_lag_records", connector="redis", topic=topic, partition=str(p))
           for p in (0, 1)]
    assert sum(lag) == 5
    assert sample(metrics, "ctxsync_dlq_records", topic=dlq) == 0

    stats = connector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.written, stats.skipped, stats.dead_lettered) == (1, 2, 2)
    for outcome, expected in (("written", 1), ("skipped", 2), ("dead_lettered", 2)):
        assert sample(metrics, "ctxsync_connector_records_total", connector="redis", outcome=outcome) == expected
    assert sample(metrics, "ctxsync_connector_write_seconds_count", connector="redis") == stats.batches
    # the 3 views carry updatedAt; the 2 bad records have none and are left out
    assert sample(metrics, "ctxsync_propagation_seconds_count", connector="redis") == 3
    assert sample(metrics, "ctxsync_propagation_seconds_bucket", connector="redis", le="1.0") == 0
    assert AGE_S * 3 <= sample(metrics, "ctxsync_propagation_seconds_sum", connector="redis") < (AGE_S + 30) * 3
    for p in (0, 1):  # caught up: forced refresh at the end
        assert sample(metrics, "ctxsync_connector_lag_records", connector="redis", topic=topic, partition=str(p)) == 0
    assert sample(metrics, "ctxsync_dlq_records", topic=dlq) == 2


def test_serve_metrics_refuses_a_busy_port_in_one_line(servers, redis_client, unique):  # noqa: F811
    from ctxsync.errors import RuntimeFailure

    _, connector = redis_setup(servers, redis_client, unique)
    port = free_port()
    (first,) = serve_metrics({"redis": connector}, "127.0.0.1", {"redis": port})
    try:
        with pytest.raises(RuntimeFailure, match=f"127.0.0.1:{port}.*--metrics-port"):
            serve_metrics({"redis": connector}, "127.0.0.1", {"redis": port})
    finally:
        first.close()
    assert serve_metrics({"redis": connector}, "127.0.0.1", {"redis": None}) == []  # off
    (chosen,) = serve_metrics({"redis": connector}, "127.0.0.1", {"redis": 0})  # a free port, whatever is busy
    try:
        assert chosen.port not in (None, 0, port)
    finally:
        chosen.close()


def test_prometheus_scrapes_both_connectors_with_the_right_counts(servers, redis_client, es_client, unique,  # noqa: F811
                                                                 prometheus):  # noqa: F811
    config, redis_conn = redis_setup(servers, redis_client, unique)
    history_topic, violations = f"history-{unique}", f"violations-{unique}"
    ensure_topics(config, [TopicSpec(history_topic, 1), TopicSpec(violations, 1)])
    produce(config, history_topic, [orjson.dumps(history(f"e{i}")) for i in range(4)] + [b"\xff not json"])
    es_conn = elasticsearch_connector(config, es_client, (history_topic, violations), redis_conn.dlq_topic,
                                      f"g-es-{unique}")
    ports = {"redis": free_port(), "elasticsearch": free_port()}
    served = serve_metrics({"redis": redis_conn, "elasticsearch": es_conn}, "127.0.0.1", ports)
    try:
        for connector in (redis_conn, es_conn):
            connector.run(until_caught_up=True, idle_timeout_s=30)
        prom = prometheus({"ctxsync-connectors": [f"127.0.0.1:{p}" for p in ports.values()]})
        assert len(prom.targets_up()) == 2
        expected = {("redis", "written"): 1, ("redis", "skipped"): 2, ("redis", "dead_lettered"): 2,
                    ("elasticsearch", "written"): 4, ("elasticsearch", "skipped"): 0,
                    ("elasticsearch", "dead_lettered"): 1}
        seen = prom.wait_for("sum by (connector, outcome) (ctxsync_connector_records_total)",
                             lambda r: len(r) == len(expected))
        assert {(dict(k)["connector"], dict(k)["outcome"]): v for k, v in seen.items()} == expected
        # both connectors share the DLQ: 2 + 1 dead letters; each reports the topic's size
        dlq = prom.query(f'max(ctxsync_dlq_records{{topic="{redis_conn.dlq_topic}"}})')
        assert list(dlq.values()) == [3.0]
        assert prom.query("sum(ctxsync_connector_lag_records)") == {(): 0.0}
        p95 = prom.query("histogram_quantile(0.95, sum by (le, connector) (ctxsync_propagation_seconds_bucket))")
        by_connector = {dict(k)["connector"]: v for k, v in p95.items()}
        assert set(by_connector) == {"redis", "elasticsearch"}
        assert all(AGE_S <= v <= 60 for v in by_connector.values())
    finally:
        for metrics in served:
            metrics.close()

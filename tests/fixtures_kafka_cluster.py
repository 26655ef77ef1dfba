"""A three-node Apache Kafka cluster (ctxsync/kafka_cluster.py) for the broker-failure tests, and the Redis and
Elasticsearch (noida-db) servers the job writes to, one set per test module (the module kills nodes).

Import the fixtures you use by name."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from ctxsync.kafka_cluster import KafkaCluster
from ctxsync.servers import LocalServers


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three combined broker+controller nodes, replication factor 3, min.insync.replicas 2."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def sink_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    """redis-server and noida-db (Elasticsearch API) without a Kafka broker of their own."""
    local = LocalServers(tmp_path_factory.mktemp("sinks"))
    try:
        local.up(["redis", "noida"])
        yield local
    finally:
        local.down()

"""A real Flink standalone session cluster on loopback for the `cluster` tests (ctxsync/cluster.py).

Module-scoped: starting one costs ~15-60 s and ~1.5 GB, so the tests of a module share it. It is
always stopped in teardown, also when a test or the start itself fails, and its logs are kept in the
pytest temp dir for post-mortems.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ctxsync.cluster import Cluster, ClusterSpec
from ctxsync.servers import free_port


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("flink-cluster")
    previous = os.environ.get("CTXSYNC_CLUSTER_HOME")
    os.environ["CTXSYNC_CLUSTER_HOME"] = str(home)  # `ctxsync submit` without --jobmanager finds it
    cluster = Cluster(home.resolve(), ClusterSpec(taskmanagers=1, slots=2, checkpoint_interval="1s",
                                                  metrics_port=free_port()))
    try:
        cluster.up(timeout_s=180)
        yield cluster
    finally:
        cluster.down()
        if previous is None:
            os.environ.pop("CTXSYNC_CLUSTER_HOME", None)
        else:
            os.environ["CTXSYNC_CLUSTER_HOME"] = previous


class CommittedCounter:
    """Counts records of output topics as a live read_committed consumer sees them, incrementally:
    cheap enough to poll while measuring recovery. On Apache Kafka it stays assigned across TaskManager
    crashes and still ends with every committed record once (the crash test asserts it; the emulator used
    before missed ~0.5% of them).
    """

    def __init__(self, kafka_config: dict[str, str], topics: list[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({**kafka_config, "group.id": "ctxsync-test-counter", "enable.auto.commit": False,
                                  "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
        parts = []
        for topic in topics:
            metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self.consumer.assign(parts)
        self.counts = {topic: 0 for topic in topics}

    def poll(self, seconds: float = 0.2) -> dict[str, int]:
        for message in self.consumer.consume(10_000, timeout=seconds):
            if message.error() is None:
                self.counts[message.topic()] += 1
        return self.counts

    def close(self) -> None:
        self.consumer.close()


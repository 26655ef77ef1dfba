"""Consumer-group positions and the readable-gap check, on a real Apache Kafka broker."""
from __future__ import annotations

import pytest

from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.io.kafka_positions import (commit_offsets, committed_offsets, has_readable, offsets_for_time,
                                        partition_ends)
from tests.fixtures_servers import kafka_config, servers, unique  # noqa: F401

pytestmark = pytest.mark.servers


def fill(config: dict, topic: str, per_partition: dict[int, int]) -> None:
    p = producer(config)
    for partition, count in per_partition.items():
        for i in range(count):
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert p.flush(15) == 0


def test_ends_and_committed_offsets_round_trip(kafka_config, unique) -> None:
    topic = f"pos{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 2)])
    fill(kafka_config, topic, {0: 5, 1: 2})
    low, high = partition_ends(kafka_config, topic)
    assert low == {0: 0, 1: 0} and high == {0: 5, 1: 2}
    assert committed_offsets(kafka_config, f"g{unique}", topic, [0, 1]) == {0: -1, 1: -1}
    commit_offsets(kafka_config, f"g{unique}", topic, {0: 3, 1: 2})
    assert committed_offsets(kafka_config, f"g{unique}", topic, [0, 1]) == {0: 3, 1: 2}
    with pytest.raises(KeyError):
        partition_ends(kafka_config, f"missing{unique}")


def test_has_readable_sees_records_but_not_transaction_markers(kafka_config, unique) -> None:
    topic = f"gap{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 2)])
    fill(kafka_config, topic, {0: 3})
    tx = producer(kafka_config, **{"transactional.id": f"tx{unique}"})
    tx.init_transactions(15)
    tx.begin_transaction()
    tx.produce(topic, value=b"aborted", partition=1)
    assert tx.flush(15) == 0  # written, then aborted: unreadable for read_committed
    tx.abort_transaction(15)
    _, high = partition_ends(kafka_config, topic)
    assert high[1] >= 2  # the aborted record and its marker take offsets nobody reads
    assert has_readable(kafka_config, topic, {0: 0, 1: 0}, high)
    assert has_readable(kafka_config, topic, {0: 2, 1: high[1]}, high)
    assert not has_readable(kafka_config, topic, {0: 3, 1: 0}, high)  # partition 1 holds nothing readable
    assert not has_readable(kafka_config, topic, {0: 3, 1: high[1]}, high)


def test_offsets_for_time_finds_the_first_record_at_or_after_it(kafka_config, unique) -> None:
    topic = f"time{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 2)])
    p = producer(kafka_config)
    for i in range(4):
        p.produce(topic, value=b"x", partition=0, timestamp=1_000_000 + i * 1000)
    assert p.flush(15) == 0
    _, high = partition_ends(kafka_config, topic)
    assert offsets_for_time(kafka_config, topic, high, 1_002_000) == {0: 2, 1: 0}
    assert offsets_for_time(kafka_config, topic, high, 9_000_000) == {0: 4, 1: 0}  # none after: the end

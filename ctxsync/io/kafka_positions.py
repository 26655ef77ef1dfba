"""Where a consumer group stands in a topic, and whether anything readable is left before a target.

A Kafka run of a job stops once its input is processed. Flink's Kafka source commits its offsets to the
consumer group when a checkpoint completes (and the exactly-once sink commits its transactions then
too), so committed offsets at or past the input's end mean every input record's outputs are committed.
An offset short of the end can still be "done": transaction markers and aborted records take offsets that
no read_committed reader ever returns, so the gap is checked for readable records instead.
"""
from __future__ import annotations

import time
from typing import Any

from ctxsync.errors import RuntimeFailure
from ctxsync.io.kafka_io import nominal_group_refused, refuse_unauthorized, retried

Offsets = dict[int, int]  # partition -> offset
# COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: a fresh broker creates
# __consumer_offsets on the first group request and answers these until it is loaded, a failover moves the
# coordinator; librdkafka hands them to the caller of committed()/commit()
COORDINATOR_MOVING = (14, 15, 16)


def _consumer(client_config: dict[str, Any], group: str, **extra: Any) -> Any:
    from confluent_kafka import Consumer

    return Consumer({**client_config, "group.id": group, "enable.auto.commit": False,
                     "isolation.level": "read_committed", **extra})


def partition_ends(client_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> tuple[Offsets, Offsets]:
    """(low, high) watermarks per partition of `topic`; KeyError if the topic does not exist, KafkaException
    if the user may not describe it."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(client_config, "ctxsync-watermarks")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        refuse_unauthorized(metadata.error, topic)  # a topic the user may not describe is not a missing one
        if metadata.error is not None:
            raise KeyError(f"topic {topic}: {metadata.error}")
        low, high = {}, {}
        for p in metadata.partitions:
            low[p], high[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        return low, high
    finally:
        consumer.close()


def committed_offsets(client_config: dict[str, Any], group: str, topic: str, partitions: list[int],
                      timeout_s: float = 10.0) -> Offsets:
    """The group's committed offset per partition; -1 where it has none."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(client_config, group)
    try:
        got = retried(lambda: consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s),
                      timeout_s, COORDINATOR_MOVING)
        return {tp.partition: (tp.offset if tp.offset >= 0 else -1) for tp in got}
    finally:
        consumer.close()


def offsets_for_time(client_config: dict[str, Any], topic: str, high: Offsets, timestamp_ms: int,
                     timeout_s: float = 10.0) -> Offsets:
    """Per partition, the first offset at or after `timestamp_ms` (the partition's end if none is)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(client_config, "ctxsync-watermarks")
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, timestamp_ms) for p in high], timeout=timeout_s)
        return {tp.partition: tp.offset if tp.offset >= 0 else high[tp.partition] for tp in found}
    finally:
        consumer.close()


def commit_offsets(client_config: dict[str, Any], group: str, topic: str, offsets: Offsets) -> None:
    """Set the group's committed offsets (the group must have no active members, as for a Flink job's)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(client_config, group)
    try:
        retried(lambda: consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                                        asynchronous=False), 10.0, COORDINATOR_MOVING)
    finally:
        consumer.close()


def has_readable(client_config: dict[str, Any], topic: str, starts: Offsets, ends: Offsets,
                 timeout_s: float = 10.0) -> bool:
    """Whether a read_committed reader gets any record in [start, end) of some partition."""
    from confluent_kafka import TopicPartition

    pending = {p: end for p, end in ends.items() if starts.get(p, 0) < end}
    if not pending:
        return False
    consumer = _consumer(client_config, "ctxsync-gap-check", **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, max(starts.get(p, 0), 0)) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"could not read {topic} partitions {sorted(pending)} to their end in {timeout_s}s")
            for message in consumer.consume(100, timeout=0.2):
                p, error = message.partition(), message.error()
                if error is not None:
                    if nominal_group_refused(error):
                        continue
                    if error.code() != error._PARTITION_EOF:
                        raise RuntimeFailure(f"reading {topic}/{p}: {error}")
                    pending.pop(p, None)
                elif p in pending:
                    if message.offset() < pending[p]:
                        return True
                    pending.pop(p)
        return False
    finally:
        consumer.close()

"""Kafka helpers shared by `ctxsync replay`, the connectors and the tests (confluent-kafka).

Keys are partitioned with murmur2 exactly like Java producers (and Flink's KafkaSink), so a userId lands
in the same partition whichever client wrote it, and one user's events stay in order.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ctxsync.errors import RuntimeFailure

T = TypeVar("T")

EVENTS, VIEWS, HISTORY, VIOLATIONS, DLQ = (
    "context.events", "context.views", "context.history", "context.violations", "context.dlq",
)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a Java producer's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# The largest record the job writes to its topics (views, history, dead letters of events up to
# max_event_bytes, whose JSON escaping can grow them several times). Topics the job creates take it
# (`max.message.bytes`); existing ones must allow it too, or the broker refuses such a record.
MAX_RECORD_BYTES = 16 * 2**20
RECORD_LIMIT = (("max.message.bytes", str(MAX_RECORD_BYTES + 2**10)),)  # + the batch header


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    config: tuple[tuple[str, str], ...] = ()


def ensure_topics(client_config: dict[str, Any], specs: list[TopicSpec], timeout_s: float = 15.0) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are), and return once every
    partition of the new ones has a leader that answers."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config)
    existing = admin.list_topics(timeout=timeout_s).topics
    # replication -1: the cluster's default.replication.factor (1 on the dev broker, 3 on a real cluster)
    new = [NewTopic(s.name, s.partitions, -1, config=dict(s.config)) for s in specs if s.name not in existing]
    if not new:
        return
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result()
        except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
            if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_until_led(client_config, [t.topic for t in new], timeout_s)


def _wait_until_led(client_config: dict[str, Any], topics: list[str], timeout_s: float) -> None:
    """Kafka creates a topic's partitions asynchronously: for a moment after CreateTopics returns, their
    leader is unknown and a ListOffsets or Produce gets NOT_LEADER_FOR_PARTITION. Ask each partition for its
    end offsets until it answers."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({**client_config, "group.id": "ctxsync-watermarks", "enable.auto.commit": False,
                         "logger": RDKAFKA_LOG})
    deadline = time.monotonic() + timeout_s
    try:
        for topic in topics:
            while True:
                try:
                    metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
                    if metadata.error is None and metadata.partitions and \
                            all(p.leader >= 0 for p in metadata.partitions.values()):
                        for p in metadata.partitions:
                            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                        break
                except KafkaException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeFailure(f"Kafka topic {topic} has no partition leader {timeout_s:.0f}s after "
                                         "its creation")
                time.sleep(0.1)
    finally:
        consumer.close()


# librdkafka's own log lines (connection retries) go to Python logging, not straight onto the user's stderr:
# shown where logging is configured (`ctxsync connect`), silent in one-shot commands.
RDKAFKA_LOG = logging.getLogger("ctxsync.librdkafka")
RDKAFKA_LOG.addHandler(logging.NullHandler())


def producer(client_config: dict[str, Any], **extra: Any) -> Any:
    """A confluent-kafka Producer partitioning keys like Java clients (murmur2), idempotent, lz4."""
    from confluent_kafka import Producer

    config = {"partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 20,
              "compression.type": "lz4", "batch.num.messages": 10_000, "logger": RDKAFKA_LOG,
              **client_config, **extra}
    return Producer(config)


# librdkafka reports a refused login or an untrusted certificate to the error callback only, and retries it
# forever; the metadata call just times out as "transport failure".
REFUSED = ("_AUTHENTICATION", "_SSL")


def check_reachable(client_config: dict[str, Any], timeout_s: float = 10.0) -> None:
    """Fail fast, in one line, when no broker answers or when the login is refused (wrong password, wrong CA:
    raised as the KafkaException librdkafka reported, ctxsync/errors.py words it): librdkafka itself would
    retry forever."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    bootstrap = client_config.get("bootstrap.servers", "?")
    reported: list[Any] = []
    # its log would say the same as the one line, again and again (`ctxsync connect` shows librdkafka's log)
    admin = AdminClient({**client_config, "logger": RDKAFKA_LOG, "log_level": 0, "error_cb": reported.append})
    refused_codes = {getattr(KafkaError, name) for name in REFUSED}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=max(min(1.0, deadline - time.monotonic()), 0.1))
            return
        except KafkaException as exc:
            admin.poll(0)  # serves the error callback
            refused = next((error for error in reported if error.code() in refused_codes), None)
            if refused is not None:
                raise KafkaException(refused) from None
            if time.monotonic() >= deadline:
                raise RuntimeFailure(f"cannot reach Kafka at {bootstrap}: {exc.args[0].str() if exc.args else exc}",
                                     "is it running? `ctxsync dev up` starts the local one") from exc


def refuse_unauthorized(error: Any, topic: str) -> None:
    """Raise a topic's KafkaError that is a missing ACL (TOPIC_/GROUP_/..._AUTHORIZATION_FAILED), naming the
    topic: one the user may not describe looks like an empty or missing one otherwise."""
    from confluent_kafka import KafkaError, KafkaException

    if error is not None and error.name().endswith("_AUTHORIZATION_FAILED"):
        raise KafkaException(KafkaError(error.code(), f"topic {topic}: {error.str()}"))


def check_topics_authorized(client_config: dict[str, Any], topics: list[str], timeout_s: float = 10.0) -> None:
    """Raise for the first topic the user may not describe: a full metadata listing leaves such topics out,
    so a caller that looks for its topics there would call them missing."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**client_config, "logger": RDKAFKA_LOG})
    for topic in topics:
        refuse_unauthorized(admin.list_topics(topic, timeout=timeout_s).topics[topic].error, topic)


def nominal_group_refused(error: Any) -> bool:
    """An assign()-only consumer's GROUP_AUTHORIZATION_FAILED: confluent-kafka requires a group.id, librdkafka
    looks up its coordinator, and a user without Describe on that group gets this error among the records; the
    reads themselves need no group, so it is not a reason to stop (nor to grant ctxsync's helper groups)."""
    return error.code() == error.GROUP_AUTHORIZATION_FAILED


def read_topic(client_config: dict[str, Any], topic: str, timeout_s: float = 10.0,
               read_committed: bool = True, starts: dict[int, int] | None = None) -> Iterator[Any]:
    """Every record of a topic from the beginning (or, with `starts`, from those offsets of those
    partitions only) to its current end (assign(), no group join)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config, "group.id": "ctxsync-reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                         "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        refuse_unauthorized(metadata.error, topic)
        parts = []
        for p in metadata.partitions:
            if starts is not None and p not in starts:
                continue
            low, high = retried(lambda: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s),
                                timeout_s)
            low = low if starts is None else max(low, starts[p])
            if high > low:
                parts.append(TopicPartition(topic, p, low))
        if not parts:
            return
        consumer.assign(parts)
        pending = {tp.partition for tp in parts}
        last = time.monotonic()
        while pending:
            batch = consumer.consume(10_000, timeout=0.2)  # returns early only when 10,000 arrived
            if not batch:
                if time.monotonic() - last > timeout_s:
                    raise RuntimeFailure(f"no progress reading {topic} for {timeout_s}s (partitions {sorted(pending)})")
                continue
            last = time.monotonic()
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == error._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    if nominal_group_refused(error):
                        continue
                    raise RuntimeFailure(f"reading {topic}: {error}")
                yield message
    finally:
        consumer.close()


def retried(call: Callable[[], T], timeout_s: float, also: tuple[int, ...] = ()) -> T:
    """`call()`, again while Kafka answers with a retriable error (e.g. NOT_LEADER_FOR_PARTITION while a
    partition's leadership moves; librdkafka hands it to the caller of get_watermark_offsets) or one of the
    error codes `also` names (librdkafka does not call every passing state retriable)."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            passing = error is not None and (error.retriable() or error.code() in also)
            if not passing or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def topic_ends(client_config: dict[str, Any], topics: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Sum of the high watermarks of each topic's partitions (0 for a missing topic)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_config, "group.id": "ctxsync-watermarks", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics
        ends = {}
        for topic in topics:
            partitions = metadata[topic].partitions if topic in metadata else {}
            ends[topic] = sum(retried(lambda: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                                             timeout=timeout_s), timeout_s)[1]
                              for p in partitions)
        return ends
    finally:
        consumer.close()

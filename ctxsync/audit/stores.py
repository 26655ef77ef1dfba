"""Where audit entries live: a Kafka topic of one partition (Kafka profiles) or an append-only file (file
profiles). Both append under mutual exclusion, so two operators appending at once never fork the chain:
the file store holds an exclusive flock while it reads the last line and appends; the Kafka store writes
through a transactional producer whose transactional.id is the same for every writer of the topic, so a
second writer fences the first (whose commit then fails, and which retries on top of the new tail).
"""
from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ctxsync.audit.entries import GENESIS, Stored, digest, parse
from ctxsync.errors import RuntimeFailure

# (seq, prev hash) of the next entry -> its stored bytes
MakeEntry = Callable[[int, str], bytes]


class Store(Protocol):
    def read(self) -> list[Stored]: ...

    def append(self, make: MakeEntry) -> bytes: ...


def _next_after(last: Stored | None, where: str) -> tuple[int, str]:
    if last is None:
        return 1, GENESIS
    try:
        return parse(last)["seq"] + 1, digest(last.data)
    except ValueError as exc:
        raise RuntimeFailure(f"the last record of the audit log ({where}, {last.position}) is not an entry: {exc}",
                             "run `ctxsync audit verify`; nothing is appended to a damaged log") from None


class FileStore:
    """One entry per line, appended with O_APPEND under an exclusive flock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[Stored]:
        if not self.path.exists():
            return []
        return [Stored(f"{self.path}:{n}", line) for n, line in enumerate(self.path.read_bytes().splitlines(), 1)]

    def append(self, make: MakeEntry) -> bytes:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self.read()
            entry = make(*_next_after(records[-1] if records else None, str(self.path)))
            os.write(fd, entry + b"\n")
            os.fsync(fd)
            return entry
        finally:
            os.close(fd)  # releases the lock


class KafkaStore:
    """Partition 0 of `topic`, keyed by sequence number; read_committed, written in transactions."""

    ATTEMPTS = 8

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.config, self.topic = config, topic

    def read(self) -> list[Stored]:
        low, high = self._ends()
        return self._read_from(low, high)

    def append(self, make: MakeEntry) -> bytes:
        from confluent_kafka import KafkaException

        from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer

        ensure_topics(self.config, [TopicSpec(self.topic, 1, (("retention.ms", "-1"), ("cleanup.policy", "delete")))])
        for attempt in range(1, self.ATTEMPTS + 1):
            writer = producer(self.config, **{"transactional.id": f"ctxsync-audit.{self.topic}", "acks": "all",
                                              "linger.ms": 0})
            try:
                writer.init_transactions(30)  # fences any other writer of this log
                seq, prev = _next_after(self._last(), self.topic)
                entry = make(seq, prev)
                writer.begin_transaction()
                writer.produce(self.topic, key=str(seq).encode(), value=entry, partition=0)
                writer.commit_transaction(30)
                return entry
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                fenced = error is not None and (error.fatal() or error.txn_requires_abort() or error.retriable())
                if not fenced or attempt == self.ATTEMPTS:
                    raise RuntimeFailure(f"cannot append to the audit log {self.topic}: {error.str() if error else exc}",
                                         "the action was not run; check the brokers and retry") from None
                # two writers that retry in step fence each other every time (Kafka's coordinator bumps the
                # epoch on each init): a random pause lets one of them finish its transaction first
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")

    def _ends(self) -> tuple[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self.config, "group.id": "ctxsync-audit", "enable.auto.commit": False})
        try:
            topics = consumer.list_topics(self.topic, timeout=10).topics
            meta = topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return 0, 0
            if len(meta.partitions) != 1:
                raise RuntimeFailure(f"the audit topic {self.topic} has {len(meta.partitions)} partitions",
                                     "an audit log needs exactly one (its order is the chain's order)")
            return consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
        finally:
            consumer.close()

    def _last(self) -> Stored | None:
        """The last committed entry: read a window at the end (commit markers take offsets too)."""
        low, high = self._ends()
        start = max(low, high - 64)
        records = self._read_from(start, high) or (self._read_from(low, high) if start > low else [])
        return records[-1] if records else None

    def _read_from(self, start: int, high: int) -> list[Stored]:
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        if high <= start:
            return []
        consumer = Consumer({**self.config, "group.id": "ctxsync-audit", "enable.auto.commit": False,
                             "isolation.level": "read_committed", "enable.partition.eof": True})
        found: list[Stored] = []
        try:
            consumer.assign([TopicPartition(self.topic, 0, start)])
            while True:
                message = consumer.poll(10)
                if message is None:
                    raise RuntimeFailure(f"reading the audit log {self.topic} timed out", "check the brokers")
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        return found
                    raise RuntimeFailure(f"reading the audit log {self.topic}: {message.error()}")
                found.append(Stored(f"{self.topic}/0/{message.offset()}", message.value() or b""))
        finally:
            consumer.close()

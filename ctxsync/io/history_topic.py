"""The `context.history` topic read back: each accepted event's record with where and when it was written.

The Kafka timestamp of a history record is when the job wrote it, in the same transaction as the views it
produced: it tells what a model could have read at a moment, which the compacted views topic (old versions
compacted away) cannot.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from ctxsync.errors import RuntimeFailure
from ctxsync.io.kafka_io import read_topic
from ctxsync.io.kafka_positions import Offsets, partition_ends


class HistoryRecord(NamedTuple):
    origin: str        # topic/partition/offset
    raw: bytes         # the history record (JSON)
    written_ms: int    # Kafka record timestamp: when the job wrote it


def topic_ends(config: dict[str, Any], topic: str) -> tuple[Offsets, Offsets]:
    """(low, high) per partition; a missing topic is a one-line error pointing at the job."""
    try:
        return partition_ends(config, topic)
    except KeyError as exc:
        raise RuntimeFailure(f"topic {topic} does not exist",
                             "the job creates it: run it first, e.g. `ctxsync run context-sync --profile local`") from exc


def read_history(config: dict[str, Any], topic: str, high: Offsets | None = None) -> Iterator[HistoryRecord]:
    """Every committed record of the history topic, up to `high` (default: its ends now)."""
    if high is None:
        high = topic_ends(config, topic)[1]
    for message in read_topic(config, topic):
        if message.offset() < high.get(message.partition(), 0):
            yield HistoryRecord(f"{topic}/{message.partition()}/{message.offset()}", message.value() or b"",
                                message.timestamp()[1])

"""Exactly-once checks on a real Kafka log: what a read_committed consumer sees against what the log holds."""
from __future__ import annotations

from ctxsync.io.kafka_io import read_topic


def assert_once_and_count_aborted(config: dict[str, str], topic: str) -> int:
    """Assert a read_committed consumer sees no record twice; return how many records the log holds beyond
    those, i.e. records of aborted transactions (a crashed job's open ones, re-written after its restore):
    they are in the log, a read_uncommitted consumer reads them, a read_committed one never does."""
    committed = [m.value() for m in read_topic(config, topic)]
    assert len(committed) == len(set(committed)), f"{topic}: a read_committed consumer saw a record twice"
    everything = sum(1 for _ in read_topic(config, topic, read_committed=False))
    assert everything >= len(committed), f"{topic}: read_uncommitted saw fewer records than read_committed"
    return everything - len(committed)

"""A job's outputs on real Kafka topics without starting Flink: the reference runner's lines routed into
Kafka records exactly as the Kafka job routes them (pipelines.flink.kafka.route_lines), then the real
Redis connector. Fast stand-in for `ctxsync run --profile local` in tests of what reads those stores."""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ctxsync.config import Profile, resolve_job
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.connectors import REDIS_GROUP, redis_connector
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer, read_topic
from pipelines.flink.kafka import KafkaJobSpec, ingest_record, route_lines
from pipelines.reference import read_lines, run_reference
from transforms.records import untag
from transforms.settings import SyncSettings
from transforms.sync import sync_step
from tests.helpers import ROOT


@dataclass
class Published:
    """Topics and Redis prefix of one test, and a jobs.yaml whose local profile points at them."""

    prefix: str
    config: dict[str, Any]
    jobs: Path
    partitions: int = 3
    states: dict[str, Any] = field(default_factory=dict)   # per-user state of `process_input`
    consumed: dict[int, int] = field(default_factory=dict)  # input partition -> next offset to process

    @property
    def spec(self) -> KafkaJobSpec:
        return KafkaJobSpec(self.config["bootstrap.servers"], input_topic=f"{self.prefix}.events",
                            views_topic=f"{self.prefix}.views", history_topic=f"{self.prefix}.history",
                            violations_topic=f"{self.prefix}.violations", dlq_topic=f"{self.prefix}.dlq")

    def create_topics(self) -> None:
        s = self.spec
        ensure_topics(self.config, [TopicSpec(s.input_topic, self.partitions),
                                    TopicSpec(s.views_topic, self.partitions, (("cleanup.policy", "compact"),)),
                                    TopicSpec(s.history_topic, self.partitions),
                                    TopicSpec(s.violations_topic, self.partitions), TopicSpec(s.dlq_topic, 1)])

    def publish(self, events: Path, lines: range | None = None, stamp: Callable[[int], int] | None = None) -> int:
        """Route the reference run of `events` to the output topics, only the outputs of the input lines in
        `lines` if given (a later range continues an earlier one), with Kafka timestamps `stamp(line)` if
        given (else the producer's clock); returns the number of records."""
        job = resolve_job(self.jobs, "context-sync", [])
        outputs = run_reference(read_lines(events), str(events), job.settings.to_settings())
        out = producer(self.config)
        count = 0
        for seq, group in itertools.groupby(outputs, key=lambda line: untag(line)[1]):
            if lines is not None and seq not in lines:
                continue
            for key, value, topic, headers in route_lines(list(group), self.spec):
                when = {"timestamp": stamp(seq)} if stamp is not None else {}
                out.produce(topic, key=key, value=value, headers=list(headers.items()), **when)
                count += 1
        assert out.flush(30) == 0
        return count

    def process_input(self, settings: SyncSettings) -> int:
        """Process the input topic's new records like the Kafka job's operator (ingest_record, sync_step,
        route_lines), keeping per-user state between calls; returns the number of records processed."""
        out = producer(self.config)
        count = 0
        for message in read_topic(self.config, self.spec.input_topic):
            partition, offset = message.partition(), message.offset()
            if offset < self.consumed.get(partition, 0):
                continue
            self.consumed[partition] = offset + 1
            key, value = ingest_record(message.value(), self.spec.input_topic, partition, offset, settings,
                                       False, None, int(time.time() * 1000))
            if isinstance(value, str):
                lines = [value]
            else:
                self.states[key], lines = sync_step(self.states.get(key), value, settings)
            for record_key, record, topic, headers in route_lines(lines, self.spec):
                out.produce(topic, key=record_key, value=record, headers=list(headers.items()))
            count += 1
        assert out.flush(30) == 0
        return count

    def connect_redis(self, redis_client: Any, stream_maxlen: int = 10_000) -> None:
        """Run the Redis connector until it has read the views topic to its end."""
        s = self.spec
        redis_connector(self.config, redis_client, "ctx", stream_maxlen, s.views_topic, s.dlq_topic,
                        REDIS_GROUP).run(until_caught_up=True, idle_timeout_s=30)


def published(prefix: str, servers: Any, tmp_path: Path, monkeypatch: Any) -> Published:
    """Topics of this test created, and a jobs.yaml (the shipped job, local profile on those topics)."""
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    data = job.profiles["local"].model_dump(mode="json")
    data["source"]["topic"] = f"{prefix}.events"
    data["sink"]["topics"] = {k: f"{prefix}.{k}" for k in ("views", "history", "violations", "dlq")}
    profiles = {**job.profiles, "local": Profile.model_validate(data)}
    jobs = tmp_path / "jobs.yaml"
    body = job.model_copy(update={"profiles": profiles}).model_dump(mode="json")
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": body}}))
    result = Published(prefix, config, jobs)
    result.create_topics()
    return result


def events_file(path: Path, events: int = 600, users: int = 25, seed: int = 11) -> Path:
    """A generated stream with every anomaly kind (invalid, duplicate, late, conflict, delete)."""
    path.write_bytes(b"".join(line + b"\n" for line in generate_lines(
        GeneratorOptions(events=events, users=users, seed=seed, invalid_rate=0.05))))
    return path

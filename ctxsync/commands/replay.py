"""`ctxsync replay`: produce a JSON Lines file of context events to Kafka, keyed by userId; or replay a
time range of a Kafka topic (`--from-topic`), e.g. the input topic into a new profile's input.

Keys are partitioned with murmur2 like Java producers, so each user's events land in one partition in file
order: the order context-sync needs. Lines that are not valid events are sent too (with no key, as a
real producer's garbage would be) unless a filter is given: the job must dead-letter them. Events of users
erased after they happened (`ctxsync erase`) are not sent: a replay never brings an erased user back.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ctxsync.commands.arg_types import iso_time_ms
from ctxsync.config import ConfigError, resolve_job, resolve_profile
from ctxsync.errors import RuntimeFailure, UsageError, check_input_file
from ctxsync.progress import Progress
from pipelines.reference import read_lines
from transforms.timestamps import format_iso_ms, parse_iso_ms

EPILOG = """\
examples:
  ctxsync replay sample_data/context_events.jsonl                      # to the `ctxsync dev` Kafka
  ctxsync replay events.jsonl --rate 500 --user user-00042              # one user, 500 events/s
  ctxsync replay events.jsonl --from 2026-11-24T08:00:00Z --to 2026-11-24T09:00:00Z --model risk-model
  ctxsync replay events.jsonl --format avro --profile prod              # Confluent wire format, CTXSYNC_* env
  ctxsync replay events.jsonl --event-type context.deleted              # only deletions
  ctxsync replay --from-topic context.events --from 2026-12-02T08:00:00Z --to 2026-12-02T09:00:00Z \\
      --topic staging.events                                            # an hour of the input topic, by arrival
"""


@dataclass
class ReplayFilter:
    since_ms: int | None = None
    until_ms: int | None = None
    user: str | None = None
    model: str | None = None
    event_type: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.since_ms, self.until_ms, self.user, self.model, self.event_type))

    def accepts(self, doc: Any) -> bool:
        """Filters keep only events that have the fields they test (a broken line matches no filter)."""
        try:
            if self.user is not None and doc["contextDelta"]["userId"] != self.user:
                return False
            if self.model is not None and doc["source"]["modelId"] != self.model:
                return False
            if self.event_type is not None and doc["eventType"] != self.event_type:
                return False
            if self.since_ms is not None or self.until_ms is not None:
                ts = parse_iso_ms(doc["timestamp"])
                if ts is None or (self.since_ms is not None and ts < self.since_ms) or \
                        (self.until_ms is not None and ts >= self.until_ms):
                    return False
        except (KeyError, TypeError):
            return False
        return True


@dataclass
class ReplayStats:
    sent: int = 0
    skipped: int = 0
    erased: int = 0  # events of users erased after them (ctxsync/io/erase_record.py): never sent
    seconds: float = 0.0


Erased = Callable[[Any], bool]  # a parsed event -> does it belong to a user erased after it happened?


def _user_key(doc: Any) -> bytes | None:
    try:
        user = doc["contextDelta"]["userId"]
    except (KeyError, TypeError):
        return None
    return user.encode() if isinstance(user, str) and user else None


def replay(path: Path, producer: Any, topic: str, flt: ReplayFilter, rate: float | None = None,
           avro_schema_id: int | None = None, progress: Progress | None = None,
           erased: Erased | None = None, avro_schema: Any = None) -> ReplayStats:
    """Produce every (matching) non-blank line of `path`, except events of erased users from before their
    erase; returns counts. Blocks until all are delivered."""
    from ctxsync.io import avro
    from ctxsync.io.kafka_io import refuse_unauthorized

    stats = ReplayStats()
    start = time.monotonic()
    failures: list[Any] = []  # KafkaErrors

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    for _, raw in read_lines(path):  # split exactly like the embedded runner reads files
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if flt.active and not flt.accepts(doc):
            stats.skipped += 1
            continue
        if erased is not None and erased(doc):
            stats.erased += 1
            continue
        value = raw
        if avro_schema_id is not None and isinstance(doc, dict):
            try:
                value = avro.encode(doc, avro_schema_id, avro_schema)
            except ValueError:
                value = raw  # no Avro form: sent as is, the job dead-letters it
        while True:
            try:
                producer.produce(topic, key=_user_key(doc), value=value, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
        stats.sent += 1
        if rate:
            ahead = stats.sent / rate - (time.monotonic() - start)
            if ahead > 0:
                producer.poll(0)
                time.sleep(ahead)
        if stats.sent % 5000 == 0:
            producer.poll(0)
            if progress is not None:
                progress.update(stats.sent, "events sent")
    remaining = producer.flush(60)
    stats.seconds = time.monotonic() - start
    if remaining or failures:
        refuse_unauthorized(failures[0] if failures else None, topic)  # a missing ACL, worded by errors.py
        raise RuntimeFailure(f"{remaining + len(failures)} events not delivered: {[str(f) for f in failures[:3]]}")
    return stats


def replay_topic(config: dict[str, Any], source: str, out: Any, topic: str, flt: ReplayFilter,
                 since_ms: int | None = None, until_ms: int | None = None,
                 progress: Progress | None = None, erased: Erased | None = None) -> ReplayStats:
    """Re-produce the records of `source` that arrived in [since_ms, until_ms) (Kafka timestamps) and pass
    `flt` (user, model, event type) to `topic`, with their keys and bytes, in each partition's order, and a
    header `ctxsync-replayed-from` (source/partition/offset). Reads up to the ends seen at the start."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from ctxsync.io.history_topic import topic_ends
    from ctxsync.io.kafka_positions import offsets_for_time

    stats = ReplayStats()
    start = time.monotonic()
    low, high = topic_ends(config, source)
    first = offsets_for_time(config, source, high, since_ms) if since_ms is not None else low
    pending = {p for p in high if first[p] < high[p]}
    consumer = Consumer({**config, "group.id": "ctxsync-replay", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(source, p, first[p]) for p in sorted(pending)])
        while pending:
            for message in consumer.consume(5000, timeout=1.0):
                error, partition = message.error(), message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise RuntimeFailure(f"reading {source}: {error}")
                if partition not in pending or message.offset() >= high[partition]:
                    pending.discard(partition)
                    continue
                arrived = message.timestamp()[1]
                if until_ms is not None and arrived >= until_ms:
                    pending.discard(partition)  # a partition's timestamps grow with its offsets
                    continue
                try:
                    doc = orjson.loads(message.value() or b"")
                except orjson.JSONDecodeError:
                    doc = None
                if (flt.user or flt.model or flt.event_type) and not flt.accepts(doc):
                    stats.skipped += 1
                    continue
                if erased is not None and erased(doc):
                    stats.erased += 1
                    continue
                headers = list(message.headers() or []) + \
                    [("ctxsync-replayed-from", f"{source}/{partition}/{message.offset()}".encode())]
                _produce(out, topic, message.key(), message.value(), headers)
                stats.sent += 1
                if progress is not None and stats.sent % 5000 == 0:
                    progress.update(stats.sent, "records sent")
    finally:
        consumer.close()
    remaining = out.flush(60)
    stats.seconds = time.monotonic() - start
    if remaining:
        raise RuntimeFailure(f"{remaining} records not delivered")
    return stats


def _produce(out: Any, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    while True:
        try:
            out.produce(topic, key=key, value=value, headers=headers)
            return
        except BufferError:  # local queue full: let deliveries drain
            out.poll(0.05)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="produce a JSON Lines file of events to Kafka (keyed by userId)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, nargs="?", metavar="FILE",
                   help="JSON Lines file of context events (not with --from-topic)")
    p.add_argument("--from-topic", metavar="TOPIC",
                   help="replay this Kafka topic instead of a file; --from/--to then select by arrival "
                        "(Kafka record timestamps), not by event timestamp")
    p.add_argument("--topic", help="topic (default: the profile's source topic, context.events)")
    p.add_argument("--rate", type=float, metavar="EV_PER_S", help="events per second (default: as fast as possible)")
    p.add_argument("--from", dest="since", type=iso_time_ms, metavar="T1", help="only events with timestamp >= T1")
    p.add_argument("--to", dest="until", type=iso_time_ms, metavar="T2", help="only events with timestamp < T2")
    p.add_argument("--user", help="only this userId")
    p.add_argument("--model", help="only events from this source.modelId")
    p.add_argument("--event-type", choices=("context.updated", "context.deleted"), help="only events of this type")
    p.add_argument("--format", choices=("json", "avro"), default="json",
                   help="json (the lines as they are) or avro (Confluent wire format)")
    p.add_argument("--schema-id", type=int, default=1,
                   help="Confluent schema id for --format avro without a registry (default 1)")
    p.add_argument("--schema", type=Path, metavar="AVSC",
                   help="--format avro: the writer's schema (default: schemas/context_event.avsc); with a registry "
                        "(--registry, or the profile source's `registry`) it is registered under <topic>-value "
                        "and its id frames every record")
    p.add_argument("--registry", metavar="URL", help="schema registry API URL (Confluent-compatible)")
    p.add_argument("--profile", default="local", help="profile whose Kafka to use (default: local)")
    p.add_argument("--job", default="context-sync", help="job whose profile to use (default: context-sync)")
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"), help="jobs file (default: jobs.yaml)")
    p.set_defaults(func=run)


def _audit_details(args: argparse.Namespace, topic: str) -> dict[str, str]:
    """What was replayed where; a --user filter is recorded as set, not by its userId (personal data)."""
    details = {"job": args.job, "topic": topic,
               "source": str(args.file) if args.file is not None else f"topic {args.from_topic}"}
    for name in ("since", "until"):
        if getattr(args, name) is not None:
            details[name] = format_iso_ms(getattr(args, name))
    for name in ("model", "event_type", "rate", "format"):
        if getattr(args, name) is not None:
            details[name] = str(getattr(args, name))
    if args.user is not None:
        details["user"] = "(one user)"
    return details


def _erased_note(stats: ReplayStats) -> str:
    return f", {stats.erased:,} of erased users not sent" if stats.erased else ""


def _avro_writer(args: argparse.Namespace, source: Any, topic: str) -> tuple[int, Any]:
    """(schema id, parsed writer schema) for --format avro: the registry's id for --schema when there is a
    registry (refused there if incompatible), else --schema-id."""
    import fastavro

    from ctxsync.io.avro import registered_writer
    from ctxsync.io.schema_registry import SchemaRegistry, subject_for

    url = args.registry or source.registry
    if url:
        return registered_writer(SchemaRegistry(url), subject_for(topic), args.schema)
    if args.schema is None:
        return args.schema_id, None
    return args.schema_id, fastavro.parse_schema(orjson.loads(args.schema.read_bytes()))


def run(args: argparse.Namespace) -> int:
    from ctxsync.audit import record_action
    from ctxsync.io.clients import redis_client
    from ctxsync.io.erase_record import EraseRecord, erased_events
    from ctxsync.io.clients import kafka_config, kafka_sink, kafka_source
    from ctxsync.io.kafka_io import TopicSpec, check_reachable, ensure_topics, producer
    from ctxsync.servers import running_endpoints

    if (args.file is None) == (args.from_topic is None):
        raise UsageError("give either FILE or --from-topic TOPIC", "see `ctxsync replay --help`")
    if args.file is not None:
        check_input_file(args.file)
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate must be > 0")
    job = resolve_job(args.jobs, args.job, [])
    profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
    source, sink = kafka_source(profile), kafka_sink(profile)
    topic = args.topic or source.topic
    config = {"bootstrap.servers": source.bootstrap, **source.security.client_config()}
    check_reachable(config)
    record_action(args.profile, "replay", _audit_details(args, topic), job=job, actor=args.actor)
    if sink.create_topics:
        ensure_topics(kafka_config(profile), [TopicSpec(topic, sink.partitions)])
    progress = Progress(f"replay -> {topic}")
    erased = erased_events(EraseRecord(redis_client(profile.redis), profile.redis.prefix)) if profile.redis else None
    if args.from_topic is not None:
        flt = ReplayFilter(None, None, args.user, args.model, args.event_type)
        stats = replay_topic(config, args.from_topic, producer(config), topic, flt, args.since, args.until, progress,
                             erased)
        progress.done(f"{stats.sent:,} records of {args.from_topic} sent ({stats.skipped:,} filtered out"
                      f"{_erased_note(stats)})")
        return 0
    flt = ReplayFilter(args.since, args.until, args.user, args.model, args.event_type)
    schema_id, schema = _avro_writer(args, source, topic) if args.format == "avro" else (None, None)
    stats = replay(args.file, producer(config), topic, flt, args.rate, schema_id, progress, erased, avro_schema=schema)
    rate = stats.sent / stats.seconds if stats.seconds else 0.0
    progress.done(f"{stats.sent:,} events sent ({stats.skipped:,} filtered out{_erased_note(stats)}), "
                  f"{rate:,.0f} events/s")
    return 0

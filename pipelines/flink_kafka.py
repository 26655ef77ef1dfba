"""The PyFlink job of the `local` and `prod` profiles: Kafka in -> context-sync -> Kafka out.

    Kafka `context.events` (Table API source: raw bytes + partition/offset metadata)
      -> batches per bucket of users and window, built in Java (pipelines/flink_batches.py)
      -> key_by(bucket) -> SyncKafkaBuckets (the embedded job's operator, pipelines/flink_sync.py, with
         Avro -> JSON if configured, origin = topic/partition/offset, outputs routed to Kafka records)
      -> Kafka sink (Table API: topic and headers are writable metadata; exactly-once with transactions)

Avro payloads cannot be read in SQL, so an Avro input is batched in a single bucket.

Why the Table API connector around a DataStream core: PyFlink's DataStream KafkaSource only hands over
the value (no partition/offset for `origin`), and its KafkaSink cannot set record headers (the dead-letter
topic carries reason/stage/origin headers). The Kafka table connector exposes both as metadata columns;
`raw` format keeps payload bytes exact, so non-UTF-8 input reaches the dead-letter topic intact.

Redis and Elasticsearch are written by the idempotent connectors (ctxsync/io/connectors.py) from the
view/history/violation topics: PyFlink has no connector for them here, and Python functions get no
checkpoint hook to flush a buffered sink.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ctxsync.io.avro import avro_payload_to_json
from pipelines.flink_batches import TIME_COLUMNS_SQL, batches
from transforms.batching import Batching
from transforms.ingest import ingest
from transforms.records import CONFLICT, DEAD_LETTER, HISTORY, ORDERING, VIEW, untag
from transforms.settings import SyncSettings

STARTS = ("committed", "earliest", "latest", "timestamp")


@dataclass(frozen=True)
class KafkaJobSpec:
    """Everything the Kafka job needs, resolved from a jobs.yaml profile (no secrets in repr)."""

    bootstrap: str
    input_topic: str = "context.events"
    group_id: str = "ctxsync-context-sync"
    start: str = "earliest"
    start_timestamp_ms: int | None = None
    bounded: bool = True
    format: str = "json"                  # json or avro (Confluent wire format)
    schema_id: int | None = None
    views_topic: str = "context.views"
    history_topic: str = "context.history"
    violations_topic: str = "context.violations"
    dlq_topic: str = "context.dlq"
    delivery: str = "exactly-once"        # exactly-once, at-least-once or none
    transactional_id_prefix: str = "ctxsync-context-sync"
    checkpoint_interval_ms: int = 2000
    client_properties: dict[str, str] = field(default_factory=dict, repr=False)  # security.* etc.


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def _client_options(spec: KafkaJobSpec) -> dict[str, str]:
    options = {"properties.bootstrap.servers": spec.bootstrap}
    options.update({f"properties.{k}": v for k, v in spec.client_properties.items()})
    return options


def source_ddl(spec: KafkaJobSpec, table: str = "ctx_events") -> str:
    """The input table: exact payload bytes plus the record's coordinates."""
    options = {"connector": "kafka", "topic": spec.input_topic, **_client_options(spec),
               "properties.group.id": spec.group_id, "properties.isolation.level": "read_committed",
               "format": "raw"}
    if spec.start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, got {spec.start!r}")
    if spec.start == "timestamp":
        if spec.start_timestamp_ms is None:
            raise ValueError("start: timestamp needs start_timestamp")
        options["scan.startup.mode"] = "timestamp"
        options["scan.startup.timestamp-millis"] = str(spec.start_timestamp_ms)
    elif spec.start == "committed":  # the group's offsets (committed at checkpoints), else earliest
        options["scan.startup.mode"] = "group-offsets"
        options["properties.auto.offset.reset"] = "earliest"
    else:
        options["scan.startup.mode"] = f"{spec.start}-offset"
    if spec.bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return (f"CREATE TEMPORARY TABLE {table} (\n  payload BYTES,\n  `topic` STRING METADATA VIRTUAL,\n"
            f"  `partition` INT METADATA VIRTUAL,\n  `offset` BIGINT METADATA VIRTUAL,\n  {TIME_COLUMNS_SQL}\n"
            f") WITH (\n  {_with(options)}\n)")


def sink_ddl(spec: KafkaJobSpec, table: str = "ctx_outputs") -> str:
    """The output table: the topic of each record is metadata, so one (transactional) sink serves all."""
    topics = ";".join((spec.views_topic, spec.history_topic, spec.violations_topic, spec.dlq_topic))
    options = {"connector": "kafka", "topic": topics, **_client_options(spec), "key.format": "raw", "key.fields": "k",
               "value.format": "raw", "value.fields-include": "EXCEPT_KEY", "sink.partitioner": "default",
               "sink.delivery-guarantee": spec.delivery}
    if spec.delivery == "exactly-once":
        options["sink.transactional-id-prefix"] = spec.transactional_id_prefix
        options["properties.transaction.timeout.ms"] = "600000"
    return (f"CREATE TEMPORARY TABLE {table} (\n  k BYTES,\n  v BYTES,\n  `topic` STRING METADATA,\n"
            f"  `headers` MAP<STRING, BYTES> METADATA\n) WITH (\n  {_with(options)}\n)")


def ingest_record(payload: bytes | None, topic: str, partition: int, offset: int, settings: SyncSettings,
                  avro: bool, schema_id: int | None, now_ms: int) -> tuple[str, Any]:
    """(userId, Event) or (DEAD_LETTER_KEY, dead-letter line) for one Kafka record; seq = offset."""
    raw = payload or b""
    decoded = avro_payload_to_json(raw, schema_id) if avro else raw
    return ingest(decoded, offset, f"{topic}/{partition}/{offset}", now_ms, settings,
                  original=raw if decoded is not raw else None)


def route_lines(lines: list[str], spec: KafkaJobSpec) -> list[tuple[bytes | None, bytes, str, dict[str, bytes]]]:
    """Kafka records (key, value, topic, headers) for the tagged output lines of one event.

    Views are keyed by aggregate key (the compacted changelog) and carry the TTL of the event that produced
    them (`ttl`, from propagationRules.ttl) for the Redis connector. Duplicates produce no record.
    """
    ttl = None
    records: list[tuple[bytes | None, bytes, str, dict[str, bytes]]] = []
    parsed = [untag(line) for line in lines]
    if any(kind == VIEW for kind, _, _, _ in parsed):
        for kind, _, _, text in parsed:
            if kind == HISTORY:
                ttl = (orjson.loads(text).get("propagationRules") or {}).get("ttl")
    for kind, _, aux, text in parsed:
        if kind == VIEW:
            value = text[:-1] + f',"ttl":{int(ttl)}}}' if ttl else text
            records.append((orjson.loads(aux).encode(), value.encode(), spec.views_topic, {}))
        elif kind == HISTORY:
            records.append((None, text.encode(), spec.history_topic, {}))
        elif kind in (ORDERING, CONFLICT):
            records.append((None, text.encode(), spec.violations_topic, {}))
        elif kind == DEAD_LETTER:
            record = orjson.loads(text)
            headers = {name: str(record[name]).encode() for name in ("reason", "stage", "origin")}
            records.append((record["origin"].encode(), text.encode(), spec.dlq_topic, headers))
    return records


def build_kafka_job(env: Any, spec: KafkaJobSpec, settings: SyncSettings, parallelism: int,
                    batching: Batching, cache_size: int = 10_000) -> Any:
    """Add the job to `env` (a StreamExecutionEnvironment with the Kafka jars); returns the statement set."""
    from pyflink.common import Row, Types
    from pyflink.table import StreamTableEnvironment

    from pipelines.flink_sync import SyncBuckets, keyed_batches

    avro, schema_id, topic = spec.format == "avro", spec.schema_id, spec.input_topic
    if avro:
        batching = replace(batching, buckets=1)

    class SyncKafkaBuckets(SyncBuckets):
        def origin(self, seq: int, part: int) -> str:
            return f"{topic}/{part}/{seq}"

        def parse(self, seq: int, part: int, payload: str, now_ms: int):
            return ingest_record(payload.encode("latin-1"), topic, part, seq, self.settings, avro, schema_id,
                                 now_ms)

        def emit(self, outputs: list[list[str]]):
            for lines in outputs:
                for key, value, out_topic, headers in route_lines(lines, spec):
                    yield Row(key, value, out_topic, headers)

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl(spec))
    t_env.execute_sql(sink_ddl(spec))
    table = batches(t_env, "ctx_events", "COALESCE(DECODE(payload, 'ISO-8859-1'), '')",
                    "DECODE(payload, 'UTF-8')", "`offset`", "`partition`", batching, spec.bounded)
    bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    out_type = Types.ROW_NAMED(["k", "v", "topic", "headers"],
                               [bytes_type, bytes_type, Types.STRING(), Types.MAP(Types.STRING(), bytes_type)])
    records = (keyed_batches(t_env, table)
               .process(SyncKafkaBuckets(settings, batching, cache_size), output_type=out_type)
               .set_parallelism(parallelism).name("sync by bucket"))
    statements = t_env.create_statement_set()
    statements.add_insert("ctx_outputs", t_env.from_data_stream(records))
    statements.attach_as_datastream()
    return statements


def job_spec(profile: Any, job_name: str) -> KafkaJobSpec:
    """The Kafka job of a resolved profile (ctxsync.config.resolve_profile)."""
    from ctxsync.io.clients import kafka_sink, kafka_source
    from transforms.timestamps import parse_iso_ms

    source, sink = kafka_source(profile), kafka_sink(profile)
    start_ms = parse_iso_ms(source.start_timestamp) if source.start_timestamp else None
    return KafkaJobSpec(
        bootstrap=source.bootstrap, input_topic=source.topic, group_id=source.group_id, start=source.start,
        start_timestamp_ms=start_ms, bounded=source.bounded, format=source.format, schema_id=source.schema_id,
        views_topic=sink.topics.views, history_topic=sink.topics.history,
        violations_topic=sink.topics.violations, dlq_topic=sink.topics.dlq, delivery=sink.delivery,
        transactional_id_prefix=f"{sink.transactional_id_prefix}-{job_name}",
        checkpoint_interval_ms=sink.checkpoint_interval,
        client_properties=source.security.java_properties(),
    )

"""The PyFlink job of the `local` and `prod` profiles: Kafka in -> context-sync -> Kafka out.

    Kafka `context.events` (Table API source: raw bytes + partition/offset metadata)
      -> batches per bucket of users and window, built in Java (pipelines/flink/batches.py)
      -> key_by(bucket) -> SyncKafkaBuckets (the embedded job's operator, pipelines/flink/sync.py, with
         Avro -> JSON if configured, origin = topic/partition/offset; one string of Kafka-form output lines
         per batch back to Java)
      -> split into records and routed in SQL (topic, key, headers: `route_sql`)
      -> Kafka sink (Table API: topic and headers are writable metadata; exactly-once with transactions)

Avro payloads cannot be read in SQL, so an Avro input is batched in a single bucket.

Why the Table API connector around a DataStream core: PyFlink's DataStream KafkaSource only hands over
the value (no partition/offset for `origin`), and its KafkaSink cannot set record headers (the dead-letter
topic carries reason/stage/origin headers). The Kafka table connector exposes both as metadata columns;
`raw` format keeps payload bytes exact, so non-UTF-8 input reaches the dead-letter topic intact.

Views reach Redis from the operator itself, each batch in one pipelined round trip before its records go
to Kafka (ctxsync/io/view_writer.py: idempotent by version, so no transaction and no second hop).
Elasticsearch is written by its idempotent connector (ctxsync/io/connectors.py) from the history and
violation topics: analysts are not latency-bound, and Python functions get no checkpoint hook to flush a
buffered sink.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ctxsync.io.avro import job_resolver, reader_schema
from ctxsync.io.kafka_io import MAX_RECORD_BYTES
from ctxsync.io.view_writer import JobViewWriter, views_endpoint
from pipelines.flink.batches import TIME_COLUMNS_SQL, batches
from transforms.avro_wire import Resolver, ingest_avro
from transforms.batching import Batching
from transforms.ingest import dead_letter_line, ingest
from transforms.records import DEAD_LETTER, DUPLICATE, HISTORY, TOMBSTONE, VIEW, untag
from transforms.settings import SyncSettings
from transforms.validate import dead_letter

STARTS = ("committed", "earliest", "latest", "timestamp")
DLQ_HEADERS = ("reason", "stage", "origin")  # dead-letter fields repeated as record headers


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
    registry: str | None = None           # Avro: the schema registry that resolves each record's writer schema
    views_topic: str = "context.views"
    history_topic: str = "context.history"
    violations_topic: str = "context.violations"
    dlq_topic: str = "context.dlq"
    delivery: str = "exactly-once"        # exactly-once, at-least-once or none
    transactional_id_prefix: str = "ctxsync-context-sync"
    checkpoint_interval_ms: int = 2000
    client_properties: dict[str, str] = field(default_factory=dict, repr=False)  # security.* etc.
    sink_bootstrap: str | None = None     # the output cluster, when it is not the input's
    sink_client_properties: dict[str, str] | None = field(default=None, repr=False)  # default: client_properties
    views_redis: str | None = field(default=None, repr=False)  # Redis the job writes views to (JSON endpoint)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def _client_options(bootstrap: str, properties: dict[str, str]) -> dict[str, str]:
    options = {"properties.bootstrap.servers": bootstrap}
    options.update({f"properties.{k}": v for k, v in properties.items()})
    return options


def source_ddl(spec: KafkaJobSpec, table: str = "ctx_events") -> str:
    """The input table: exact payload bytes plus the record's coordinates."""
    options = {"connector": "kafka", "topic": spec.input_topic, **_client_options(spec.bootstrap, spec.client_properties),
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
    """The output table: the topic of each record is metadata, so one (transactional) sink serves all. It
    talks to the sink's cluster with the sink's security, which may differ from the source's."""
    topics = ";".join((spec.views_topic, spec.history_topic, spec.violations_topic, spec.dlq_topic))
    client = _client_options(spec.sink_bootstrap or spec.bootstrap,
                             spec.client_properties if spec.sink_client_properties is None else spec.sink_client_properties)
    options = {"connector": "kafka", "topic": topics, **client, "key.format": "raw", "key.fields": "k",
               "value.format": "raw", "value.fields-include": "EXCEPT_KEY", "sink.partitioner": "default",
               "sink.delivery-guarantee": spec.delivery,
               "properties.max.request.size": str(MAX_RECORD_BYTES + 2**20)}  # a record + request overhead
    if spec.delivery == "exactly-once":
        options["sink.transactional-id-prefix"] = spec.transactional_id_prefix
        options["properties.transaction.timeout.ms"] = "600000"
    return (f"CREATE TEMPORARY TABLE {table} (\n  k BYTES,\n  v BYTES,\n  `topic` STRING METADATA,\n"
            f"  `headers` MAP<STRING, BYTES> METADATA\n) WITH (\n  {_with(options)}\n)")


def ingest_record(payload: bytes | None, topic: str, partition: int, offset: int, settings: SyncSettings,
                  avro: bool, schema_id: int | None, now_ms: int,
                  resolve: Resolver | None = None) -> tuple[str, Any]:
    """(userId, Event) or (DEAD_LETTER_KEY, dead-letter line) for one Kafka record; seq = offset. An Avro
    record's writer schema comes from `resolve` (default: the shipped schema, for `schema_id` if set)."""
    raw = payload or b""
    origin = f"{topic}/{partition}/{offset}"
    if avro:
        return ingest_avro(raw, offset, origin, now_ms, settings, resolve or job_resolver(None, schema_id),
                           reader_schema())
    return ingest(raw, offset, origin, now_ms, settings)


def kafka_lines(lines: list[str], ttl: int | None) -> list[str]:
    """One event's tagged output lines in their Kafka form, `<kind letter><record value>`: what the Python
    side hands back to Java, where `route_sql` turns each into a record. Duplicates produce no record; a
    view carries the event's TTL (`propagationRules.ttl`, seconds) for the Redis connector."""
    out: list[str] = []
    for line in lines:
        kind = line[0]
        if kind == DUPLICATE:
            continue
        text = line.split("\t", 2)[2]
        if kind == VIEW and ttl:
            text = text[:-1] + f',"ttl":{ttl}}}'
        out.append(kind + text)
    return out


def bounded_records(records: list[str], payload: str, seq: int, part: int, topic: str) -> list[str]:
    """The records as they are, except one larger than a Kafka record may be (MAX_RECORD_BYTES), which
    would make the sink fail the job at that record after every restart: it becomes a dead letter
    (`output_too_large`, stage route) carrying the event's payload. Views still reach Redis (the job writes
    them itself); the changelog misses that version."""
    out = records
    for i, record in enumerate(records):
        if len(record) * 4 <= MAX_RECORD_BYTES:  # at most 4 UTF-8 bytes a character: surely small enough
            continue
        size = len(record.encode("utf-8", "surrogatepass"))
        if size > MAX_RECORD_BYTES:
            if out is records:
                out = list(records)
            kind = {VIEW: "view", TOMBSTONE: "tombstone", HISTORY: "history", DEAD_LETTER: "dead letter"}.get(
                record[0], "violation")
            line = dead_letter_line(dead_letter(
                payload.encode("latin-1"), seq, f"{topic}/{part}/{seq}", "output_too_large",
                f"the event's {kind} record is {size:,} bytes, over the {MAX_RECORD_BYTES:,} a Kafka record of "
                "the job's topics may hold", "route"))
            out[i] = DEAD_LETTER + untag(line)[3]
    return out


def route_sql(spec: KafkaJobSpec, batches: str, sink: str = "ctx_outputs") -> str:
    """The Java half of the routing: every line of a batch's output string (`kafka_lines`, joined by
    newlines, which JSON text never holds raw) becomes one record of the sink table. Views are keyed by
    their aggregate key (the compacted changelog; a tombstone line is a null value there), dead letters by
    origin and given reason, stage and origin headers; history and violations are unkeyed."""
    def field(name: str) -> str:
        return f"ENCODE(JSON_VALUE(v, '$.{name}'), 'UTF-8')"

    headers = ", ".join(f"'{name}', {field(name)}" for name in DLQ_HEADERS)
    topic = (f"CASE kind WHEN 'V' THEN {_quote(spec.views_topic)} WHEN 'T' THEN {_quote(spec.views_topic)} WHEN 'H' THEN {_quote(spec.history_topic)} "
             f"WHEN 'D' THEN {_quote(spec.dlq_topic)} ELSE {_quote(spec.violations_topic)} END")
    return (f"INSERT INTO {sink} SELECT "
            f"CASE kind WHEN 'V' THEN {field('key')} WHEN 'T' THEN {field('key')} WHEN 'D' THEN {field('origin')} END, "
            f"CASE kind WHEN 'T' THEN CAST(NULL AS BYTES) ELSE ENCODE(v, 'UTF-8') END, "
            f"CAST({topic} AS STRING), CAST(CASE kind WHEN 'D' THEN MAP[{headers}] END AS MAP<STRING, BYTES>) "
            f"FROM (SELECT SUBSTRING(line FROM 1 FOR 1) AS kind, SUBSTRING(line FROM 2) AS v "
            f"FROM {batches} CROSS JOIN UNNEST(SPLIT(batch, CHR(10))) AS lines(line))")


def route_lines(lines: list[str], spec: KafkaJobSpec) -> list[tuple[bytes | None, bytes | None, str, dict[str, bytes]]]:
    """The Kafka records (key, value, topic, headers) the job writes for one event's tagged output lines:
    `kafka_lines` and `route_sql` done in Python, for tests and benchmarks that publish without Flink.
    The TTL is read from the history record (the engine has the Event at hand)."""
    ttl = None
    for line in lines:
        if line[0] == HISTORY:
            ttl = (orjson.loads(untag(line)[3]).get("propagationRules") or {}).get("ttl")
    records: list[tuple[bytes | None, bytes | None, str, dict[str, bytes]]] = []
    for line in kafka_lines(lines, int(ttl) if ttl else None):
        kind, value = line[0], line[1:]
        if kind == TOMBSTONE:
            records.append((orjson.loads(value)["key"].encode(), None, spec.views_topic, {}))
        elif kind == VIEW:
            records.append((orjson.loads(value)["key"].encode(), value.encode(), spec.views_topic, {}))
        elif kind == HISTORY:
            records.append((None, value.encode(), spec.history_topic, {}))
        elif kind == DEAD_LETTER:
            record = orjson.loads(value)
            headers = {name: record[name].encode() for name in DLQ_HEADERS}
            records.append((record["origin"].encode(), value.encode(), spec.dlq_topic, headers))
        else:
            records.append((None, value.encode(), spec.violations_topic, {}))
    return records


def build_kafka_job(env: Any, spec: KafkaJobSpec, settings: SyncSettings, parallelism: int,
                    batching: Batching, cache_size: int = 10_000) -> Any:
    """Add the job to `env` (a StreamExecutionEnvironment with the Kafka jars); returns the statement set."""
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    from pipelines.flink.sync import SyncBuckets, join_batch, keyed_batches

    avro, schema_id, topic, registry = spec.format == "avro", spec.schema_id, spec.input_topic, spec.registry
    if avro:
        batching = replace(batching, buckets=1)

    class SyncKafkaBuckets(SyncBuckets):
        controls = True
        input = ("", 0, 0)  # (payload, seq, part) of the record being routed; set by parse (an erase command's
        # tombstones are routed without a parse: they are far below any record limit)
        resolve: Resolver | None = None  # Avro writer schemas by id, made on the worker (a cache per operator)

        def origin(self, seq: int, part: int) -> str:
            return f"{topic}/{part}/{seq}"

        def parse(self, seq: int, part: int, payload: str, now_ms: int):
            self.input = (payload, seq, part)  # what an oversized output's dead letter carries (route)
            if avro and self.resolve is None:
                self.resolve = job_resolver(registry, schema_id)
            return ingest_record(payload.encode("latin-1"), topic, part, seq, self.settings, avro, schema_id,
                                 now_ms, self.resolve)

        def route(self, lines: list[str], ttl: int | None) -> list[str]:
            return bounded_records(kafka_lines(lines, ttl), *self.input, topic)

        def emit(self, outputs: list[list[str]]):
            yield join_batch(outputs)

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl(spec))
    t_env.execute_sql(sink_ddl(spec))
    table = batches(t_env, "ctx_events", "COALESCE(DECODE(payload, 'ISO-8859-1'), '')",
                    "DECODE(payload, 'UTF-8')", "`offset`", "`partition`", batching, spec.bounded)
    views = JobViewWriter(spec.views_redis) if spec.views_redis else None
    outputs = (keyed_batches(t_env, table, batching.buckets)
               .process(SyncKafkaBuckets(settings, batching, cache_size, views), output_type=Types.STRING())
               .set_parallelism(parallelism).name("sync by bucket"))
    t_env.create_temporary_view("ctx_output_batches", t_env.from_data_stream(outputs).alias("batch"))
    statements = t_env.create_statement_set()
    statements.add_insert_sql(route_sql(spec, "ctx_output_batches"))
    statements.attach_as_datastream()
    return statements


def job_spec(profile: Any, job_name: str) -> KafkaJobSpec:
    """The Kafka job of a resolved profile (ctxsync.config.resolve_profile)."""
    from ctxsync.io.clients import kafka_sink, kafka_source, sink_cluster
    from transforms.timestamps import parse_iso_ms

    source, sink = kafka_source(profile), kafka_sink(profile)
    sink_bootstrap, sink_security = sink_cluster(profile)
    start_ms = parse_iso_ms(source.start_timestamp) if source.start_timestamp else None
    return KafkaJobSpec(
        bootstrap=source.bootstrap, input_topic=source.topic, group_id=source.group_id, start=source.start,
        start_timestamp_ms=start_ms, bounded=source.bounded, format=source.format, schema_id=source.schema_id,
        registry=source.registry,
        views_topic=sink.topics.views, history_topic=sink.topics.history,
        violations_topic=sink.topics.violations, dlq_topic=sink.topics.dlq, delivery=sink.delivery,
        transactional_id_prefix=f"{sink.transactional_id_prefix}-{job_name}",
        checkpoint_interval_ms=sink.checkpoint_interval,
        client_properties=source.security.java_properties(), sink_bootstrap=sink_bootstrap,
        sink_client_properties=sink_security.java_properties(), views_redis=views_endpoint(profile),
    )

"""Versioned context events against a real schema registry (Apicurio Registry on loopback, ctxsync/servers.py):
`ctxsync schema register|list|check` with the registry's own compatibility verdicts, readers that resolve each
record's writer schema by its id, and v1 and v2 producers interleaved on one topic read by the Flink job."""
from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest

from ctxsync.cli import main
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io import avro
from ctxsync.io.kafka_io import producer
from ctxsync.io.schema_registry import Incompatible, SchemaRegistry
from ctxsync.schemas import SCHEMA_DIR
from ctxsync.servers import LocalServers
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.test_e2e_local import prepare, reference, run_local, state, with_source
from transforms.avro_wire import frame
from transforms.records import untag
from transforms.settings import SyncSettings

pytestmark = pytest.mark.servers

V1 = SCHEMA_DIR / "versions" / "context_event.v1.avsc"
V2 = SCHEMA_DIR / "context_event.avsc"
VIEW_JSON = SCHEMA_DIR / "json" / "context_view.schema.json"
HISTORY_JSON = SCHEMA_DIR / "json" / "context_history.schema.json"


@pytest.fixture
def registry(servers: LocalServers) -> SchemaRegistry:  # noqa: F811
    """The registry, started in the session's server set (stopped with it)."""
    servers.start("registry")
    return SchemaRegistry(servers.endpoints()["registry"])


def variant(tmp_path: Path, name: str, drop: str | None = None, add: dict | None = None) -> Path:
    """The current schema with one top-level field dropped and/or one added."""
    schema = json.loads(V2.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop] + ([add] if add else [])
    path = tmp_path / f"{name}.avsc"
    path.write_text(json.dumps(schema))
    return path


def cli(capsys, *args: str) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main(["schema", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_register_list_and_check_follow_the_registry(registry, unique, tmp_path, capsys):
    url, subject = registry.url, f"ctx{unique}.events-value"
    flags = ("--registry", url, "--topic", f"ctx{unique}.events")
    assert registry.compatibility(subject) == "BACKWARD"  # the default the dev server stores

    first = f"{subject}: {V1} is BACKWARD compatible (no version yet)"
    assert cli(capsys, "check", str(V1), *flags)[:2] == (0, [first])
    assert cli(capsys, "register", str(V1), *flags)[:2] == (0, [f"{subject}: {V1} is version 1, id "
                                                              f"{registry.version(subject, 1)['id']}"])
    code, out, _ = cli(capsys, "check", str(V2), *flags)
    assert (code, out) == (0, [f"{subject}: {V2} is BACKWARD compatible (version 1)"])
    assert cli(capsys, "register", str(V2), *flags)[0] == 0
    v2_id = registry.version(subject, 2)["id"]
    assert cli(capsys, "register", str(V2), *flags)[1] == [f"{subject}: {V2} is version 2, id {v2_id}"]  # again: same
    code, out, _ = cli(capsys, "list", "--registry", url, "--subject", subject)
    assert out == [f"{subject}  BACKWARD  versions: 1 (id {registry.version(subject, 1)['id']}), 2 (id {v2_id})"]

    # a v3 with a new required field cannot read v2's records: refused by check and by register, one line each
    required = variant(tmp_path, "required", add={"name": "severity", "type": "int"})
    code, out, err = cli(capsys, "check", str(required), *flags)
    assert code == 1 and len(out) == 1 and "severity" in out[0] and out[0].startswith(f"{subject}: ")
    assert err.count("\n") == 1 and "not BACKWARD compatible" in err
    code, out, err = cli(capsys, "register", str(required), *flags)
    assert code == 1 and "severity" in out[0] and "refused" in err
    assert registry.versions(subject) == [1, 2]

    # a v3 that deletes a required field is BACKWARD compatible (a new reader skips it) but not FULL: the job's
    # reader, which still needs the field, would dead-letter every v3 record. FULL refuses it.
    deleted = variant(tmp_path, "deleted", drop="eventType")
    assert cli(capsys, "check", str(deleted), *flags)[0] == 0
    assert cli(capsys, "register", str(V2), *flags, "--compatibility", "FULL")[1] == [
        f"{subject}: {V2} is version 2, id {v2_id}"]  # the same version again; the subject's level is now FULL
    assert registry.compatibility(subject) == "FULL"
    code, out, err = cli(capsys, "check", str(deleted), *flags)
    assert code == 1 and [line for line in out if "eventType" in line] and "not FULL compatible" in err
    code, out, _ = cli(capsys, "register", str(deleted), *flags)
    assert code == 1 and any("eventType" in line for line in out)
    with pytest.raises(Incompatible):
        registry.register(subject, deleted.read_text())
    assert registry.versions(subject) == [1, 2]


def test_schema_command_errors_are_one_line(registry, tmp_path, capsys):
    broken = tmp_path / "broken.avsc"
    broken.write_text('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "no-such-type"}]}')
    code, _, err = cli(capsys, "check", str(broken), "--registry", registry.url)
    assert code == 2 and err.count("\n") == 1 and "not an Avro schema" in err
    code, _, err = cli(capsys, "list", "--registry", "http://127.0.0.1:9/apis/ccompat/v7")
    assert code == 1 and err.count("\n") == 1 and "not reachable" in err


def test_readers_resolve_writer_schemas_by_id_and_dead_letter_unknown_ids(registry, unique):
    subject = f"res{unique}.events-value"
    v1_id, v1 = avro.registered_writer(registry, subject, V1)
    v2_id, v2 = avro.registered_writer(registry, subject, V2)
    assert v1_id != v2_id
    event = orjson.loads(next(iter(generate_lines(GeneratorOptions(events=1, users=1, seed=3)))))
    resolve = avro.job_resolver(registry.url)
    from_v1 = avro.decode(avro.encode({**event, "traceId": "t-1"}, v1_id, v1), resolve=resolve)
    assert from_v1 == event  # v1 has no traceId: not written, and the reader's default (null) leaves it out
    traced = {**event, "traceId": "t-1"}
    assert avro.decode(avro.encode(traced, v2_id, v2), resolve=resolve) == traced

    from pipelines.flink.kafka import ingest_record

    unknown = frame(2**31 - 1, avro.encode(event, 0, v2)[5:])
    key, line = ingest_record(unknown, "t", 0, 9, SyncSettings(), True, None, 1_795_000_000_000, resolve)
    record = orjson.loads(untag(line)[3])
    assert key == "" and record["reason"] == "unknown_schema" and record["stage"] == "decode"
    assert base64.b64decode(record["raw"]) == unknown and str(2**31 - 1) in record["detail"]


def user_key(doc: object) -> bytes | None:
    """The record key replay gives an event: its userId (per-user order within a partition)."""
    delta = doc.get("contextDelta") if isinstance(doc, dict) else None
    user = delta.get("userId") if isinstance(delta, dict) else None
    return user.encode() if isinstance(user, str) and user else None


def interleaved(tmp_path: Path) -> tuple[Path, list[tuple[bytes, bool]]]:
    """The oracle's JSON Lines file and, in the same order, (line, written by v2?): every other valid event is
    a v2 producer's, with a traceId (a v2 field; in JSON an extra field, carried along)."""
    lines, out = [], []
    for i, line in enumerate(generate_lines(GeneratorOptions(events=400, users=20, seed=27, invalid_rate=0.05))):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        v2 = isinstance(doc, dict) and i % 2 == 1
        if v2:
            line = orjson.dumps({**doc, "traceId": f"trace-{i}"})
        lines.append(line)
        out.append((line, v2))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path, out


@pytest.mark.flink
def test_v1_and_v2_producers_on_one_topic_give_the_oracle_views(
        servers, registry, redis_client, es_client, unique, monkeypatch, tmp_path):  # noqa: F811
    prefix = f"evo{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    job = with_source(job, format="avro", registry=registry.url)
    events_file, records = interleaved(tmp_path)
    v1_id, v1 = avro.registered_writer(registry, f"{prefix}.events-value", V1)
    v2_id, v2 = avro.registered_writer(registry, f"{prefix}.events-value", V2)
    send = producer(config)
    sent = Counter()
    for line, is_v2 in records:
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        try:
            value = avro.encode(doc, v2_id, v2) if is_v2 else avro.encode(doc, v1_id, v1)
            sent["v2" if is_v2 else "v1"] += 1
        except (ValueError, TypeError):
            value = line  # no Avro form: sent as it is (replay does the same); the job names its fault
        send.produce(f"{prefix}.events", key=user_key(doc), value=value)
    unknown = frame(2**31 - 2, b"\x02")  # an id no registry gave out
    send.produce(f"{prefix}.events", key=b"nobody", value=unknown)
    assert send.flush(30) == 0
    assert sent["v1"] > 100 and sent["v2"] > 100

    out = run_local(job, tmp_path, servers)
    expected = reference(events_file, job)
    assert f"new input records: {expected.summary.read + 1:,}\n" in out
    got = state(servers, redis_client, es_client, prefix)
    want_views = sorted((orjson.loads(text) for _, text in expected.views.values()), key=lambda v: v["key"])
    assert got["views"] == want_views and want_views
    assert got["history"] == expected.summary.accepted
    want_reasons = Counter(orjson.loads(text)["reason"] for _, text in expected.dead_letters)
    want_reasons["unknown_schema"] += 1
    assert Counter(dict(h)["reason"].decode() for _, _, h in got["dlq"]) == want_reasons
    (lost,) = [orjson.loads(v) for _, v, h in got["dlq"] if dict(h)["reason"] == b"unknown_schema"]
    assert base64.b64decode(lost["raw"]) == unknown and lost["stage"] == "decode"
    # the traceIds of v2 records reached history (read into the reader schema, then carried as extra fields)
    view_schema, history_schema = (json.loads(path.read_text()) for path in (VIEW_JSON, HISTORY_JSON))
    for view in got["views"]:  # the job's outputs match their registered JSON Schemas
        jsonschema.validate(view, view_schema)
    for _, text in expected.history:
        jsonschema.validate(orjson.loads(text), history_schema)
    traced = es_client.count(index="context-history-*", query={"exists": {"field": "traceId"}})["count"]
    assert traced == sum(1 for _, text in expected.history if "traceId" in orjson.loads(text))
    assert traced > 50


def test_replay_frames_records_with_the_registry_id_of_its_writer_schema(
        servers, registry, unique, monkeypatch, tmp_path, capsys):  # noqa: F811
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, read_topic
    from tests.helpers import ROOT

    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
    topic, config = f"rp{unique}.events", {"bootstrap.servers": servers.endpoints()["kafka"]}
    ensure_topics(config, [TopicSpec(topic, 1)])
    lines = list(generate_lines(GeneratorOptions(events=20, users=3, seed=5, invalid_rate=0.0)))
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(line + b"\n" for line in lines))
    assert main(["replay", str(events_file), "--topic", topic, "--format", "avro", "--registry", registry.url,
                 "--schema", str(V1), "--jobs", str(ROOT / "jobs.yaml")]) == 0
    v1_id = registry.version(f"{topic}-value", 1)["id"]
    values = [m.value() for m in read_topic(config, topic)]
    assert len(values) == len(lines) and {v[:5] for v in values} == {frame(v1_id, b"")}
    resolve = avro.job_resolver(registry.url)
    assert [avro.decode(v, resolve=resolve) for v in values] == [orjson.loads(line) for line in lines]


def test_output_records_have_json_schemas_the_registry_checks(registry, unique, tmp_path, capsys):
    views, history = f"out{unique}.views", f"out{unique}.history"
    for path, topic in ((VIEW_JSON, views), (HISTORY_JSON, history)):
        code, out, _ = cli(capsys, "register", str(path), "--registry", registry.url, "--topic", topic)
        assert code == 0 and out[0].startswith(f"{topic}-value: {path} is version 1, id ")
        assert registry.version(f"{topic}-value", 1)["schema"] == json.dumps(json.loads(path.read_text()),
                                                                              separators=(",", ":"))
    retyped = json.loads(VIEW_JSON.read_text())
    retyped["properties"]["version"] = {"type": "string"}  # readers that sort by version would break
    changed = tmp_path / "view-v2.schema.json"
    changed.write_text(json.dumps(retyped))
    code, out, err = cli(capsys, "check", str(changed), "--registry", registry.url, "--topic", views)
    assert code == 1 and out == [f"{views}-value: SUBSCHEMA_TYPE_CHANGED at /properties/version"]
    assert cli(capsys, "register", str(changed), "--registry", registry.url, "--topic", views)[0] == 1
    assert registry.versions(f"{views}-value") == [1]

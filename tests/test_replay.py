"""`ctxsync replay`, `ctxsync dev`, the profile config and the Kafka job's pure parts (no Flink here)."""
from __future__ import annotations

import re

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.commands.replay import ReplayFilter, replay
from ctxsync.config import ConfigError, KafkaSecurity, load_jobs, resolve_profile
from ctxsync.io import avro
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, partition_for, producer, read_topic
from ctxsync.servers import LocalServers
from pipelines.flink.kafka import KafkaJobSpec, ingest_record, route_lines, sink_ddl, source_ddl
from pipelines.reference import read_lines
from tests.fixtures_servers import kafka_config, redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT, SAMPLE, SETTINGS, event, raw
from transforms.ingest import DEAD_LETTER_KEY
from transforms.records import untag

SPEC = KafkaJobSpec(bootstrap="127.0.0.1:1")


def sample_docs() -> list[dict]:
    docs = []
    for _, line in read_lines(SAMPLE):
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            docs.append(None)
    return docs


@pytest.mark.servers
def test_replay_keys_by_user_in_file_order_and_filters(kafka_config, unique, tmp_path):
    topic = f"replay-{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 3)])
    stats = replay(SAMPLE, producer(kafka_config), topic, ReplayFilter(), rate=1_000_000)
    records = list(read_topic(kafka_config, topic))
    assert stats.sent == len(records) == 3000
    for message in records:
        if message.key() is not None:
            assert message.partition() == partition_for(message.key(), 3)
            assert orjson.loads(message.value())["contextDelta"]["userId"].encode() == message.key()
    for p in range(3):  # each partition holds its users' events in file order
        want = [line for (_, line), doc in zip(read_lines(SAMPLE), sample_docs()) if isinstance(doc, dict)
                and isinstance(doc.get("contextDelta"), dict) and isinstance(doc["contextDelta"].get("userId"), str)
                and doc["contextDelta"]["userId"] and partition_for(doc["contextDelta"]["userId"].encode(), 3) == p]
        got = [m.value() for m in records if m.partition() == p and m.key() is not None]
        assert got == want

    topic2 = f"replay-f-{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic2, 1)])
    flt = ReplayFilter(since_ms=None, until_ms=None, user="user-00007", model="risk-model")
    stats = replay(SAMPLE, producer(kafka_config), topic2, flt)
    want = [d for d in sample_docs() if isinstance(d, dict) and d.get("source", {}).get("modelId") == "risk-model"
            and d.get("contextDelta", {}).get("userId") == "user-00007"]
    got = [orjson.loads(m.value()) for m in read_topic(kafka_config, topic2)]
    assert stats.sent == len(got) == len(want) > 0 and got == want


@pytest.mark.servers
def test_replay_avro_sends_wire_format_and_invalid_lines_unchanged(kafka_config, unique):
    topic = f"replay-avro-{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 1)])
    replay(SAMPLE, producer(kafka_config), topic, ReplayFilter(), avro_schema_id=3)
    values = [m.value() for m in read_topic(kafka_config, topic)]
    framed = [v for v in values if v[:1] == b"\x00"]
    assert len(values) == 3000 and len(framed) > 2800
    assert all(avro.decode(v, schema_id=3)["eventId"] for v in framed)


def test_time_window_filter_is_half_open():
    flt = ReplayFilter(since_ms=1000, until_ms=2000)
    from transforms.timestamps import format_iso_ms

    assert flt.accepts({"timestamp": format_iso_ms(1000)}) and not flt.accepts({"timestamp": format_iso_ms(2000)})
    assert not flt.accepts(None) and not flt.accepts({"timestamp": "yesterday"})


def test_route_lines_sends_each_kind_to_its_topic_with_keys_headers_and_ttl():
    ev = event(eventId="e9", propagationRules__ttl=600)
    key, parsed = ingest_record(raw(ev), "context.events", 2, 41, SETTINGS, False, None, 1_795_000_000_000)
    from transforms.sync import sync_step

    _, lines = sync_step(None, parsed, SETTINGS)
    records = route_lines(lines, SPEC)
    topics = [r[2] for r in records]
    assert topics == ["context.views", "context.history"] and key == "u1"
    view_key, view_value, _, headers = records[0]
    assert view_key == b"behavioral:u1" and headers == {}
    view = orjson.loads(view_value)
    assert view["ttl"] == 600 and view["version"] == 1
    assert orjson.loads(records[1][1])["eventId"] == "e9"

    dl_key, dl_line = ingest_record(b"\xff not json", "context.events", 0, 7, SETTINGS, False, None, 0)
    [(key, value, topic, headers)] = route_lines([dl_line], SPEC)
    record = orjson.loads(value)
    assert topic == "context.dlq" and key == b"context.events/0/7"
    assert headers == {"reason": b"not_utf8", "stage": record["stage"].encode(), "origin": b"context.events/0/7"}
    assert untag(dl_line)[1] == 7 and record["rawEncoding"] == "base64"


def test_avro_input_is_validated_as_its_json_form_and_garbage_keeps_its_bytes():
    ev = event(eventId="a1")
    key, parsed = ingest_record(avro.encode(ev, 5), "t", 0, 1, SETTINGS, True, 5, 1_795_000_000_000)
    assert key == "u1" and parsed.event_id == "a1"
    _, line = ingest_record(b"\x00\x00\x00\x00\x05garbage", "t", 0, 2, SETTINGS, True, 5, 0)
    record = orjson.loads(untag(line)[3])
    assert record["raw"].encode() == b"\x00\x00\x00\x00\x05garbage" and record["origin"] == "t/0/2"
    _, line = ingest_record(b"\x00\xff\xfe", "t", 0, 3, SETTINGS, True, None, 0)
    assert orjson.loads(untag(line)[3])["rawEncoding"] == "base64"


def test_a_decoded_avro_event_that_breaks_the_contract_dead_letters_its_original_wire_bytes():
    import base64

    wire = avro.encode(event(eventId="late", timestamp="2099-01-01T00:00:00Z"), 5)  # far in the future
    key, line = ingest_record(wire, "t", 1, 9, SETTINGS, True, 5, 1_795_000_000_000)
    record = orjson.loads(untag(line)[3])
    assert key == DEAD_LETTER_KEY and record["reason"] == "future_timestamp"
    raw = base64.b64decode(record["raw"]) if record["rawEncoding"] == "base64" else record["raw"].encode()
    assert raw == wire


def test_ddl_uses_raw_bytes_offsets_metadata_and_transactions():
    src = source_ddl(KafkaJobSpec(bootstrap="b:1", start="timestamp", start_timestamp_ms=5))
    assert "'format' = 'raw'" in src and "`offset` BIGINT METADATA" in src
    assert "'scan.startup.timestamp-millis' = '5'" in src and "'scan.bounded.mode' = 'latest-offset'" in src
    sink = sink_ddl(KafkaJobSpec(bootstrap="b:1", client_properties={"sasl.jaas.config": "x 'y'"}))
    assert "'sink.delivery-guarantee' = 'exactly-once'" in sink and "`headers` MAP<STRING, BYTES> METADATA" in sink
    assert "'properties.sasl.jaas.config' = 'x ''y'''" in sink  # quotes escaped
    assert "x 'y'" not in repr(KafkaJobSpec(bootstrap="b", client_properties={"p": "x 'y'"}))


def test_the_sink_talks_to_its_own_cluster_with_its_own_security(monkeypatch):
    """A profile whose sink names another bootstrap and security: the sink DDL uses them, the source its own."""
    job = load_jobs(ROOT / "jobs.yaml").jobs["context-sync"]
    prod = job.profiles["prod"]
    writer = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="PLAIN", username="writer", password="w-s3cret")
    profile = prod.model_copy(update={"sink": prod.sink.model_copy(update={"bootstrap": "out1:9093",
                                                                           "security": writer})})
    for name, value in (("CTXSYNC_KAFKA_BOOTSTRAP", "in1:9093"), ("CTXSYNC_KAFKA_USERNAME", "reader"),
                        ("CTXSYNC_KAFKA_PASSWORD", "r-s3cret"), ("CTXSYNC_REDIS_URL", "rediss://r:6380/0"),
                        ("CTXSYNC_ES_HOSTS", "https://es:9200")):
        monkeypatch.setenv(name, value)
    from pipelines.flink.kafka import job_spec

    spec = job_spec(resolve_profile(profile, "prod"), "context-sync")
    src, sink = source_ddl(spec), sink_ddl(spec)
    assert "'properties.bootstrap.servers' = 'in1:9093'" in src and "r-s3cret" in src and "w-s3cret" not in src
    assert "'properties.bootstrap.servers' = 'out1:9093'" in sink and "w-s3cret" in sink and "r-s3cret" not in sink
    assert "'properties.security.protocol' = 'SASL_SSL'" in sink
    assert "s3cret" not in repr(spec)


def test_prod_profile_reads_env_and_never_shows_secrets(monkeypatch):
    prod = load_jobs(ROOT / "jobs.yaml").jobs["context-sync"].profiles["prod"]
    with pytest.raises(ConfigError, match="CTXSYNC_KAFKA_BOOTSTRAP"):
        resolve_profile(prod, "prod")
    monkeypatch.setenv("CTXSYNC_KAFKA_BOOTSTRAP", "k1:9093,k2:9093")
    monkeypatch.setenv("CTXSYNC_KAFKA_USERNAME", "svc")
    monkeypatch.setenv("CTXSYNC_KAFKA_PASSWORD", "kafka-s3cret")
    monkeypatch.setenv("CTXSYNC_REDIS_URL", "rediss://redis:6380/0")
    monkeypatch.setenv("CTXSYNC_REDIS_PASSWORD", "redis-s3cret")
    monkeypatch.setenv("CTXSYNC_ES_HOSTS", "https://es1:9200,https://es2:9200")
    monkeypatch.setenv("CTXSYNC_ES_API_KEY", "es-s3cret")
    profile = resolve_profile(prod, "prod")
    assert profile.source.bootstrap == "k1:9093,k2:9093" and profile.elasticsearch.username is None
    text = repr(profile) + str(profile) + str(profile.model_dump())
    assert not any(secret in text for secret in ("kafka-s3cret", "redis-s3cret", "es-s3cret"))
    assert profile.source.security.client_config()["sasl.password"] == "kafka-s3cret"
    from pipelines.flink.kafka import job_spec

    assert "kafka-s3cret" not in repr(job_spec(profile, "context-sync"))


def test_dev_command_up_status_down(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(tmp_path / "dev"))
    try:
        assert main(["dev", "up"]) == 0
        assert main(["dev", "status"]) == 0
        out = capsys.readouterr().out
        assert all(re.search(rf"^{name} +ready ", out, re.M) for name in ("redis", "kafka", "noida")), out
        assert "kafka=127.0.0.1:" in out
    finally:
        assert main(["dev", "down"]) == 0
    assert main(["dev", "status"]) == 1
    assert all(not alive for _, alive, _ in LocalServers.load(tmp_path / "dev").status())


def test_replay_without_dev_servers_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(tmp_path / "none"))
    assert main(["replay", str(SAMPLE), "--jobs", str(ROOT / "jobs.yaml")]) == 2


@pytest.mark.servers
def test_connect_command_moves_views_to_redis_until_caught_up(servers, redis_client, monkeypatch, capsys):
    from ctxsync.io.kafka_io import VIEWS

    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    ensure_topics(config, [TopicSpec(VIEWS, 2)])
    view = {"key": "temporal:cli-user", "category": "temporal", "userId": "cli-user", "version": 4,
            "updatedAt": "2026-11-24T10:00:00.000Z", "attributes": {}, "targetModels": []}
    p = producer(config)
    p.produce(VIEWS, key=view["key"].encode(), value=orjson.dumps(view))
    assert p.flush(10) == 0
    assert main(["connect", "redis", "--until-caught-up", "--profile", "local", "--jobs", str(ROOT / "jobs.yaml")]) == 0
    assert "redis: 1 records, 1 written" in capsys.readouterr().out
    assert main(["view", "cli-user", "--json", "--jobs", str(ROOT / "jobs.yaml")]) == 0
    assert orjson.loads(capsys.readouterr().out) == view


def test_event_type_filter():
    flt = ReplayFilter(event_type="context.deleted")
    assert flt.active and flt.accepts(event(eventType="context.deleted"))
    assert not flt.accepts(event()) and not flt.accepts(None)


@pytest.mark.servers
def test_replay_from_a_topic_by_arrival_time_keeps_keys_order_and_names_the_source(kafka_config, unique, capsys):
    from ctxsync.commands.replay import replay_topic

    source, target = f"rs-{unique}", f"rt-{unique}"
    ensure_topics(kafka_config, [TopicSpec(source, 3), TopicSpec(target, 3)])
    base = 1_700_000_000_000  # past: Kafka 4 refuses records stamped > 1 h ahead (ctxsync/kafka_broker.py)
    out = producer(kafka_config)
    for n in range(60):  # one record a second; every 7th a deletion
        doc = event(eventId=f"e{n}", contextDelta__userId=f"u{n % 5}",
                    eventType="context.deleted" if n % 7 == 0 else "context.updated")
        out.produce(source, key=f"u{n % 5}".encode(), value=orjson.dumps(doc), timestamp=base + n * 1000)
    assert out.flush(10) == 0
    stats = replay_topic(kafka_config, source, producer(kafka_config), target, ReplayFilter(),
                         since_ms=base + 10_000, until_ms=base + 40_000)
    got = list(read_topic(kafka_config, target))
    assert stats.sent == len(got) == 30
    assert sorted(orjson.loads(m.value())["eventId"] for m in got) == sorted(f"e{n}" for n in range(10, 40))
    for m in got:  # keys kept (so partitions and per-user order too), the source record named
        doc = orjson.loads(m.value())
        assert m.key() == doc["contextDelta"]["userId"].encode()
        assert dict(m.headers())["ctxsync-replayed-from"].decode().startswith(f"{source}/")
    per_user = {}
    for m in got:
        per_user.setdefault(m.key(), []).append(int(orjson.loads(m.value())["eventId"][1:]))
    assert all(ids == sorted(ids) for ids in per_user.values())
    deleted = replay_topic(kafka_config, source, producer(kafka_config), f"rd-{unique}",
                           ReplayFilter(event_type="context.deleted"))
    assert (deleted.sent, deleted.skipped) == (9, 51)
    assert main(["replay", "--jobs", str(ROOT / "jobs.yaml")]) == 2
    assert "either FILE or --from-topic" in capsys.readouterr().err

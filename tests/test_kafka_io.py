"""Kafka helpers and the Avro wire format: murmur2 like Java, keyed partitioning, serde round trips."""
from __future__ import annotations

import pytest

from ctxsync.io import avro
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, murmur2, partition_for, producer, read_topic
from tests.fixtures_servers import kafka_config, servers, unique  # noqa: F401
from tests.helpers import SAMPLE, event
from transforms.json_values import loads_strict

def test_murmur2_matches_kafka_java_reference_values():
    # values from Kafka's UtilsTest (org.apache.kafka.common.utils.Utils.murmur2)
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107

def test_avro_wire_format_round_trips_sample_events():
    count = 0
    for line in SAMPLE.read_bytes().splitlines()[:500]:
        try:
            doc = loads_strict(line)
            data = avro.encode(doc, schema_id=7)
        except (ValueError, KeyError, TypeError):
            continue  # invalid events have no Avro form; the validator dead-letters them as JSON
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 7
        back = avro.decode(data, schema_id=7)
        known = {k: v for k, v in doc.items() if k in back}
        assert back == known  # JSON-value equality: 1 == 1.0
        count += 1
    assert count > 400

def test_avro_keeps_absent_previous_apart_from_null_previous():
    with_null = event(contextDelta__updates__segment__previous=None)
    assert avro.decode(avro.encode(with_null))["contextDelta"]["updates"]["segment"]["previous"] is None
    assert "previous" not in avro.decode(avro.encode(event()))["contextDelta"]["updates"]["segment"]

@pytest.mark.parametrize("data", [b"", b"{\"a\":1}", b"\x00\x00\x00\x00\x01\xff\xff", b"\x01" * 10])
def test_non_wire_format_payloads_pass_through_unchanged(data):
    with pytest.raises(avro.WireFormatError):
        avro.decode(data)
    assert avro.avro_payload_to_json(data) == data

def test_wrong_schema_id_is_refused():
    with pytest.raises(avro.WireFormatError, match="schema id 2"):
        avro.decode(avro.encode(event(), schema_id=2), schema_id=1)

@pytest.mark.servers
def test_keyed_produce_lands_where_java_would_put_it(kafka_config, unique):
    topic = f"keys-{unique}"
    ensure_topics(kafka_config, [TopicSpec(topic, 4)])
    p = producer(kafka_config)
    keys = [f"user-{i}".encode() for i in range(200)]
    for key in keys:
        p.produce(topic, key=key, value=b"v")
    assert p.flush(10) == 0
    records = list(read_topic(kafka_config, topic))
    assert len(records) == 200
    assert all(m.partition() == partition_for(m.key(), 4) for m in records)

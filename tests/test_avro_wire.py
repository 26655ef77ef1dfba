"""transforms/avro_wire.py without a registry: writer schemas come from an injected resolver (a dict here), read
into a reader schema with Avro's resolution rules; what cannot be read is a dead letter with its exact bytes."""
from __future__ import annotations

import base64
import io
import json

import fastavro
import orjson
import pytest

from ctxsync.schemas import SCHEMA_DIR
from transforms.avro_form import to_avro
from transforms.avro_wire import UnknownSchema, WireFormatError, decode, frame, ingest_avro
from transforms.model import Event
from transforms.records import untag
from transforms.settings import SyncSettings

V1_RAW = json.loads((SCHEMA_DIR / "versions" / "context_event.v1.avsc").read_text())
V2_RAW = json.loads((SCHEMA_DIR / "context_event.avsc").read_text())
V1, V2 = fastavro.parse_schema(V1_RAW), fastavro.parse_schema(V2_RAW)
NOW = 1_800_000_000_000  # after EVENT (a future timestamp is invalid)
EVENT = {"eventId": "e1", "timestamp": "2026-11-24T10:00:00.000Z", "eventType": "context.updated",
         "source": {"modelId": "m", "instanceId": "i"},
         "contextDelta": {"userId": "u1", "expectedVersion": 3,
                          "updates": {"segment": {"current": "gold", "confidence": 0.9}}}}


def wire(schema_id: int, schema, event: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, to_avro(event))
    return frame(schema_id, buffer.getvalue())


def resolver(schemas: dict):
    def resolve(schema_id: int):
        if schema_id not in schemas:
            raise UnknownSchema(f"schema id {schema_id} is not registered")
        return schemas[schema_id]
    return resolve


RESOLVE = resolver({1: V1, 2: V2})


def test_a_v1_record_read_into_v2_gets_the_defaults_and_a_v2_record_read_into_v1_drops_the_new_fields():
    traced = {**EVENT, "traceId": "t-9", "modelVersion": "2.1"}
    assert decode(wire(1, V1, traced), RESOLVE, V2) == EVENT           # v1 never wrote them: defaults (null)
    assert decode(wire(2, V2, traced), RESOLVE, V2) == traced
    assert decode(wire(2, V2, traced), RESOLVE, V1) == EVENT           # an old reader skips the new fields


def test_a_writer_int_is_promoted_to_the_readers_long():
    narrow = json.loads(json.dumps(V2_RAW).replace('["null", "long"], "default": null}, {"name": "updates"',
                                                   '["null", "int"], "default": null}, {"name": "updates"'))
    assert narrow != V2_RAW  # expectedVersion is an int in this writer
    assert decode(wire(7, fastavro.parse_schema(narrow), EVENT), resolver({7: fastavro.parse_schema(narrow)}),
                  V2) == EVENT


@pytest.mark.parametrize("data, reason", [
    (frame(99, b"\x00"), "unknown_schema"),
    (wire(1, V1, EVENT) + b"\x00", "avro_decode"),     # trailing bytes
    (wire(1, V1, EVENT)[:-3], "avro_decode"),          # cut short
    (b"\x00\x00\x00", "not_avro"),                     # no room for an id
])
def test_unreadable_records_name_their_reason(data, reason):
    with pytest.raises(WireFormatError) as caught:
        decode(data, RESOLVE, V2)
    assert caught.value.reason == reason


def test_ingest_dead_letters_an_unknown_id_with_its_exact_bytes_and_reads_the_rest():
    settings = SyncSettings()
    unknown = frame(99, wire(1, V1, EVENT)[5:])
    key, line = ingest_avro(unknown, 4, "t/0/4", NOW, settings, RESOLVE, V2)
    kind, seq, _, text = untag(line)
    record = orjson.loads(text)
    assert (key, seq, record["origin"]) == ("", 4, "t/0/4")
    assert (record["reason"], record["stage"]) == ("unknown_schema", "decode")
    assert record["rawEncoding"] == "base64" and base64.b64decode(record["raw"]) == unknown
    assert "99" in record["detail"]

    key, event = ingest_avro(wire(2, V2, EVENT), 5, "t/0/5", NOW, settings, RESOLVE, V2)
    assert key == "u1" and isinstance(event, Event)
    key, event = ingest_avro(orjson.dumps(EVENT), 6, "t/0/6", NOW, settings, RESOLVE, V2)  # unframed: as JSON
    assert key == "u1" and isinstance(event, Event)
    key, line = ingest_avro(b"\x01garbage", 7, "t/0/7", NOW, settings, RESOLVE, V2)
    assert key == "" and orjson.loads(untag(line)[3])["reason"] in ("not_utf8", "invalid_json")


def test_without_a_registry_records_of_every_shipped_version_are_read():
    """Before registries the shipped schema was v1 for every id: such records, already in Kafka, still read."""
    from ctxsync.io.avro import decode as shipped_decode, encode

    traced = {**EVENT, "traceId": "t-1"}
    assert shipped_decode(wire(1, V1, traced), schema_id=1) == EVENT
    assert shipped_decode(encode(traced, 1), schema_id=1) == traced
    with pytest.raises(WireFormatError) as caught:
        shipped_decode(encode(traced, 1) + b"\x00\x00\x00", schema_id=1)
    assert caught.value.reason == "avro_decode"
    with pytest.raises(WireFormatError) as caught:
        shipped_decode(encode(traced, 2), schema_id=1)
    assert caught.value.reason == "unknown_schema"

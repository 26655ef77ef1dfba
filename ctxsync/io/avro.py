"""Confluent wire format for context events: magic byte 0, 4-byte big-endian schema id, Avro binary
(schema `schemas/context_event.avsc`; the datum <-> JSON mapping is transforms/avro_form.py).

The job's validator works on JSON, so Avro records are turned into the JSON form of the same event
before validation. A payload that is not valid wire format is passed on unchanged, so the validator
dead-letters it with its original bytes (never dropped). No schema registry is needed here: the writer
schema is the shipped one and its id is configured (default 1).
"""
from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import orjson

from ctxsync.schemas import load_schemas
from transforms.avro_form import from_avro, to_avro

MAGIC = 0


class WireFormatError(ValueError):
    """The bytes are not a Confluent-framed Avro context event."""


def _schema() -> Any:
    return load_schemas()["context_event"]


def encode(event: dict[str, Any], schema_id: int = 1) -> bytes:
    """Confluent wire-format bytes of a JSON context event (ValueError if it has no Avro form)."""
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", MAGIC, schema_id))
    try:
        fastavro.schemaless_writer(buffer, _schema(), to_avro(event))
    except Exception as exc:  # KeyError, TypeError, fastavro's ValueError...: the event breaks the schema
        raise ValueError(f"event has no Avro form: {exc!r}") from exc
    return buffer.getvalue()


def decode(data: bytes, schema_id: int | None = None) -> dict[str, Any]:
    """The JSON form of Confluent wire-format bytes; WireFormatError if they are not one."""
    if len(data) < 5 or data[0] != MAGIC:
        raise WireFormatError("not Confluent wire format (magic byte 0 missing)")
    (found_id,) = struct.unpack(">I", data[1:5])
    if schema_id is not None and found_id != schema_id:
        raise WireFormatError(f"schema id {found_id} is not the configured {schema_id}")
    buffer = io.BytesIO(data[5:])
    try:
        datum = fastavro.schemaless_reader(buffer, _schema(), None)
    except Exception as exc:  # fastavro raises EOFError, UnicodeDecodeError, IndexError... on garbage
        raise WireFormatError(f"Avro decoding failed: {exc}") from exc
    if buffer.tell() != len(data) - 5:
        raise WireFormatError("trailing bytes after the Avro record")
    return from_avro(datum)


def avro_payload_to_json(data: bytes, schema_id: int | None = None) -> bytes:
    """Payload bytes for the validator: the event's JSON if `data` is wire format, else `data` unchanged."""
    try:
        return orjson.dumps(decode(data, schema_id))
    except WireFormatError:
        return data

"""Confluent-framed Avro (magic byte 0, 4-byte big-endian schema id, Avro binary) -> a context event's JSON.

Each record names its writer's schema by id; `resolve` (injected: a registry lookup with a cache, or the one
shipped schema) turns the id into that schema, and fastavro resolves the writer's datum into the reader's
schema (defaults for fields the writer did not have, promotions such as int -> long, fields the reader dropped
are skipped). A record that cannot be read this way raises WireFormatError with a reason code: the job
dead-letters it with its exact bytes (`ingest_avro`).
"""
from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro
import orjson

from transforms.avro_form import from_avro
from transforms.ingest import DEAD_LETTER_KEY, dead_letter_line, ingest
from transforms.model import Event
from transforms.settings import SyncSettings
from transforms.validate import dead_letter

MAGIC = 0
HEADER = struct.Struct(">bI")


class UnknownSchema(LookupError):
    """A resolver has no usable writer schema for an id (its message says why)."""


# schema id -> parsed writer schema, or a tuple of candidates (newest first) when the id does not tell the
# versions apart (the shipped versions, without a registry); raises UnknownSchema
Resolver = Callable[[int], Any]


class WireFormatError(ValueError):
    """The bytes are not a readable Confluent-framed Avro context event; `reason` is the dead letter's code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def frame(schema_id: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, schema_id) + body


def schema_id_of(data: bytes) -> int:
    """The writer's schema id of framed bytes (WireFormatError `not_avro` if they are not framed)."""
    if len(data) < HEADER.size or data[0] != MAGIC:
        raise WireFormatError("not_avro", "not Confluent-framed Avro (magic byte 0 and a schema id missing)")
    return HEADER.unpack_from(data)[1]


def decode(data: bytes, resolve: Resolver, reader_schema: Any) -> dict[str, Any]:
    """The JSON form of framed bytes, read with the writer's schema (by id) into `reader_schema`."""
    schema_id = schema_id_of(data)
    try:
        writer_schema = resolve(schema_id)
    except UnknownSchema as exc:
        raise WireFormatError("unknown_schema", str(exc)) from None
    candidates = writer_schema if isinstance(writer_schema, tuple) else (writer_schema,)
    failure = WireFormatError("avro_decode", "no writer schema")
    for candidate in candidates:  # the first that reads the bytes exactly: an older record runs out of bytes
        try:                      # in a newer version, a newer record leaves bytes over in an older one
            datum = _read_exactly(data, candidate, reader_schema)
            break
        except WireFormatError as exc:
            failure = exc
    else:
        raise WireFormatError("avro_decode", f"{failure} (writer schema id {schema_id})")
    try:
        return from_avro(datum)
    except (KeyError, TypeError, AttributeError) as exc:  # a reader schema without a field the event needs
        raise WireFormatError("avro_decode", f"the reader schema lacks an event field: {exc!r}") from None


def _read_exactly(data: bytes, writer_schema: Any, reader_schema: Any) -> Any:
    buffer = io.BytesIO(data[HEADER.size:])
    try:
        datum = fastavro.schemaless_reader(buffer, writer_schema, reader_schema)
    except Exception as exc:  # EOFError, UnicodeDecodeError, SchemaResolutionError...: fastavro's many ways
        raise WireFormatError("avro_decode", f"not readable with the writer's schema: {exc!r}") from None
    if buffer.tell() != len(data) - HEADER.size:
        raise WireFormatError("avro_decode", "trailing bytes after the Avro record")
    return datum


def ingest_avro(raw: bytes, seq: int, origin: str, now_ms: int, settings: SyncSettings, resolve: Resolver,
                reader_schema: Any) -> tuple[str, Event | str]:
    """transforms.ingest.ingest for an Avro record: its JSON form is validated like any JSON event, and a
    framed record that cannot be decoded is dead-lettered (stage `decode`) with its exact bytes. Bytes without
    the frame go to the validator as they are, which names what is wrong with them (a producer that sent an
    event with no Avro form as JSON gets that event's own reason)."""
    try:
        doc = decode(raw, resolve, reader_schema)
    except WireFormatError as exc:
        if exc.reason == "not_avro":
            return ingest(raw, seq, origin, now_ms, settings)
        return DEAD_LETTER_KEY, dead_letter_line(dead_letter(raw, seq, origin, exc.reason, str(exc), "decode"))
    return ingest(orjson.dumps(doc), seq, origin, now_ms, settings, original=raw)

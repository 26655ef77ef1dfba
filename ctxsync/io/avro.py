"""Confluent wire format for context events: magic byte 0, 4-byte big-endian schema id, Avro binary.

Writers frame with the id the registry gave their schema (`registered_writer`); readers find each record's
writer schema by that id (`CachedResolver` over the registry) and read it into the job's reader schema,
`schemas/context_event.avsc` (transforms/avro_wire.py does the decoding, transforms/avro_form.py maps the datum
to the event's JSON). Without a registry the shipped schema is the writer's for every id, or for the one
configured id (`shipped_resolver`), as before registries: the id then says nothing about the version, so each
shipped version is tried, newest first (records written before v2 existed are v1).
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
import orjson

from ctxsync.io.schema_registry import RegistryNotFound, SchemaRegistry
from ctxsync.schemas import SCHEMA_DIR, load_schemas
from transforms.avro_form import to_avro
from transforms.avro_wire import Resolver, UnknownSchema, WireFormatError, decode as decode_framed, frame

MISS_TTL_S = 10.0  # an unknown id is asked again after this long (it may be registered meanwhile)


def reader_schema() -> Any:
    """The job's reader schema: the current version of the shipped event schema."""
    return load_schemas()["context_event"]


def encode(event: dict[str, Any], schema_id: int = 1, schema: Any = None) -> bytes:
    """Confluent wire-format bytes of a JSON context event written with `schema` (default: the current one);
    ValueError if the event has no Avro form."""
    buffer = io.BytesIO()
    try:
        fastavro.schemaless_writer(buffer, schema or reader_schema(), to_avro(event))
    except Exception as exc:  # KeyError, TypeError, fastavro's ValueError...: the event breaks the schema
        raise ValueError(f"event has no Avro form: {exc!r}") from exc
    return frame(schema_id, buffer.getvalue())


@lru_cache(maxsize=1)
def shipped_writers() -> tuple[Any, ...]:
    """The shipped versions of the event schema, newest first (the current one, then schemas/versions/)."""
    older = sorted((SCHEMA_DIR / "versions").glob("context_event.v*.avsc"),
                   key=lambda path: int(path.stem.rsplit(".v", 1)[1]), reverse=True)
    return (reader_schema(), *(fastavro.parse_schema(json.loads(path.read_text())) for path in older))


def shipped_resolver(schema_id: int | None = None) -> Resolver:
    """No registry: the shipped versions write every id, or only `schema_id` when one is configured."""
    schema = shipped_writers()

    def resolve(found: int) -> Any:
        if schema_id is not None and found != schema_id:
            raise UnknownSchema(f"schema id {found} is not the configured {schema_id}")
        return schema

    return resolve


def decode(data: bytes, schema_id: int | None = None, resolve: Resolver | None = None) -> dict[str, Any]:
    """The JSON form of Confluent wire-format bytes; WireFormatError (with a reason code) if unreadable."""
    return decode_framed(data, resolve or shipped_resolver(schema_id), reader_schema())


def avro_payload_to_json(data: bytes, schema_id: int | None = None) -> bytes:
    """Payload bytes for the validator: the event's JSON if `data` is wire format, else `data` unchanged."""
    try:
        return orjson.dumps(decode(data, schema_id))
    except WireFormatError:
        return data


@dataclass
class CachedResolver:
    """Schema id -> parsed writer schema from the registry, each id asked once (ids are immutable); an unknown id
    is remembered for MISS_TTL_S so a burst of bad records costs one request. Raises UnknownSchema, which the
    decoder turns into a dead letter; an unreachable registry raises RegistryError instead (the job fails and
    restarts: no record is dead-lettered for an outage)."""

    registry: SchemaRegistry
    _found: dict[int, Any] = field(default_factory=dict)
    _missing: dict[int, tuple[float, str]] = field(default_factory=dict)

    def __call__(self, schema_id: int) -> Any:
        found = self._found.get(schema_id)
        if found is not None:
            return found
        missing = self._missing.get(schema_id)
        if missing is not None and time.monotonic() - missing[0] < MISS_TTL_S:
            raise UnknownSchema(missing[1])
        try:
            parsed = fastavro.parse_schema(json.loads(self.registry.schema(schema_id)))
        except RegistryNotFound:
            reason = f"schema id {schema_id} is not in the registry at {self.registry.url}"
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            reason = f"schema id {schema_id} is not a usable Avro schema: {exc}"
        else:
            self._found[schema_id] = parsed
            return parsed
        self._missing[schema_id] = (time.monotonic(), reason)
        raise UnknownSchema(reason)


def job_resolver(registry_url: str | None, schema_id: int | None = None) -> Resolver:
    """The readers' resolver: by the registry at `registry_url` (cached), else the shipped schema; with
    `schema_id` set, any other id is refused (dead-lettered as unknown_schema)."""
    if registry_url is None:
        return shipped_resolver(schema_id)
    cached = CachedResolver(SchemaRegistry(registry_url))
    if schema_id is None:
        return cached

    def only(found: int) -> Any:
        if found != schema_id:
            raise UnknownSchema(f"schema id {found} is not the configured {schema_id}")
        return cached(found)

    return only


def registered_writer(registry: SchemaRegistry, subject: str, path: Path | None = None) -> tuple[int, Any]:
    """(id, parsed schema) of a writer's schema file (default: the current one) under `subject`: registered
    if it is not a version yet (as Confluent serializers do), refused by the registry if incompatible."""
    raw = json.loads((path or SCHEMA_DIR / "context_event.avsc").read_text(encoding="utf-8"))
    schema_id = registry.register(subject, json.dumps(raw, separators=(",", ":")))
    return schema_id, fastavro.parse_schema(raw)

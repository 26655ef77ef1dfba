"""One event's path through the system, hop by hop, with the time each hop was written.

Every output carries the source event's id: the history record and violations have `eventId`, a view has
it on each attribute the event set, a change-stream entry holds the view, a dead letter holds the original
payload (`raw`) and where it was read (`origin`), an Elasticsearch document holds the record plus
`@ctxsync.origin`/`@ctxsync.indexedAt` (written by the connector, outside the contract's record). So the
trace searches by eventId (an input record or dead letter that is not a JSON object, e.g. truncated or not
UTF-8, by the `"eventId": "<id>"` text it holds), in bounded windows: Kafka topics from the first offset at
or after `since` (offsets_for_times) to the end they had when the trace started, change streams by entry id
from `since`; Elasticsearch documents are fetched by the id their topic record gives (real time, before a
refresh), and searched by eventId.

A view record stays on the views topic after later events changed other attributes of the aggregate, so
the view an event *emitted* is the one of lowest version per aggregate that holds its eventId (the topic
is keyed by aggregate: one partition, offsets in version order). A view whose only change was a deletion
holds no trace of the event (deleted attributes are left out of views): it is not found.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ctxsync.io.avro import avro_payload_to_json
from ctxsync.io.es_history import HISTORY_PREFIX, TRACE_FIELD, VIOLATIONS_INDEX, history_index, record_id
from ctxsync.io.kafka_io import read_topic
from ctxsync.io.kafka_positions import offsets_for_time, partition_ends
from ctxsync.io.redis_views import stream_key, view_from_hash, view_key
from ctxsync.io.search import as_backend
from transforms.privacy import CIPHER_PREFIX
from transforms.timestamps import parse_iso_ms

INPUT, HISTORY, VIEWS, VIOLATIONS, DLQ = "input", "history", "views", "violations", "dlq"
STREAM, REDIS_VIEW, ES_HISTORY, ES_VIOLATIONS = "redis stream", "redis view", "es history", "es violations"
# The path's order: the job writes a batch's views to Redis (hash and change stream, one script) before its
# records reach the Kafka topics, and the Elasticsearch connector reads those topics.
ORDER = (INPUT, STREAM, REDIS_VIEW, HISTORY, VIEWS, VIOLATIONS, DLQ, ES_HISTORY, ES_VIOLATIONS)


@dataclass
class Hop:
    stage: str               # one of ORDER
    where: str               # topic/partition/offset, stream key and entry id, hash key, index/_id
    time_ms: int | None      # when it was written: Kafka timestamp, stream entry id, ES indexedAt
    note: str                # what the record says, in a few words
    record: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class Trace:
    event_id: str
    since_ms: int
    hops: list[Hop] = field(default_factory=list)

    @property
    def source_ms(self) -> int | None:
        return next((h.time_ms for h in self.hops if h.stage == INPUT), None)

    def to_json(self) -> dict[str, Any]:
        source = self.source_ms
        hops = [{**asdict(h), "delta_ms": None if h.time_ms is None or source is None else h.time_ms - source}
                for h in self.hops]
        return {"eventId": self.event_id, "since_ms": self.since_ms, "hops": hops}


@dataclass(frozen=True)
class Found:
    """One Kafka record that matched."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def scan_topic(config: dict[str, Any], topic: str, since_ms: int, wanted: Callable[[bytes], bool],
               timeout_s: float = 10.0) -> list[Found]:
    """The committed records of `topic` written at or after `since_ms` (up to the end the topic had when
    the scan began) whose value satisfies `wanted`; [] for a missing topic."""
    try:
        _, high = partition_ends(config, topic, timeout_s)
    except KeyError:
        return []
    starts = offsets_for_time(config, topic, high, since_ms, timeout_s)
    found: list[Found] = []
    for m in read_topic(config, topic, timeout_s, starts=starts):
        if m.offset() < high[m.partition()] and m.value() is not None and wanted(m.value()):
            found.append(Found(topic, m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(),
                               {k: v or b"" for k, v in (m.headers() or [])}))
    return found


def _json(value: bytes | str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _holds(view: dict[str, Any], event_id: str) -> list[str]:
    """Names of the view's attributes that the event set."""
    return sorted(name for name, a in (view.get("attributes") or {}).items() if a.get("eventId") == event_id)


def first_views(views: Iterable[tuple[dict[str, Any], Any]], event_id: str) -> list[tuple[dict[str, Any], Any]]:
    """Per aggregate key, the (view, where) of lowest version that holds the event's id: the one it emitted."""
    best: dict[str, tuple[dict[str, Any], Any]] = {}
    for view, where in views:
        if _holds(view, event_id) and (view["key"] not in best or view["version"] < best[view["key"]][0]["version"]):
            best[view["key"]] = (view, where)
    return [best[key] for key in sorted(best)]


class Tracer:
    """Finds one event's hops in a resolved profile's topics, Redis and Elasticsearch (each optional)."""

    def __init__(self, input_config: dict[str, Any], output_config: dict[str, Any], input_topic: str,
                 topics: Any, avro_schema_id: int | None | bool = False, redis: Any = None,
                 redis_prefix: str = "ctx", es: Any = None,
                 readable: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.input_config, self.output_config = input_config, output_config
        self.input_topic, self.topics = input_topic, topics
        self.avro, self.schema_id = avro_schema_id is not False, avro_schema_id or None
        self.redis, self.prefix, self.es = redis, redis_prefix, es
        self.readable = readable  # privacy on: decrypts a history record or dead letter (ctxsync/privacy_lookup.py)

    def trace(self, event_id: str, since_ms: int) -> Trace:
        result = Trace(event_id, since_ms)
        needles, quoted = {event_id.encode(), json.dumps(event_id)[1:-1].encode()}, orjson.dumps(event_id)

        def holds_needle(value: bytes) -> bool:  # the id as UTF-8 or in ASCII escapes
            return any(needle in value for needle in needles)
        hops = result.hops

        def found(config: dict[str, Any], topic: str, prefilter: Callable[[bytes], bool],
                  keep: Callable[[dict[str, Any]], bool]) -> list[tuple[dict[str, Any], Found]]:
            opened = self.readable or (lambda doc: doc)
            return [(doc, record) for record in scan_topic(config, topic, since_ms, prefilter)
                    if isinstance(doc := _json(record.value), dict) and keep(doc := opened(doc))]

        def same_id(doc: dict[str, Any]) -> bool:
            return doc.get("eventId") == event_id

        decode = (lambda value: avro_payload_to_json(value, self.schema_id)) if self.avro else bytes
        for record in scan_topic(self.input_config, self.input_topic, since_ms, holds_needle):
            payload = decode(record.value)
            doc = _json(payload)
            key = (record.key or b"").decode(errors="replace")
            if isinstance(doc, dict) and same_id(doc):
                hops.append(Hop(INPUT, record.origin, record.timestamp_ms,
                                f"produced; key {key}, event time {doc.get('timestamp')}", doc))
            elif not isinstance(doc, dict) and names_id(payload, event_id):
                hops.append(Hop(INPUT, record.origin, record.timestamp_ms,
                                f"produced; key {key}, not a JSON object: found by the id in its text"))
        origins = {h.where for h in hops}
        for doc, record in found(self.output_config, self.topics.history, lambda v: quoted in v, same_id):
            hops.append(Hop(HISTORY, record.origin, record.timestamp_ms, _history_note(doc), doc))
        emitted = first_views(found(self.output_config, self.topics.views, lambda v: quoted in v, lambda _: True), event_id)
        for view, record in emitted:
            hops.append(Hop(VIEWS, record.origin, record.timestamp_ms, _view_note(view, event_id), view))
        for doc, record in found(self.output_config, self.topics.violations, lambda v: quoted in v, same_id):
            hops.append(Hop(VIOLATIONS, record.origin, record.timestamp_ms, _violation_note(doc), doc))
        for doc, record in found(self.output_config, self.topics.dlq,
                                 lambda v: holds_needle(v) or b"base64" in v or any(o.encode() in v for o in origins)
                                 or (self.readable is not None and CIPHER_PREFIX.encode() in v),
                                 lambda d: d.get("origin") in origins or _raw_holds(d, event_id)):
            hops.append(Hop(DLQ, record.origin, record.timestamp_ms, f"dead letter {doc.get('reason')} at stage "
                            f"{doc.get('stage')}, origin {doc.get('origin')}", doc))
        if self.redis is not None:
            self._redis_hops(result, [view for view, _ in emitted])
        if self.es is not None:
            self._es_hops(result)
        hops.sort(key=lambda h: ORDER.index(h.stage))
        return result

    def _redis_hops(self, result: Trace, emitted: list[dict[str, Any]]) -> None:
        """Per target model, the change-stream entry of the view the event emitted, and each view in Redis
        now. The view's hash and its stream entries are written by one script, so the entry's id is the
        time the view reached Redis."""
        reached: dict[str, int] = {}
        for model in sorted({m for view in emitted for m in view.get("targetModels", [])}):
            stream = stream_key(self.prefix, model)
            for view, entry_id in first_views(self._entries(stream, result.since_ms), result.event_id):
                entry_ms = int(entry_id.split("-")[0])
                reached[view["key"]] = min(reached.get(view["key"], entry_ms), entry_ms)
                result.hops.append(Hop(STREAM, f"{stream} {entry_id}", entry_ms,
                                       _view_note(view, result.event_id), view))
        for view in emitted:
            category, _, user = view["key"].partition(":")
            key = view_key(self.prefix, category, user)
            fields = self.redis.hgetall(key)
            if not fields:
                result.hops.append(Hop(REDIS_VIEW, key, None, "no view in Redis (expired, erased or not written)"))
                continue
            now = view_from_hash({_text(k): _text(v) for k, v in fields.items()})
            held = _holds(now, result.event_id)
            note = (f"now version {now['version']}, holds {', '.join(held)} from this event" if held else
                    f"now version {now['version']}, every attribute of this event overwritten since")
            result.hops.append(Hop(REDIS_VIEW, key, reached.get(view["key"]), note, now))

    def _entries(self, stream: str, since_ms: int) -> list[tuple[dict[str, Any], str]]:
        """(view, entry id) of a change stream's entries from `since_ms` on, 1,000 per round trip."""
        entries: list[tuple[dict[str, Any], str]] = []
        start = f"{since_ms}-0"
        while True:
            chunk = self.redis.xrange(stream, min=start, max="+", count=1000)
            for entry_id, fields in chunk:
                view = _json(fields.get(b"view", fields.get("view", b"null")))
                if isinstance(view, dict):
                    entries.append((view, _text(entry_id)))
            if len(chunk) < 1000:
                return entries
            start = "(" + _text(chunk[-1][0])

    def _es_hops(self, result: Trace) -> None:
        """The documents of the history and violation records found on the topics, fetched by id (a real-time
        GET: seen before the index refreshes), plus any others a search by eventId finds."""
        es = as_backend(self.es)
        wanted = [(ES_HISTORY, history_index(h.record["timestamp"]), record_id(h.record)) for h in result.hops
                  if h.stage == HISTORY and h.record] + \
                 [(ES_VIOLATIONS, VIOLATIONS_INDEX, record_id(h.record)) for h in result.hops
                  if h.stage == VIOLATIONS and h.record]
        docs = []
        for stage, index, doc_id in wanted:
            found = es.get(index, doc_id)
            if found is None:
                continue
            docs.append((stage, found["_index"], found["_id"], found["_source"]))
        seen = {doc_id for _, _, doc_id, _ in docs}
        for stage, index in ((ES_HISTORY, HISTORY_PREFIX + "*"), (ES_VIOLATIONS, VIOLATIONS_INDEX)):
            page = es.search(index, {"size": 100, "query": {"term": {"eventId": result.event_id}}})
            docs += [(stage, hit["_index"], hit["_id"], hit["_source"]) for hit in page["hits"]["hits"]
                     if hit["_id"] not in seen]
        for stage, index, doc_id, source in docs:
            source = dict(source)
            written = source.pop(TRACE_FIELD, None) or {}
            source = self.readable(source) if self.readable else source
            note = _history_note(source) if stage == ES_HISTORY else _violation_note(source)
            if written.get("origin"):
                note += f"; from {written['origin']}"
            result.hops.append(Hop(stage, f"{index}/{doc_id}",
                                   parse_iso_ms(written["indexedAt"]) if written.get("indexedAt") else None,
                                   note, source))

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def names_id(payload: bytes, event_id: str) -> bool:
    """The payload holds `"eventId": "<id>"` as text: how a record that is not a JSON object (truncated,
    not UTF-8, a broken producer) is still found by its id. The id as orjson and as Python's json (ASCII
    escapes) write it."""
    forms = {orjson.dumps(event_id), json.dumps(event_id).encode()}
    return any(re.search(rb'"eventId"\s*:\s*' + re.escape(form), payload) for form in forms)


def _raw_holds(dead_letter: dict[str, Any], event_id: str) -> bool:
    """The dead letter's original payload is the event: its eventId, or the id as text when it is not JSON."""
    raw = dead_letter.get("raw")
    if not isinstance(raw, str):
        return False
    try:
        payload = base64.b64decode(raw, validate=True) if dead_letter.get("rawEncoding") == "base64" else raw.encode()
    except binascii.Error:
        return False
    doc = _json(payload)
    return doc.get("eventId") == event_id if isinstance(doc, dict) else names_id(payload, event_id)


def _history_note(doc: dict[str, Any]) -> str:
    flags = [name for name in ("violation", "conflict") if doc.get(name)]
    return (f"accepted: {', '.join(doc.get('aggregates') or [])}; applied {', '.join(doc.get('applied') or []) or 'none'}"
            + (f"; stale {', '.join(doc['stale'])}" if doc.get("stale") else "")
            + (f"; {' and '.join(flags)}" if flags else ""))


def _view_note(view: dict[str, Any], event_id: str) -> str:
    return f"{view['key']} version {view['version']}, sets {', '.join(_holds(view, event_id))}"


def _violation_note(doc: dict[str, Any]) -> str:
    detail = f"lag {doc['lagMs']} ms" if "lagMs" in doc else f"policy {doc.get('policy')}"
    return f"{doc.get('kind')} violation on {doc.get('key')}, {detail}"

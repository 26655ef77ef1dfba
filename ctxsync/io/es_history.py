"""History sink on Elasticsearch or OpenSearch (ctxsync/io/search: one backend per engine): monthly indices `context-history-YYYY.MM`, violations in
`context-violations`, bulk `create` with a deterministic `_id` per accepted record (see `record_id`) so a
re-delivered record never duplicates a document and no accepted event is ever merged into another.

Transient failures (connection refused, 429, 5xx) are retried with exponential backoff; documents ES
rejects for good (mapping errors) are returned to the caller, who sends them to the dead-letter topic
with ES's reason: nothing is dropped.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ctxsync.errors import RuntimeFailure
from ctxsync.io.search import TransientError, as_backend
from transforms.timestamps import format_iso_ms

log = logging.getLogger(__name__)

HISTORY_PREFIX = "context-history-"
VIOLATIONS_INDEX = "context-violations"
TEMPLATE_NAME = "context-history"
VIOLATIONS_TEMPLATE_NAME = "context-violations"
# Outside the contract's record, in each document's _source only: where the connector read the record
# (topic/partition/offset) and when it indexed it, so `ctxsync trace` can time this hop. Readers of the
# history (search_history) drop it; it is not mapped (dynamic: false).
TRACE_FIELD = "@ctxsync"
_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}

# dynamic: false keeps unknown fields in _source without indexing them, so an event's extra fields can
# never cause a mapping conflict; `updates` is flattened (attribute names are open-ended, values mixed):
# `flattened` on Elasticsearch, `flat_object` on OpenSearch (history_mappings), the one difference.
HISTORY_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "eventId": _KEYWORD, "timestamp": _DATE, "eventType": _KEYWORD,
        "source": {"properties": {"modelId": _KEYWORD, "instanceId": _KEYWORD}},
        "contextDelta": {"properties": {
            "userId": _KEYWORD, "sessionId": _KEYWORD, "expectedVersion": {"type": "long"},
            "updates": {"type": "flattened"},
        }},
        "propagationRules": {"properties": {
            "targetModels": _KEYWORD, "priority": _KEYWORD, "ttl": {"type": "long"},
        }},
        "aggregates": _KEYWORD, "applied": _KEYWORD, "stale": _KEYWORD,
        "violation": {"type": "boolean"}, "conflict": {"type": "boolean"},
    },
}
VIOLATIONS_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "kind": _KEYWORD, "key": _KEYWORD, "eventId": _KEYWORD, "timestamp": _DATE, "maxTimestamp": _DATE,
        "lagMs": {"type": "long"}, "policy": _KEYWORD, "modelId": _KEYWORD,
    },
}


def history_mappings(open_object_type: str = "flattened") -> dict[str, Any]:
    """HISTORY_MAPPINGS with `contextDelta.updates` typed for the engine (flattened | flat_object)."""
    delta = HISTORY_MAPPINGS["properties"]["contextDelta"]
    updated = {"properties": {**delta["properties"], "updates": {"type": open_object_type}}}
    return {**HISTORY_MAPPINGS, "properties": {**HISTORY_MAPPINGS["properties"], "contextDelta": updated}}


def history_template(shards: int = 1, replicas: int = 0, open_object_type: str = "flattened") -> dict[str, Any]:
    """The composable index template body for the monthly history indices."""
    return {"index_patterns": [HISTORY_PREFIX + "*"], "priority": 100,
            "template": {"settings": {"number_of_shards": shards, "number_of_replicas": replicas},
                         "mappings": history_mappings(open_object_type)},
            "_meta": {"owner": "ctxsync", "contract": "v1"}}


def violations_template(shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    return {"index_patterns": [VIOLATIONS_INDEX], "priority": 100,
            "template": {"settings": {"number_of_shards": shards, "number_of_replicas": replicas},
                         "mappings": VIOLATIONS_MAPPINGS},
            "_meta": {"owner": "ctxsync", "contract": "v1"}}


def install_templates(client: Any, shards: int = 1, replicas: int = 0) -> None:
    """Create or update both index templates (idempotent), on either engine."""
    backend = as_backend(client)
    backend.put_index_template(TEMPLATE_NAME, history_template(shards, replicas, backend.open_object_type))
    backend.put_index_template(VIOLATIONS_TEMPLATE_NAME, violations_template(shards, replicas))


def history_index(timestamp: str) -> str:
    """`context-history-YYYY.MM` of a normalized UTC timestamp (2026-11-24T10:00:00.123Z)."""
    return f"{HISTORY_PREFIX}{timestamp[0:4]}.{timestamp[5:7]}"


def record_id(record: dict[str, Any]) -> str:
    """The document id of a history record, `<eventId>|<userId>|<timestamp>`, or of a violation,
    `<kind>|<key>|<eventId>|<timestamp>`: what makes the accepted event (or its finding) one of a kind.

    Why not the eventId alone (the id before issue 13): an eventId is unique per user only within the dedup
    retention, so a second accepted event with the same eventId (another user, or the same user after the
    retention) was refused by `create` with 409 and counted as written: lost. Two accepted events of one
    user with one eventId are more than the retention apart in event time, so with the user and the
    timestamp they differ. Why not the record's Kafka position: the same event processed again (a job that
    restarted under at-least-once, a `--fresh` recompute, a server that showed records of an aborted
    transaction) lands at another offset, and Elasticsearch would hold it twice; by content it is the same
    document, so a rewrite stays a no-op. Ids longer than Elasticsearch's 512-byte limit are hashed.
    """
    if "kind" in record:
        text = f"{record['kind']}|{record['key']}|{record['eventId']}|{record['timestamp']}"
    else:
        text = f"{record['eventId']}|{record['contextDelta']['userId']}|{record['timestamp']}"
    return text if len(text.encode()) <= 512 else hashlib.sha256(text.encode()).hexdigest()


@dataclass
class EsDoc:
    index: str
    id: str
    source: dict[str, Any]
    origin: str  # where the record came from (topic/partition/offset), for the dead letter


@dataclass
class Rejected:
    doc: EsDoc
    error_type: str
    reason: str
    status: int


def history_doc(record: dict[str, Any], origin: str) -> EsDoc:
    """The document of one history record read at `origin` (topic/partition/offset)."""
    return EsDoc(history_index(record["timestamp"]), record_id(record), record, origin)


def violation_doc(record: dict[str, Any], origin: str) -> EsDoc:
    """The document of one violation record read at `origin`: same id rule, same loss avoided."""
    return EsDoc(VIOLATIONS_INDEX, record_id(record), record, origin)


class EsBulkWriter:
    """Bulk `create` with retries: returns the permanently rejected documents, never drops any."""

    def __init__(self, client: Any, give_up_after_s: float = 600.0, backoff_s: tuple[float, float] = (0.2, 5.0),
                 sleep: Callable[[float], None] = time.sleep,
                 erased: Callable[[list[EsDoc]], list[EsDoc]] | None = None) -> None:
        self.client = client
        self.give_up_after_s = give_up_after_s
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.retries = 0
        self.erased = erased  # the documents of erased users (ctxsync/io/erase_record.py): never written
        self.skipped_erased = 0

    def write(self, docs: Iterable[EsDoc]) -> tuple[int, list[Rejected]]:
        """(documents created or already present, rejected documents); documents of users erased after
        them are left out (counted in `skipped_erased`): the erase record is asked before every bulk request."""
        pending = list(docs)
        done = 0
        rejected: list[Rejected] = []
        delay, deadline = self.backoff_s[0], time.monotonic() + self.give_up_after_s
        while pending:
            if self.erased is not None:  # asked before every attempt: an erase may land during retries
                gone = {id(doc) for doc in self.erased(pending)}
                pending = [doc for doc in pending if id(doc) not in gone]
                self.skipped_erased += len(gone)
                if not pending:
                    break
            try:
                items = self._bulk(pending)
            except TransientError as exc:
                items = None
                problem = str(exc)
            if items is not None:
                retry = []
                for doc, item in zip(pending, items):
                    result = item.get("create", item)
                    status = int(result.get("status", 500))
                    if status in (200, 201, 409):  # 409: already there, written by an earlier attempt
                        done += 1
                    elif status == 429 or status >= 500:
                        retry.append(doc)
                    else:
                        error = result.get("error") or {}
                        rejected.append(Rejected(doc, str(error.get("type", "error")),
                                                 _reason(error), status))
                pending = retry
                problem = f"{len(retry)} documents got 429/5xx"
                if not pending:
                    break
            if time.monotonic() + delay > deadline:
                raise RuntimeFailure(f"Elasticsearch still failing after {self.give_up_after_s:.0f}s: {problem}")
            self.retries += 1
            log.warning("elasticsearch: %s; retrying %d documents in %.1fs", problem, len(pending), delay)
            self.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])
        return done, rejected

    def refresh(self) -> None:
        """Make the written documents searchable now (history and violations indices)."""
        as_backend(self.client).refresh(f"{HISTORY_PREFIX}*,{VIOLATIONS_INDEX}*")

    def _bulk(self, docs: list[EsDoc]) -> list[dict[str, Any]]:
        operations: list[dict[str, Any]] = []
        written = {"indexedAt": format_iso_ms(int(time.time() * 1000))}
        for doc in docs:
            operations.append({"create": {"_index": doc.index, "_id": doc.id}})
            operations.append({**doc.source, TRACE_FIELD: {**written, "origin": doc.origin}})
        return as_backend(self.client).bulk(operations)


def _reason(error: dict[str, Any]) -> str:
    reason = str(error.get("reason", ""))
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        reason += f" (caused by {cause.get('type')}: {cause['reason']})"
    return reason


def missing_documents(client: Any, records: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Origins of the (origin, history record) pairs whose document Elasticsearch does not hold: the
    document ids are known (`record_id`), so one mget per monthly index and 1,000 ids answers it."""
    by_index: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for origin, record in records:
        by_index[history_index(record["timestamp"])].append((record_id(record), origin))
    missing = []
    backend = as_backend(client)
    for index, pairs in sorted(by_index.items()):
        for start in range(0, len(pairs), 1000):
            chunk = pairs[start:start + 1000]
            found = backend.mget(index, [doc_id for doc_id, _ in chunk])
            missing.extend(origin for (_, origin), doc in zip(chunk, found) if not doc.get("found"))
    return missing


def search_history(client: Any, user: str, since: str | None = None, attribute: str | None = None,
                   model: str | None = None, size: int = 1000, session: str | None = None) -> list[dict[str, Any]]:
    """An analyst's timeline: the user's accepted events, oldest first, optionally filtered."""
    filters: list[dict[str, Any]] = [{"term": {"contextDelta.userId": user}}]
    if session:
        filters.append({"term": {"contextDelta.sessionId": session}})
    if since:
        filters.append({"range": {"timestamp": {"gte": since}}})
    if model:
        filters.append({"term": {"source.modelId": model}})
    if attribute:
        filters.append({"bool": {"should": [
            {"term": {"applied": attribute}}, {"term": {"stale": attribute}},
            {"exists": {"field": f"contextDelta.updates.{attribute}"}},
        ], "minimum_should_match": 1}})
    hits: list[dict[str, Any]] = []
    backend = as_backend(client)
    search_after = None
    while len(hits) < size:
        body: dict[str, Any] = {"query": {"bool": {"filter": filters}},
                                "sort": [{"timestamp": "asc"}, {"eventId": "asc"}],
                                "size": min(500, size - len(hits))}
        if search_after is not None:
            body["search_after"] = search_after
        page = backend.search(HISTORY_PREFIX + "*", body)
        batch = page["hits"]["hits"]
        if not batch:
            break
        hits.extend({k: v for k, v in hit["_source"].items() if k != TRACE_FIELD} for hit in batch)
        search_after = batch[-1]["sort"]
    return hits

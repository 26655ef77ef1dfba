"""Publish drift records to Elasticsearch (index `context-drift`) and Kafka (topic `context.drift`).

Both writes are idempotent, so publishing the same drift.jsonl twice changes nothing: ES documents are
created with `_id` = `<windowStart>|<category>/<attribute>` (a 409 means "already there"); Kafka records
are keyed by `<category>/<attribute>`, so one attribute's windows stay in order in one partition and a
compacted topic keeps each attribute's latest window.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ctxsync.errors import RuntimeFailure
from ctxsync.io.es_history import EsBulkWriter, EsDoc, Rejected
from ctxsync.io.search import as_backend

DRIFT_INDEX = "context-drift"
DRIFT_TOPIC = "context.drift"
_KEYWORD, _DOUBLE, _LONG = {"type": "keyword"}, {"type": "double"}, {"type": "long"}

# dynamic: false indexes the fields dashboards filter and plot; the rest (top-k lists, per-model
# statistics whose keys are model names) stays in _source, so no record can cause a mapping conflict.
DRIFT_MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "windowStart": {"type": "date"}, "windowEnd": {"type": "date"},
        "category": _KEYWORD, "attribute": _KEYWORD, "reference": _KEYWORD, "alerts": _KEYWORD,
        "count": _LONG, "nulls": _LONG, "late": _LONG, "nullRate": _DOUBLE, "meanConfidence": _DOUBLE,
        "scores": {"properties": {name: _DOUBLE for name in ("psi", "js", "spcValue", "spcConfidence")}},
        "numeric": {"properties": {"mean": _DOUBLE, "std": _DOUBLE}},
    },
}


def drift_key(record: dict[str, Any]) -> str:
    return f"{record['category']}/{record['attribute']}"


def drift_doc(record: dict[str, Any], origin: str) -> EsDoc:
    return EsDoc(DRIFT_INDEX, f"{record['windowStart']}|{drift_key(record)}", record, origin)


def ensure_drift_index(client: Any) -> None:
    """Create the index with its mapping unless it exists (a concurrent creator is fine)."""
    as_backend(client).ensure_index(DRIFT_INDEX, DRIFT_MAPPINGS)


def publish_to_es(client: Any, records: Iterable[dict[str, Any]], origin: str) -> tuple[int, list[Rejected]]:
    """(documents created or already present, documents ES rejected for good)."""
    ensure_drift_index(client)
    return EsBulkWriter(client).write(drift_doc(r, f"{origin}:{n}") for n, r in enumerate(records, 1))


def publish_to_kafka(client_config: dict[str, Any], records: Iterable[dict[str, Any]],
                     topic: str = DRIFT_TOPIC, timeout_s: float = 30.0) -> int:
    """Produce every record (JSON, keyed by category/attribute); raise if any delivery failed."""
    from ctxsync.io.kafka_io import check_reachable, producer, refuse_unauthorized

    check_reachable(client_config)
    errors: list[Any] = []  # KafkaErrors

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    p = producer(client_config)
    count = 0
    for record in records:
        p.produce(topic, key=drift_key(record).encode(), value=json.dumps(record, separators=(",", ":")).encode(),
                  on_delivery=delivered)
        p.poll(0)
        count += 1
    remaining = p.flush(timeout_s)
    if remaining or errors:
        refuse_unauthorized(errors[0] if errors else None, topic)  # a missing ACL, worded by errors.py
        raise RuntimeFailure(f"Kafka: {remaining} drift records undelivered after {timeout_s:.0f}s; errors: "
                             f"{[str(e) for e in errors[:3]]}")
    return count

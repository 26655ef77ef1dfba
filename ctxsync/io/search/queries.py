"""Analyst queries over the history, the same on Elasticsearch and OpenSearch (docs/search.md shows each as curl).

The user timeline is ctxsync.io.es_history.search_history (all categories, one attribute, one session); here are
the queries across users: a date range over the monthly indices (every hit, past the 10,000-hit window, through
a point in time), per-model counts (a terms aggregation) and a search over the attributes' values.

Values live in `contextDelta.updates`, an open-ended object (`flattened` / `flat_object`): each value is indexed
whole, as a keyword, not analyzed into words. So the value search is a case-insensitive substring match
(`wildcard` on the object's root field, which covers every attribute), not relevance-ranked full text.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ctxsync.io.es_history import HISTORY_PREFIX, TRACE_FIELD
from ctxsync.io.search import as_backend, scan

HISTORY = HISTORY_PREFIX + "*"
# unique per document (record_id is built from the same three): search_after never skips or repeats one
ORDER = [{"timestamp": "asc"}, {"eventId": "asc"}, {"contextDelta.userId": "asc"}]


def time_range(since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """A filter on the event time: since inclusive, until exclusive (ISO-8601, or Elasticsearch date math)."""
    bounds = {**({"gte": since} if since else {}), **({"lt": until} if until else {})}
    return {"range": {"timestamp": bounds}} if bounds else {"match_all": {}}


def value_query(text: str) -> dict[str, Any]:
    """Events with an attribute value (current or any other field of an update) that contains `text`."""
    pattern = "*" + text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") + "*"
    return {"wildcard": {"contextDelta.updates": {"value": pattern, "case_insensitive": True}}}


def events(client: Any, since: str | None = None, until: str | None = None, text: str | None = None,
           limit: int | None = None) -> Iterator[dict[str, Any]]:
    """History records in the time range (any number of monthly indices), oldest first, optionally only those
    with a value containing `text`; all of them unless `limit`, read through a point in time."""
    filters = [time_range(since, until)] + ([value_query(text)] if text else [])
    for hit in scan(client, HISTORY, {"bool": {"filter": filters}}, ORDER, limit=limit):
        yield {k: v for k, v in hit["_source"].items() if k != TRACE_FIELD}


def model_counts(client: Any, since: str | None = None, until: str | None = None,
                 user: str | None = None) -> dict[str, int]:
    """Accepted events per source model in the time range (one user's, or everyone's), most first."""
    filters = [time_range(since, until)] + ([{"term": {"contextDelta.userId": user}}] if user else [])
    body = {"size": 0, "query": {"bool": {"filter": filters}},
            "aggs": {"models": {"terms": {"field": "source.modelId", "size": 1000}}}}
    response = as_backend(client).search(HISTORY, body)
    buckets = (response.get("aggregations") or {}).get("models", {}).get("buckets", [])
    return {bucket["key"]: int(bucket["doc_count"]) for bucket in buckets}

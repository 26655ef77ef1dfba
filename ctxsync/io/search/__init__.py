"""The history's search engine behind one small interface: Elasticsearch 8 or OpenSearch 2.

The two engines speak almost the same REST API, but their Python clients do not (keyword bodies vs `body=`,
their own exception classes, `open_point_in_time` vs `create_pit`), the official `elasticsearch` client refuses
any server that is not Elasticsearch (its product check), and one mapping type differs: an object with open-ended
keys is `flattened` on Elasticsearch and `flat_object` on OpenSearch. Everything that reads or writes the history
(ctxsync/io/es_history.py, erasure, trace, drift sinks) goes through a `SearchBackend`; `as_backend` wraps the raw
client a profile builds (ctxsync/io/clients.py, `search.engine` picks which), so callers that hold a raw client
keep working. One backend per module: `elasticsearch.py`, `opensearch.py`.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

ENGINES = ("elasticsearch", "opensearch")
PIT_KEEP_ALIVE = "2m"


class TransientError(Exception):
    """The engine is unreachable or overloaded (connection refused, timeout, 429, 5xx); retried with backoff."""


class SearchBackend(Protocol):
    """The operations ctxsync needs of a search engine; every one takes and returns plain JSON-like dicts."""

    engine: str
    client: Any
    open_object_type: str  # mapping type of an object with open-ended keys (`contextDelta.updates`)

    def put_index_template(self, name: str, body: dict[str, Any]) -> None: ...

    def ensure_index(self, index: str, mappings: dict[str, Any]) -> None:
        """Create the index unless it exists (a concurrent create is not an error)."""

    def bulk(self, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The response's items, one per action; TransientError when the whole request failed transiently."""

    def mget(self, index: str, ids: list[str]) -> list[dict[str, Any]]: ...

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The document (real-time GET), or None when the index or the document does not exist."""

    def search(self, index: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """A search over `index` (missing indices are no error); index None with a `pit` in the body."""

    def refresh(self, index: str) -> None: ...

    def delete_by_query(self, index: str, query: dict[str, Any]) -> int:
        """Documents deleted (refreshed after, version conflicts skipped)."""

    def open_pit(self, index: str) -> str | None:
        """A point in time over `index`, or None when no index matches."""

    def close_pit(self, pit_id: str) -> None: ...


def as_backend(client: Any) -> SearchBackend:
    """The backend of a raw client (an `elasticsearch.Elasticsearch` or an `opensearchpy.OpenSearch`), or the
    backend itself."""
    if hasattr(client, "open_object_type"):
        return client
    if type(client).__module__.startswith("opensearchpy"):
        from ctxsync.io.search.opensearch import OpenSearchBackend

        return OpenSearchBackend(client)
    from ctxsync.io.search.elasticsearch import ElasticsearchBackend

    return ElasticsearchBackend(client)


def scan(client: Any, index: str, query: dict[str, Any], sort: list[Any], page_size: int = 1000,
         limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every hit of `query`, in `sort` order, past the 10,000-hit window: search_after over a point in time, so
    the pages read one consistent view while the connector keeps writing. `sort` must be unique per document
    (the history's timestamp, eventId and userId are: ctxsync/io/es_history.record_id)."""
    backend = as_backend(client)
    pit_id = backend.open_pit(index)
    if pit_id is None:
        return
    after: list[Any] | None = None
    returned = 0
    try:
        while limit is None or returned < limit:
            size = page_size if limit is None else min(page_size, limit - returned)
            body: dict[str, Any] = {"query": query, "sort": sort, "size": size,
                                    "pit": {"id": pit_id, "keep_alive": PIT_KEEP_ALIVE}}
            if after is not None:
                body["search_after"] = after
            page = backend.search(None, body)
            pit_id = page.get("pit_id", pit_id)
            hits = page["hits"]["hits"]
            yield from hits
            returned += len(hits)
            if len(hits) < size:
                return
            after = hits[-1]["sort"]
    finally:
        backend.close_pit(pit_id)

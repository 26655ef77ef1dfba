"""Elasticsearch 8 (and noida-db's Elasticsearch API) behind the SearchBackend interface, with the official
`elasticsearch` client: request bodies as keyword arguments, `flattened` for open-ended objects."""
from __future__ import annotations

from typing import Any

from ctxsync.io.search import PIT_KEEP_ALIVE, TransientError

OPEN_OBJECT_TYPE = "flattened"


def connect(hosts: list[str], options: dict[str, Any]) -> Any:
    """A client for `hosts` (options: request_timeout, api_key or basic_auth, ca_certs, verify_certs)."""
    from elasticsearch import Elasticsearch

    return Elasticsearch(hosts, **options)


class ElasticsearchBackend:
    engine = "elasticsearch"
    open_object_type = OPEN_OBJECT_TYPE

    def __init__(self, client: Any) -> None:
        self.client = client

    def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        self.client.indices.put_index_template(name=name, **body)

    def ensure_index(self, index: str, mappings: dict[str, Any]) -> None:
        if not self.client.indices.exists(index=index):
            self.client.options(ignore_status=400).indices.create(index=index, mappings=mappings)

    def bulk(self, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from elasticsearch import ApiError, ConnectionError as EsConnectionError, ConnectionTimeout

        try:
            response = self.client.bulk(operations=operations)
        except (EsConnectionError, ConnectionTimeout) as exc:
            raise TransientError(f"connection failed: {exc}") from exc
        except ApiError as exc:
            if exc.status_code == 429 or exc.status_code >= 500:
                raise TransientError(f"HTTP {exc.status_code}: {exc}") from exc
            raise
        return list(response["items"])

    def mget(self, index: str, ids: list[str]) -> list[dict[str, Any]]:
        return list(self.client.mget(index=index, ids=ids, source=False)["docs"])

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError

        try:
            return dict(self.client.get(index=index, id=doc_id))
        except NotFoundError:
            return None

    def search(self, index: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if index is None:
            return dict(self.client.search(**body))
        return dict(self.client.search(index=index, ignore_unavailable=True, allow_no_indices=True, **body))

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)

    def delete_by_query(self, index: str, query: dict[str, Any]) -> int:
        from elasticsearch import NotFoundError

        try:
            response = self.client.delete_by_query(index=index, query=query, refresh=True, conflicts="proceed",
                                                   allow_no_indices=True, ignore_unavailable=True)
        except NotFoundError:  # a named index that was never created holds nothing to delete
            return 0
        return int(response.get("deleted", 0))

    def open_pit(self, index: str) -> str | None:
        from elasticsearch import NotFoundError

        try:
            return str(self.client.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"])
        except NotFoundError:
            return None

    def close_pit(self, pit_id: str) -> None:
        from elasticsearch import NotFoundError

        try:
            self.client.close_point_in_time(id=pit_id)
        except NotFoundError:
            pass

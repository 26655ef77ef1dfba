"""OpenSearch 2 behind the SearchBackend interface, with `opensearch-py`: request bodies as `body=`, query
parameters as keywords, `flat_object` for open-ended objects (OpenSearch has no `flattened`), point in time
through `_search/point_in_time` (`create_pit`)."""
from __future__ import annotations

from typing import Any

from ctxsync.io.search import PIT_KEEP_ALIVE, TransientError

OPEN_OBJECT_TYPE = "flat_object"


def connect(hosts: list[str], options: dict[str, Any]) -> Any:
    """A client for `hosts`; takes the Elasticsearch client's option names (ctxsync/io/clients.py) and maps
    them: request_timeout -> timeout, basic_auth -> http_auth, api_key -> an `Authorization: ApiKey` header."""
    from opensearchpy import OpenSearch

    mapped: dict[str, Any] = {"timeout": options.get("request_timeout", 30), "max_retries": 0,
                              "verify_certs": options.get("verify_certs", True)}
    if "basic_auth" in options:
        mapped["http_auth"] = options["basic_auth"]
    if "api_key" in options:
        mapped["headers"] = {"Authorization": f"ApiKey {options['api_key']}"}
    if "ca_certs" in options:
        mapped["ca_certs"] = options["ca_certs"]
    return OpenSearch(hosts, **mapped)


class OpenSearchBackend:
    engine = "opensearch"
    open_object_type = OPEN_OBJECT_TYPE

    def __init__(self, client: Any) -> None:
        self.client = client

    def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        self.client.indices.put_index_template(name=name, body=body)

    def ensure_index(self, index: str, mappings: dict[str, Any]) -> None:
        if not self.client.indices.exists(index=index):
            self.client.indices.create(index=index, body={"mappings": mappings}, ignore=400)

    def bulk(self, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from opensearchpy import ConnectionError as OsConnectionError, ConnectionTimeout, TransportError

        try:
            response = self.client.bulk(body=operations)
        except (OsConnectionError, ConnectionTimeout) as exc:
            raise TransientError(f"connection failed: {exc}") from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 500
            if status == 429 or status >= 500:
                raise TransientError(f"HTTP {status}: {exc}") from exc
            raise
        return list(response["items"])

    def mget(self, index: str, ids: list[str]) -> list[dict[str, Any]]:
        return list(self.client.mget(index=index, body={"ids": ids}, _source=False)["docs"])

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        from opensearchpy import NotFoundError

        try:
            return dict(self.client.get(index=index, id=doc_id))
        except NotFoundError:
            return None

    def search(self, index: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if index is None:
            return dict(self.client.search(body=body))
        return dict(self.client.search(index=index, body=body, ignore_unavailable=True, allow_no_indices=True))

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)

    def delete_by_query(self, index: str, query: dict[str, Any]) -> int:
        from opensearchpy import NotFoundError

        try:
            response = self.client.delete_by_query(index=index, body={"query": query}, refresh=True,
                                                   conflicts="proceed", allow_no_indices=True, ignore_unavailable=True)
        except NotFoundError:  # a named index that was never created holds nothing to delete
            return 0
        return int(response.get("deleted", 0))

    def open_pit(self, index: str) -> str | None:
        from opensearchpy import NotFoundError

        try:
            return str(self.client.create_pit(index=index, keep_alive=PIT_KEEP_ALIVE)["pit_id"])
        except NotFoundError:
            return None

    def close_pit(self, pit_id: str) -> None:
        from opensearchpy import NotFoundError

        try:
            self.client.delete_pit(body={"pit_id": [pit_id]})
        except NotFoundError:
            pass

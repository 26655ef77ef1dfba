"""A real OpenSearch 2.19 node for the search tests, started with the same code as `ctxsync dev up --search
opensearch` (jars from Maven Central, ctxsync/opensearch_dist.py).

One node per test session (its JVM takes 5-40 s to start on a loaded machine), shared through `_SHARED` by every
module that imports the fixture by name; each test starts from no `context-*` index.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ctxsync.config import ElasticsearchEndpoint
from ctxsync.io.clients import es_client
from ctxsync.servers import LocalServers

_SHARED: dict[str, LocalServers] = {}


@pytest.fixture(scope="session")
def opensearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    local = _SHARED.get("opensearch")
    if local is None:
        local = LocalServers(tmp_path_factory.mktemp("opensearch"))
        try:
            local.up(["opensearch"])
        except BaseException:
            local.down()
            raise
        _SHARED["opensearch"] = local
    try:
        yield local
    finally:
        local.down()


@pytest.fixture
def opensearch_url(opensearch: LocalServers) -> str:
    return opensearch.endpoints()["opensearch"]


@pytest.fixture
def os_client(opensearch_url: str) -> Iterator[Any]:
    """An opensearch-py client built the way a profile with `search.engine: opensearch` builds it, on a node
    without ctxsync's indices (deleted by name: the node refuses wildcard deletes, as production should)."""
    client = es_client(ElasticsearchEndpoint(hosts=opensearch_url), "opensearch")
    names = list(client.indices.get(index="context-*", allow_no_indices=True, expand_wildcards="all"))
    if names:
        client.indices.delete(index=",".join(names))
    yield client
    client.close()

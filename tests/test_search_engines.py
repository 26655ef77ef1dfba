"""One history model on both engines: the same writes and queries give the same answers on noida-db's
Elasticsearch API and on a real OpenSearch node (each through its own backend, ctxsync/io/search)."""
from __future__ import annotations

import pytest

from ctxsync.io.erasure import erase_elasticsearch
from ctxsync.io.es_history import HISTORY_PREFIX, VIOLATIONS_INDEX, missing_documents, search_history
from ctxsync.io.search import as_backend, queries
from tests.fixtures_opensearch import opensearch, opensearch_url, os_client  # noqa: F401
from tests.fixtures_servers import es_client, servers  # noqa: F401
from tests.test_opensearch import history, sample


@pytest.fixture(params=["es_client", "os_client"])
def engine_client(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


def test_the_same_queries_give_the_same_answers(engine_client):
    sample(engine_client)
    expected_type = {"elasticsearch": "flattened", "opensearch": "flat_object"}
    assert as_backend(engine_client).open_object_type == expected_type[as_backend(engine_client).engine]
    assert [h["eventId"] for h in search_history(engine_client, "u1", session="s2")] == ["c"]
    assert [h["eventId"] for h in search_history(engine_client, "u1", attribute="timezone")] == ["b"]
    assert [r["eventId"] for r in queries.events(engine_client, since="2026-11-30T00:00:00Z")] == ["b", "c", "d"]
    assert [r["eventId"] for r in queries.events(engine_client, text="PREMIUM")] == ["a", "d"]
    assert queries.model_counts(engine_client, user="u1") == {"churn-predictor": 2, "risk-model": 1}
    absent = history("zz", "2026-12-24T10:00:00.000Z")
    assert missing_documents(engine_client, [("t/0/1", absent)]) == ["t/0/1"]
    assert erase_elasticsearch(engine_client, ["u2"], ["behavioral"], HISTORY_PREFIX + "*", VIOLATIONS_INDEX) == (1, 0)
    assert search_history(engine_client, "u2") == []

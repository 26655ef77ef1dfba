"""Real loopback servers for the I/O tests, started with the same code as `ctxsync dev up`.

Session-scoped (one set is enough: Kafka's JVM takes 5-10 s to start); each test isolates itself with
unique topic names, Redis key prefixes and ES index contents. Import the fixtures you use by name.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ctxsync.servers import LocalServers


_SHARED: dict[str, LocalServers] = {}


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    """redis-server, Apache Kafka and noida-db (Elasticsearch API) on free loopback ports, one set per session.

    Each test module imports this fixture by name, which gives every module a session fixture of its own:
    the set is shared through `_SHARED`, else a full run would keep one Kafka JVM per module alive until
    the session ends. Every copy stops it at the session's end (stopping is idempotent)."""
    local = _SHARED.get("servers")
    if local is None:
        local = LocalServers(tmp_path_factory.mktemp("servers"))
        try:
            local.up(["redis", "kafka", "noida"])
        except BaseException:
            local.down()
            raise
        _SHARED["servers"] = local
    try:
        yield local
    finally:
        local.down()


@pytest.fixture
def kafka_config(servers: LocalServers) -> dict[str, str]:
    return {"bootstrap.servers": servers.endpoints()["kafka"]}


@pytest.fixture
def redis_client(servers: LocalServers):
    import redis

    client = redis.Redis.from_url(servers.endpoints()["redis"])
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def es_client(servers: LocalServers):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(servers.endpoints()["elasticsearch"], request_timeout=10, retry_on_timeout=False,
                           max_retries=0)
    names = list(client.indices.get(index="context-*", allow_no_indices=True))
    if names:  # ES refuses wildcard deletes (destructive_requires_name): name each index
        client.indices.delete(index=",".join(names))
    yield client
    client.close()


@pytest.fixture
def unique() -> str:
    """A short unique name part, to keep topics and keys of different tests apart."""
    return uuid.uuid4().hex[:8]

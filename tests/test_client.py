"""ctxsync.client reads: views written by the connector's sink equal what `get` returns; the client cache
(server-assisted invalidation) never serves a view older than an invalidation it received; a client
built from a profile; the package imports with PyFlink and Beam unimportable."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from ctxsync.client import ContextClient, Credentials, View, from_profile, from_urls
from ctxsync.io.redis_views import RedisViewSink, ViewWrite
from tests.fixtures_servers import redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT, SETTINGS
from transforms.timestamps import parse_iso_ms

pytestmark = pytest.mark.servers


def a_view(user: str, category: str, version: int, **attributes) -> dict:
    stamp = f"2026-11-17T10:00:{version % 60:02d}.000Z"
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": stamp, "targetModels": ["churn-predictor"],
            "attributes": {name: {"value": value, "confidence": 0.9, "updatedAt": stamp,
                                  "eventId": f"e{version}", "modelId": "risk-model"}
                           for name, value in attributes.items()}}


@pytest.fixture
def prefix(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def sink(redis_client, prefix: str) -> RedisViewSink:  # noqa: F811
    return RedisViewSink(redis_client, prefix)


def make_client(servers, prefix: str, **options) -> ContextClient:  # noqa: F811
    endpoints = from_urls(servers.endpoints()["redis"], settings=SETTINGS, prefix=prefix)
    return ContextClient(endpoints, "churn-predictor", **options)


@pytest.mark.parametrize("cache", [False, True])
def test_get_returns_the_views_the_sink_wrote(servers, sink, prefix, cache):  # noqa: F811
    written = [a_view("u1", "financial", 3, riskTolerance="low", creditScore=700),
               a_view("u1", "behavioral", 1, segment="power"), a_view("u2", "temporal", 2, timezone="UTC")]
    sink.write([ViewWrite(v) for v in written])
    with make_client(servers, prefix, cache=cache) as client:
        context = client.get("u1")
        assert context.views == {v["category"]: View.from_record(v) for v in written[:2]}
        assert context.version("financial") == 3 and context.version("temporal") == 0
        assert context.value("riskTolerance") == "low" and context.value("creditScore") == 700
        assert set(context.attributes) == {"riskTolerance", "creditScore", "segment"}
        assert context.attributes["segment"].model_id == "risk-model"
        # staleness: the read's wall clock minus the newest updatedAt among the user's views
        assert context.staleness_ms == context.read_at_ms - max(parse_iso_ms(v["updatedAt"]) for v in written[:2])
        assert client.get("u1", ["behavioral"]).views == {"behavioral": View.from_record(written[1])}
        many = client.get_many([f"u{i}" for i in range(1, 101)])
        assert len(many) == 100 and many["u2"].views == {"temporal": View.from_record(written[2])}
        assert many["u1"].views == context.views and many["u77"].views == {}
        assert many["u77"].staleness_ms is None


def test_cache_hits_and_is_invalidated_by_a_connector_write(servers, sink, prefix):  # noqa: F811
    sink.write([ViewWrite(a_view("u1", "financial", 1, riskTolerance="low"))])
    with make_client(servers, prefix, cache=True) as client:
        categories = len(client.categories)
        assert client.get("u1").version("financial") == 1
        assert client.get("u1").version("financial") == 1
        assert client.cache.hits == categories and client.cache.misses == categories
        assert client.hit_rate == 0.5
        for version in range(2, 12):
            sink.write([ViewWrite(a_view("u1", "financial", version, riskTolerance=f"v{version}"))])
            # the invalidation has reached this process: the very next read must not be stale
            assert client.cache._listener.can_read(timeout=5)
            context = client.get("u1")
            assert context.version("financial") == version
            assert context.value("riskTolerance") == f"v{version}"
        assert client.cache.invalidations == 10


def test_cache_is_never_older_than_a_received_invalidation_under_concurrent_writes(
        servers, sink, prefix, redis_client):  # noqa: F811
    """A writer applies versions 1..100 to three aggregates while the client reads in a loop through
    the cache: versions never go backwards, and once the writes stop the cache converges to the last."""
    users = ["a", "b", "c"]
    done = threading.Event()
    own = RedisViewSink(type(redis_client).from_url(servers.endpoints()["redis"]), prefix)

    def writer() -> None:
        for version in range(1, 101):
            own.write([ViewWrite(a_view(u, "financial", version, riskTolerance=version)) for u in users])
        done.set()

    with make_client(servers, prefix, cache=True) as client:
        last = {u: 0 for u in users}
        thread = threading.Thread(target=writer)
        thread.start()
        reads = 0
        while not done.is_set() or reads < 50:
            contexts = client.get_many(users, ["financial"])
            reads += 1
            for u in users:
                version = contexts[u].version("financial")
                assert version >= last[u], "a cached read went backwards"
                last[u] = version
        thread.join()
        deadline = time.monotonic() + 5
        while any(client.get(u, ["financial"]).version("financial") != 100 for u in users):
            assert time.monotonic() < deadline, "the cache kept a stale view after the last write"
        assert client.cache.hits > 0 and client.cache.invalidations > 0


def test_cache_survives_lost_connections_and_flushes(servers, sink, prefix, redis_client):  # noqa: F811
    sink.write([ViewWrite(a_view("u1", "financial", 1, riskTolerance="low"))])
    with make_client(servers, prefix, cache=True) as client:
        assert client.get("u1").version("financial") == 1
        # the listener is killed: its invalidations would be lost, so the cache must start over
        redis_client.execute_command("CLIENT", "KILL", "ID", client.cache._listener_id)
        sink.write([ViewWrite(a_view("u1", "financial", 2, riskTolerance="mid"))])
        assert client.get("u1").version("financial") == 2
        sink.write([ViewWrite(a_view("u1", "financial", 3, riskTolerance="high"))])
        assert client.cache._listener.can_read(timeout=5)
        assert client.get("u1").value("riskTolerance") == "high"
        # the tracked reader is killed: it reconnects with tracking on again
        readers = [line for line in redis_client.client_list() if "t" in line.get("flags", "")]
        assert readers, "the reader connection is not tracked"
        for line in readers:
            redis_client.execute_command("CLIENT", "KILL", "ID", line["id"])
        misses = client.cache.misses
        assert client.get("u1").version("financial") == 3
        assert client.cache.misses > misses, "served from a cache whose tracking was gone"
        sink.write([ViewWrite(a_view("u1", "financial", 4, riskTolerance="max"))])
        assert client.cache._listener.can_read(timeout=5)
        assert client.get("u1").version("financial") == 4
        # FLUSHALL invalidates everything (a null invalidation message)
        redis_client.flushall()
        assert client.cache._listener.can_read(timeout=5)
        assert client.get("u1").views == {}


def test_client_from_the_local_profile_reads_the_dev_redis(servers, sink, prefix, monkeypatch):  # noqa: F811
    sink.write([ViewWrite(a_view("u1", "behavioral", 5, segment="power"))])
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
    endpoints = from_profile("local", ROOT / "jobs.yaml", credentials=Credentials(kafka_username="m1"))
    assert endpoints.redis.url == servers.endpoints()["redis"]
    assert endpoints.kafka["bootstrap.servers"] == servers.endpoints()["kafka"]
    assert endpoints.kafka["sasl.username"] == "m1" and endpoints.events_topic == "context.events"
    assert endpoints.settings.category_of("segment") == "behavioral"
    endpoints = endpoints.__class__(**{**endpoints.__dict__,
                                       "redis": endpoints.redis.model_copy(update={"prefix": prefix})})
    with ContextClient(endpoints, "churn-predictor") as client:
        assert client.get("u1").value("segment") == "power"


def test_credentials_and_url_options_pass_through():
    endpoints = from_urls("rediss://cache.example:6380/2", "broker:9093",
                          Credentials(redis_password="r-secret", redis_ca="/ca.pem", kafka_username="model-a",
                                      kafka_password="k-secret", kafka_mechanism="SCRAM-SHA-512",
                                      kafka_protocol="SASL_SSL", kafka_ca="/kca.pem"),
                          kafka_options={"ssl.endpoint.identification.algorithm": "https"})
    assert endpoints.redis.password.get_secret_value() == "r-secret" and endpoints.redis.ca_location == "/ca.pem"
    assert endpoints.kafka == {"bootstrap.servers": "broker:9093", "security.protocol": "SASL_SSL",
                               "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "model-a",
                               "sasl.password": "k-secret", "ssl.ca.location": "/kca.pem",
                               "ssl.endpoint.identification.algorithm": "https"}
    assert "secret" not in repr(endpoints) and "secret" not in repr(Credentials(redis_password="secret"))
    client = ContextClient(endpoints, "m")  # connects lazily: the TLS options reach the connection
    kwargs = client.redis.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/ca.pem" and kwargs["password"] == "r-secret" and kwargs["db"] == 2
    assert client.redis.connection_pool.connection_class.__name__ == "SSLConnection"


def test_the_package_imports_without_pyflink_or_beam():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pyflink', 'apache_beam', 'pipelines'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import ctxsync.client as c\n"
        "from ctxsync.client import ContextClient, from_urls\n"
        "client = ContextClient(from_urls('redis://127.0.0.1:1/0'), 'm')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyflink', 'apache_beam', 'pipelines')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cached_views_cannot_be_changed_by_a_reader(servers, sink, prefix):  # noqa: F811
    sink.write([ViewWrite(a_view("u1", "financial", 1, riskTolerance="low"))])
    with make_client(servers, prefix, cache=True) as client:
        with pytest.raises(TypeError):
            client.get("u1").views["financial"].attributes["riskTolerance"] = None
        assert client.get("u1").value("riskTolerance") == "low" and client.cache.hits > 0

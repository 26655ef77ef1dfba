"""Redis over TLS with ACL users, against a redis-server that accepts TLS only (certificates made by the
test): the profile's client (`rediss://` + ca_location + username/password), `ctxsync view`, the view sink's
write path, the profile's Redis connector, `ctxsync acl apply` and a model's ContextClient all verify the
server's CA and host name; a wrong CA, the system CAs, a missing or wrong password and a missing client
certificate (where the server requires one) each fail as one line, exit 1, with no traceback and no secret."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ctxsync import cli
from ctxsync.client import ContextClient, Credentials, from_urls
from ctxsync.config import RedisEndpoint
from ctxsync.io.clients import redis_client
from ctxsync.io.redis_views import RedisViewSink, ViewWrite
from tests.fixtures_tls import (  # noqa: F401
    ADMIN, ADMIN_PASSWORD, RedisServer, Tls, admin_client, start_redis, stop, tls_files, tls_redis,
)
from tests.fixtures_servers import servers, unique  # noqa: F401
from tests.helpers import SETTINGS

pytestmark = pytest.mark.servers

MODEL_PASSWORD = "model-pass-9Wd"


def a_view(user: str, category: str, version: int, **attributes) -> dict:
    stamp = f"2026-11-17T10:00:{version:02d}.000Z"
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": stamp, "targetModels": ["risk-model"],
            "attributes": {name: {"value": value, "confidence": 0.9, "updatedAt": stamp, "eventId": f"e{version}",
                                  "modelId": "writer"} for name, value in attributes.items()}}


def jobs_file(folder: Path, redis_line: str) -> Path:
    path = folder / "jobs.yaml"
    path.write_text(
        "version: 1\njobs:\n  context-sync:\n    type: context-sync\n    settings:\n"
        "      categories: {financial: [riskTolerance], behavioral: [segment]}\n"
        "    access:\n      models:\n"
        "        risk-model: {categories: [financial], password_env: T_MODEL_PW}\n"
        "    profiles:\n      tls:\n        source: {type: file}\n        sink: {type: files}\n"
        f"        redis: {redis_line}\n")
    return path


def profile_line(server: RedisServer, tls: Tls, **fields: str) -> str:
    values = {"url": server.url, "username": ADMIN, "password": "${T_ADMIN_PW}", "ca_location": str(tls.ca),
              **fields}
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in values.items() if v != "") + "}"


def view(path: Path, *user: str) -> int:
    return cli.main(["view", *(user or ("u1",)), "--jobs", str(path), "--profile", "tls"])


def one_line_failure(capsys: pytest.CaptureFixture[str], *secrets: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert not any(secret in captured.err + captured.out for secret in (ADMIN_PASSWORD, MODEL_PASSWORD, *secrets))
    return captured.err


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ADMIN_PW", ADMIN_PASSWORD)
    monkeypatch.setenv("T_MODEL_PW", MODEL_PASSWORD)


@pytest.fixture
def written(tls_redis: RedisServer, tls_files: Tls) -> dict:  # noqa: F811
    """u1's financial view, written through the view sink over TLS with the profile's client."""
    admin_client(tls_redis, tls_files).flushall()
    endpoint = RedisEndpoint(url=tls_redis.url, username=ADMIN, password=ADMIN_PASSWORD,
                             ca_location=str(tls_files.ca))
    client = redis_client(endpoint)
    record = a_view("u1", "financial", 3, riskTolerance="low")
    assert RedisViewSink(client).write([ViewWrite(record, ttl=600)]).applied == 1
    assert RedisViewSink(client).read("financial", "u1") == record
    assert client.connection_pool.connection_kwargs["ssl_check_hostname"] is True
    return record


@pytest.fixture(scope="module")
def client_cert_redis(tmp_path_factory: pytest.TempPathFactory, tls_files: Tls) -> Iterator[RedisServer]:  # noqa: F811
    """A second TLS-only server that requires a client certificate signed by the CA."""
    process, server = start_redis(tmp_path_factory.mktemp("mtls-redis"), tls_files, auth_clients="yes")
    try:
        yield server
    finally:
        stop(process)


def test_plain_connections_are_refused_by_the_tls_only_server(tls_redis):  # noqa: F811
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=tls_redis.port, username=ADMIN, password=ADMIN_PASSWORD, socket_timeout=2).ping()


def test_view_reads_over_tls_with_the_profile_credentials(tmp_path, tls_redis, tls_files, env, written,  # noqa: F811
                                                          capsys):
    assert view(jobs_file(tmp_path, profile_line(tls_redis, tls_files))) == 0
    out = capsys.readouterr().out
    assert out.startswith("financial:u1  version 3  updated 2026-11-17T10:00:03.000Z  (expires in ")
    assert "riskTolerance" in out and '"low"' in out


@pytest.mark.parametrize("case, fields, expected", [
    ("wrong CA", {"ca_location": "WRONG"}, "Redis's TLS certificate is not trusted: "),
    ("system CAs", {"ca_location": ""}, "Redis's TLS certificate is not trusted: "),
    ("wrong password", {"password": "not-the-password"}, "Redis refused the login: invalid username-password"),
    ("no password", {"username": "", "password": ""}, "Redis refused the login: Authentication required"),
    ("host not in the certificate", {"url": "HOST2"}, "IP address mismatch"),
])
def test_a_wrong_ca_or_password_is_one_line_and_exit_1(tmp_path, tls_redis, tls_files, env, written, capsys,  # noqa: F811
                                                       case, fields, expected):
    special = {"WRONG": str(tls_files.wrong_ca), "HOST2": f"rediss://127.0.0.2:{tls_redis.port}/0"}
    fields = {k: special.get(v, v) for k, v in fields.items()}
    assert view(jobs_file(tmp_path, profile_line(tls_redis, tls_files, **fields))) == 1, case
    err = one_line_failure(capsys, "not-the-password")
    assert err.startswith("ctxsync view: ") and expected in err, err


def test_tls_files_with_a_plain_url_are_a_config_error(tmp_path, tls_redis, tls_files, env, capsys):  # noqa: F811
    line = profile_line(tls_redis, tls_files, url=f"redis://127.0.0.1:{tls_redis.port}/0")
    assert view(jobs_file(tmp_path, line)) == 2
    assert "ca_location needs a rediss:// url" in one_line_failure(capsys)


def test_a_server_requiring_client_certificates(tmp_path, client_cert_redis, tls_files, env, capsys):  # noqa: F811
    without = jobs_file(tmp_path, profile_line(client_cert_redis, tls_files))
    assert view(without) == 1
    err = one_line_failure(capsys)  # TLS 1.3: the server's alert, or only a closed socket, whichever comes first
    assert "Redis requires a client certificate: " in err or "cannot reach Redis: " in err, err
    with_cert = jobs_file(tmp_path, profile_line(client_cert_redis, tls_files, cert_location=str(tls_files.client_cert),
                                                 key_location=str(tls_files.client_key)))
    assert view(with_cert) == 1  # connected and authenticated: the server simply has no view of u1
    assert capsys.readouterr().out == "no views for user 'u1'\n"


def test_acl_apply_and_a_model_client_over_tls(tmp_path, tls_redis, tls_files, env, written, capsys):  # noqa: F811
    path = jobs_file(tmp_path, profile_line(tls_redis, tls_files))
    assert cli.main(["acl", "apply", "--jobs", str(path), "--profile", "tls"]) == 0
    assert "model-risk-model" in capsys.readouterr().out
    endpoints = from_urls(f"rediss://model-risk-model@127.0.0.1:{tls_redis.port}/0", settings=SETTINGS,
                          credentials=Credentials(redis_password=MODEL_PASSWORD, redis_ca=str(tls_files.ca)))
    with ContextClient(endpoints, "risk-model") as client:  # (no cache: a model's user gets no CLIENT TRACKING)
        assert client.get("u1", ["financial"]).value("riskTolerance") == "low"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("u1", ["behavioral"])
    wrong_ca = from_urls(f"rediss://model-risk-model@127.0.0.1:{tls_redis.port}/0", settings=SETTINGS,
                         credentials=Credentials(redis_password=MODEL_PASSWORD, redis_ca=str(tls_files.wrong_ca)))
    with ContextClient(wrong_ca, "risk-model") as client, pytest.raises(redis.ConnectionError, match="certificate"):
        client.get("u1", ["financial"])


def test_the_redis_connector_of_a_profile_writes_views_over_tls(tls_redis, tls_files, servers, unique):  # noqa: F811
    import orjson

    from ctxsync.config import Profile
    from ctxsync.io.connectors import profile_connectors
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer

    bootstrap = servers.endpoints()["kafka"]
    views, dlq = f"views-tls-{unique}", f"dlq-tls-{unique}"
    profile = Profile.model_validate({
        "source": {"type": "kafka", "bootstrap": bootstrap},
        "sink": {"type": "kafka", "topics": {"views": views, "dlq": dlq}},
        "redis": {"url": tls_redis.url, "username": ADMIN, "password": ADMIN_PASSWORD,
                  "ca_location": str(tls_files.ca), "prefix": f"c{unique}"}})
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(views, 1), TopicSpec(dlq, 1)])
    p = producer({"bootstrap.servers": bootstrap})
    record = a_view("u7", "financial", 2, riskTolerance="high")
    p.produce(views, key=b"financial:u7", value=orjson.dumps(record))
    assert p.flush(10) == 0
    stats = profile_connectors(profile, ("redis",))["redis"].run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.consumed, stats.written, stats.dead_lettered) == (1, 1, 0)
    assert RedisViewSink(admin_client(tls_redis, tls_files), f"c{unique}").read("financial", "u7") == record

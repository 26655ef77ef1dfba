"""Elasticsearch behind TLS + basic auth (nginx in front of noida-db, tests/fixtures_es_tls.py): every ES path
of ctxsync goes through the profile's `elasticsearch:` section (https host, username/password, ca_location)
and works through the terminator: the ES connector indexing history and violations (`ctxsync connect`),
`ctxsync history`, `ctxsync verify`'s document check and `ctxsync drift-report --profile`. A wrong CA, a
wrong password and no credentials each fail as one line, exit 1, no traceback, no secret."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from elasticsearch import ApiError, Elasticsearch

from ctxsync import cli
from ctxsync.config import ElasticsearchEndpoint
from ctxsync.io.clients import es_client
from tests.fixtures_es_tls import ES_PASSWORD, ES_USER, EsTls, es_tls  # noqa: F401
from tests.fixtures_servers import es_client as plain_es, redis_client, servers, unique  # noqa: F401
from tests.published import Published, events_file, published

pytestmark = pytest.mark.servers


def endpoint(es: EsTls, **fields: str) -> dict[str, str]:
    values = {"hosts": es.url, "username": ES_USER, "password": "${T_ES_PASSWORD}", "ca_location": str(es.tls.ca),
              **fields}
    return {k: v for k, v in values.items() if v != ""}


def with_es(pub: Published, es_section: dict[str, str]) -> Path:
    """The test's jobs.yaml with the local profile's Elasticsearch replaced by `es_section`."""
    data = yaml.safe_load(pub.jobs.read_text())
    data["jobs"]["context-sync"]["profiles"]["local"]["elasticsearch"] = es_section
    pub.jobs.write_text(yaml.safe_dump(data))
    return pub.jobs


def one_line_failure(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert ES_PASSWORD not in captured.err + captured.out and "not-the-password" not in captured.err
    return captured.err


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ES_PASSWORD", ES_PASSWORD)


@pytest.fixture
def pub(servers, plain_es, redis_client, unique, tmp_path, monkeypatch, env, es_tls) -> Published:  # noqa: F811
    """A job's outputs on this test's topics (reference run of 150 generated events, views in Redis), and a
    jobs.yaml whose local profile reaches Elasticsearch only through the TLS terminator."""
    result = published(f"es{unique}", servers, tmp_path, monkeypatch)
    result.publish(events_file(tmp_path / "events.jsonl", events=150, users=8, seed=5))
    result.connect_redis(redis_client)
    with_es(result, endpoint(es_tls))
    return result


@pytest.fixture
def bare(servers, unique, tmp_path, monkeypatch, env) -> Published:  # noqa: F811
    """This test's (empty) topics and jobs.yaml, for the failures."""
    return published(f"ef{unique}", servers, tmp_path, monkeypatch)


def test_the_terminator_requires_tls_and_a_login(es_tls):  # noqa: F811
    upstream_ok = Elasticsearch(es_tls.upstream, request_timeout=5, max_retries=0).info()
    client = es_client(ElasticsearchEndpoint(hosts=es_tls.url, username=ES_USER, password=ES_PASSWORD,
                                             ca_location=str(es_tls.tls.ca)))
    assert client.info()["version"]["number"] == upstream_ok["version"]["number"]
    anonymous = es_client(ElasticsearchEndpoint(hosts=es_tls.url, ca_location=str(es_tls.tls.ca)))
    with pytest.raises(ApiError) as refused:
        anonymous.info()
    assert refused.value.meta.status == 401
    plain = Elasticsearch(f"http://127.0.0.1:{es_tls.port}", request_timeout=5, max_retries=0)
    with pytest.raises(ApiError) as no_tls:  # nginx answers plain HTTP on a TLS port with 400
        plain.info()
    assert no_tls.value.meta.status == 400


def test_connector_history_and_verify_work_through_tls_and_basic_auth(pub, es_tls, plain_es, capsys):  # noqa: F811
    jobs = str(pub.jobs)
    assert cli.main(["connect", "elasticsearch", "--until-caught-up", "--jobs", jobs]) == 0
    out = capsys.readouterr().out
    written = int(out.split(" written")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert out.startswith("elasticsearch: ") and written > 100, out
    plain_es.indices.refresh(index="context-*")
    indexed = plain_es.count(index="context-history-*")["count"] + plain_es.count(index="context-violations")["count"]
    assert indexed == written  # what the connector wrote through nginx is in noida-db
    user = plain_es.search(index="context-history-*", size=1)["hits"]["hits"][0]["_source"]["contextDelta"]["userId"]
    assert cli.main(["history", "--user", user, "--json", "--jobs", jobs]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and {line["contextDelta"]["userId"] for line in lines} == {user}
    assert cli.main(["verify", "--json", "--jobs", jobs]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["es_checked"] == report["history_records"] > 100 and report["findings"] == []


def test_drift_report_publishes_with_the_profiles_client(pub, es_tls, plain_es, tmp_path, capsys):  # noqa: F811
    record = {"windowStart": "2026-11-17T10:00:00.000Z", "category": "behavioral", "attribute": "segment",
              "scores": {"psi": 0.3}, "thresholds": {"psi": 0.2}, "alerts": ["psi"], "categorical": True}
    drift = tmp_path / "drift.jsonl"
    drift.write_bytes(orjson.dumps(record) + b"\n")
    assert cli.main(["drift-report", str(drift), "--es", "--profile", "local", "--jobs", str(pub.jobs)]) == 0
    assert f"1 drift records -> Elasticsearch {es_tls.url} index context-drift" in capsys.readouterr().out
    plain_es.indices.refresh(index="context-drift")
    assert plain_es.count(index="context-drift")["count"] == 1


@pytest.mark.parametrize("case, fields, expected", [
    ("wrong CA", {"ca_location": "WRONG"}, "Elasticsearch's TLS certificate is not trusted: "),
    ("system CAs", {"ca_location": ""}, "Elasticsearch's TLS certificate is not trusted: "),
    ("wrong password", {"password": "not-the-password"}, "Elasticsearch refused the login (HTTP 401)"),
    ("no credentials", {"username": "", "password": ""}, "Elasticsearch refused the login (HTTP 401)"),
])
@pytest.mark.parametrize("command", ["history", "connect"])
def test_a_wrong_ca_or_password_is_one_line_and_exit_1(bare, es_tls, capsys, case, fields, expected,  # noqa: F811
                                                       command):
    fields = {k: str(es_tls.tls.wrong_ca) if v == "WRONG" else v for k, v in fields.items()}
    jobs = str(with_es(bare, endpoint(es_tls, **fields)))
    args = ["history", "--user", "u1"] if command == "history" else ["connect", "elasticsearch", "--until-caught-up"]
    assert cli.main([*args, "--jobs", jobs]) == 1, case
    err = one_line_failure(capsys)
    assert err.startswith(f"ctxsync {command}: {expected}"), err

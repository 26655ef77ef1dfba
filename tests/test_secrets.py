"""Secrets are never printed: with known Kafka SASL, Redis and Elasticsearch passwords in a profile, none of
them appears in a command's stdout/stderr (servers down, a typo in the profile, a bad value next to a
secret), in the repr/str/dump of the resolved profile, in the Flink job spec's repr, or in the logs of a
Flink job whose Kafka table carries the password in `sasl.jaas.config`. Wrong passwords
against real servers are covered by test_redis_tls.py and test_es_tls.py (one line, no secret)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from ctxsync import cli
from ctxsync.config import resolve_job, resolve_profile
from pipelines.flink.kafka import job_spec
from tests.fixtures_servers import servers  # noqa: F401

SECRETS = {"T_KAFKA_PW": "kafka-secret-1Zr", "T_REDIS_PW": "redis-secret-2Yq", "T_ES_PW": "es-secret-3Xp"}
PROFILE = """\
version: 1
jobs:
  context-sync:
    type: context-sync
    settings:
      categories: {{financial: [riskTolerance]}}
    profiles:
      p:
        source:
          type: kafka
          bootstrap: "127.0.0.1:9"
          security: {{protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-256, username: reader, {kafka_password}}}
        sink: {{type: kafka}}
        redis: {{url: "redis://127.0.0.1:9/0", username: viewer, password: "${{T_REDIS_PW}}"}}
        elasticsearch: {{hosts: "http://127.0.0.1:9", username: analyst, password: "${{T_ES_PW}}"}}
"""


def jobs_file(folder: Path, kafka_password: str = 'password: "${T_KAFKA_PW}"') -> Path:
    path = folder / "jobs.yaml"
    path.write_text(PROFILE.format(kafka_password=kafka_password))
    return path


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text, text


def test_the_resolved_profile_never_shows_its_secrets(tmp_path):
    profile = resolve_profile(resolve_job(jobs_file(tmp_path), "context-sync", []).profile("p"), "p", {})
    assert profile.source.security.password.get_secret_value() == SECRETS["T_KAFKA_PW"]  # resolved, but hidden:
    assert_no_secret(repr(profile) + str(profile) + str(profile.model_dump()) + profile.model_dump_json())
    assert_no_secret(repr(job_spec(profile, "context-sync")))


@pytest.mark.parametrize("args", [
    ["view", "u1", "--category", "financial"],          # Redis down
    ["history", "--user", "u1"],                        # Elasticsearch down
    ["dlq", "list"],                                    # Kafka down (librdkafka's own message)
], ids=lambda a: a[0])
def test_failures_against_servers_that_are_down_print_no_secret(tmp_path, capsys, args):
    assert cli.main([*args, "--jobs", str(jobs_file(tmp_path)), "--profile", "p"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"ctxsync {args[0]}") and captured.err.count("\n") == 1
    assert ": cannot reach " in captured.err, captured.err
    assert_no_secret(captured.out + captured.err)


@pytest.mark.parametrize("kafka_password, expected", [
    ('passwrd: "${T_KAFKA_PW}"', "security.passwrd: Extra inputs are not permitted"),  # a typo'd key
    ('password: ["${T_KAFKA_PW}"]', "security.password: Input should be a valid string"),  # a wrong type
])
def test_a_config_error_next_to_a_secret_does_not_quote_it(tmp_path, capsys, kafka_password, expected):
    assert cli.main(["view", "u1", "--jobs", str(jobs_file(tmp_path, kafka_password)), "--profile", "p"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert_no_secret(err)


@pytest.mark.flink
def test_a_flink_job_whose_ddl_carries_sasl_jaas_config_logs_no_password(servers):  # noqa: F811
    """noida-db accepts SASL PLAIN without checking it, so a real Flink job can read a topic with the
    password in its table's `sasl.jaas.config`; the Kafka client logs that property as [hidden]."""
    from pyflink.table import StreamTableEnvironment

    from ctxsync.config import KafkaSecurity
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
    from ctxsync.jars import kafka_jars
    from pipelines.flink.env import flink_environment
    from pipelines.flink.kafka import KafkaJobSpec, source_ddl

    secret, bootstrap, topic = SECRETS["T_KAFKA_PW"], servers.endpoints()["kafka"], f"jaas-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(topic, 1)])
    out = producer({"bootstrap.servers": bootstrap})
    out.produce(topic, b'{"eventId": "e1"}')
    assert out.flush(10) == 0
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="reader", password=secret)
    t_env = StreamTableEnvironment.create(flink_environment({}, 1, [str(j) for j in kafka_jars()]))
    t_env.execute_sql(source_ddl(KafkaJobSpec(bootstrap, input_topic=topic, client_properties=security.java_properties())))
    with t_env.execute_sql("SELECT `offset` FROM ctx_events").collect() as rows:
        assert [row[0] for row in rows] == [0]
    logs = "".join(path.read_text(errors="replace") for path in Path(os.environ["FLINK_LOG_DIR"]).glob("*.log"))
    assert "sasl.jaas.config = [hidden]" in logs
    assert secret not in logs

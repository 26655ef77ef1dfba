"""Secrets are never printed: with known Kafka SASL, Redis and Elasticsearch passwords in a profile, none of
them appears in a command's stdout/stderr (servers down, a typo in the profile, a bad value next to a
secret), in the repr/str/dump of the resolved profile, in the Flink job spec's repr, or in the logs of a
Flink job whose Kafka table carries the password in `sasl.jaas.config`. Wrong passwords
against real servers are covered by test_redis_tls.py and test_es_tls.py (one line, no secret)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctxsync import cli
from ctxsync.config import resolve_job, resolve_profile
from ctxsync.servers import LocalServers, Server, free_port
from pipelines.flink.kafka import job_spec

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


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An Apache Kafka broker with a SASL_PLAINTEXT listener whose one PLAIN user is `reader`, password
    SECRETS["T_KAFKA_PW"] (its PLAINTEXT listener is for the test's own setup)."""
    local = LocalServers(tmp_path_factory.mktemp("sasl-kafka"))
    users = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_reader="{SECRETS["T_KAFKA_PW"]}";'
    try:
        yield local.start("kafka", listeners={"SASL_PLAINTEXT": free_port()},
                          settings={"sasl.enabled.mechanisms": "PLAIN",
                                    "listener.name.sasl_plaintext.plain.sasl.jaas.config": users})
    finally:
        local.down()


@pytest.mark.flink
def test_a_flink_job_whose_ddl_carries_sasl_jaas_config_logs_no_password(sasl_kafka):
    """A real Flink job reads a topic through Kafka's SASL PLAIN listener, with the password in its table's
    `sasl.jaas.config`; the Kafka client logs that property as [hidden]."""
    from pyflink.table import StreamTableEnvironment

    from ctxsync.config import KafkaSecurity
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
    from ctxsync.jars import kafka_jars
    from pipelines.flink.env import flink_environment
    from pipelines.flink.kafka import KafkaJobSpec, source_ddl

    secret, bootstrap, topic = SECRETS["T_KAFKA_PW"], sasl_kafka.endpoints["kafka"], f"jaas-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(topic, 1)])
    out = producer({"bootstrap.servers": bootstrap})
    out.produce(topic, b'{"eventId": "e1"}')
    assert out.flush(10) == 0
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", username="reader", password=secret)
    t_env = StreamTableEnvironment.create(flink_environment({}, 1, [str(j) for j in kafka_jars()]))
    sasl_bootstrap = sasl_kafka.endpoints["kafka_sasl_plaintext"]
    t_env.execute_sql(source_ddl(KafkaJobSpec(sasl_bootstrap, input_topic=topic,
                                              client_properties=security.java_properties())))
    with t_env.execute_sql("SELECT `offset` FROM ctx_events").collect() as rows:
        assert [row[0] for row in rows] == [0]
    logs = "".join(path.read_text(errors="replace") for path in Path(os.environ["FLINK_LOG_DIR"]).glob("*.log"))
    assert "sasl.jaas.config = [hidden]" in logs
    assert secret not in logs

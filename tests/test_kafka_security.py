"""Every Kafka client ctxsync builds gets the profile's security (unit tests, no broker).

A profile with SASL_SSL settings (and one whose sink is another cluster with its own security) is resolved;
the confluent-kafka constructors are replaced by a recorder that keeps each client's configuration and stops
the command there, and each command, connector, store and library path that talks to Kafka is driven until
its first client. Every recorded client must carry `security.protocol`, `sasl.mechanism`, `sasl.username`,
`sasl.password` and `ssl.ca.location` of the cluster it talks to (the input's for the input, the sink's for
the outputs). The Flink job's DDL must carry the same as Java properties (`sasl.jaas.config`, PEM truststore).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import confluent_kafka
import confluent_kafka.admin
import pytest

from ctxsync import cli
from ctxsync.audit.stores import KafkaStore
from ctxsync.client import from_profile
from ctxsync.config import resolve_job, resolve_profile
from ctxsync.io.clients import kafka_config
from ctxsync.io.connectors import elasticsearch_connector, redis_connector
from ctxsync.io.dead_letters import read_ledger
from ctxsync.io.kafka_io import read_topic
from pipelines.flink.kafka import job_spec, sink_ddl, source_ddl
from pipelines.flink.kafka_run import _input_config

READER_PASSWORD = "reader-sasl-Pw4x"
WRITER_PASSWORD = "writer-sasl-Qz8m"
INPUT = {"bootstrap.servers": "in.example:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
         "sasl.username": "reader", "sasl.password": READER_PASSWORD, "ssl.ca.location": "/etc/ctxsync/in-ca.pem"}
OUTPUT = {"bootstrap.servers": "out.example:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
          "sasl.username": "writer", "sasl.password": WRITER_PASSWORD, "ssl.ca.location": "/etc/ctxsync/out-ca.pem"}
JOBS = """\
version: 1
jobs:
  context-sync:
    type: context-sync
    settings:
      categories: {financial: [riskTolerance], behavioral: [segment]}
    profiles:
      secure:       # one cluster: the sink inherits the source's bootstrap and security
        source:
          type: kafka
          bootstrap: "in.example:9093"
          topic: in.events
          security: {protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-512, username: reader,
                     password: "${T_READER_PW}", ca_location: /etc/ctxsync/in-ca.pem}
        sink: {type: kafka, create_topics: true}
        redis: {url: "redis://127.0.0.1:9/0"}
        elasticsearch: {hosts: "http://127.0.0.1:9"}
      split:        # the outputs on another cluster with their own security
        source:
          type: kafka
          bootstrap: "in.example:9093"
          topic: in.events
          security: {protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-512, username: reader,
                     password: "${T_READER_PW}", ca_location: /etc/ctxsync/in-ca.pem}
        sink:
          type: kafka
          bootstrap: "out.example:9093"
          security: {protocol: SASL_SSL, sasl_mechanism: PLAIN, username: writer,
                     password: "${T_WRITER_PW}", ca_location: /etc/ctxsync/out-ca.pem}
        redis: {url: "redis://127.0.0.1:9/0"}
        elasticsearch: {hosts: "http://127.0.0.1:9"}
"""


class Captured(Exception):
    """Raised by the recorder instead of connecting: the command stops at its first Kafka client."""


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("T_READER_PW", READER_PASSWORD)
    monkeypatch.setenv("T_WRITER_PW", WRITER_PASSWORD)
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY", raising=False)
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS)
    return path


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """(kind, configuration) of every confluent-kafka client constructed while the test runs."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def recorder(kind: str):
        def construct(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            seen.append((kind, dict(config)))
            raise Captured(kind)
        return construct

    monkeypatch.setattr(confluent_kafka, "Producer", recorder("Producer"))
    monkeypatch.setattr(confluent_kafka, "Consumer", recorder("Consumer"))
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", recorder("AdminClient"))
    return seen


def profile_of(jobs: Path, name: str) -> Any:
    return resolve_profile(resolve_job(jobs, "context-sync", []).profile(name), name, {})


def assert_secured(config: dict[str, Any], expected: dict[str, str]) -> None:
    assert {k: config.get(k) for k in expected} == expected, config


def assert_secured_by_cluster(seen: list[tuple[str, dict[str, Any]]]) -> None:
    """Each client has the security of the cluster it talks to (the input's or the outputs')."""
    assert seen, "no Kafka client was built"
    for kind, config in seen:
        expected = INPUT if config.get("bootstrap.servers") == INPUT["bootstrap.servers"] else OUTPUT
        assert_secured(config, expected)


def test_the_security_settings_as_librdkafka_and_java_properties(jobs):
    source = profile_of(jobs, "secure").source.security
    assert source.client_config() == {k: v for k, v in INPUT.items() if k != "bootstrap.servers"}
    java = source.java_properties()
    assert java == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                                        f'username="reader" password="{READER_PASSWORD}";',
                    "ssl.truststore.type": "PEM", "ssl.truststore.location": "/etc/ctxsync/in-ca.pem"}


@pytest.mark.parametrize("name, output", [("secure", {**INPUT}), ("split", OUTPUT)])
def test_config_builders_use_the_clusters_security(jobs, name, output):
    profile = profile_of(jobs, name)
    assert_secured(kafka_config(profile), output)  # outputs: connectors, verify, snapshot, dlq, audit, ...
    assert_secured(_input_config(profile), INPUT)  # the job's input positions
    endpoints = from_profile(name, jobs, dev_endpoints={})  # ctxsync.client: publishes events, reads violations
    assert_secured(endpoints.kafka, output)


def test_the_flink_job_ddl_carries_the_source_and_sink_security(jobs):
    spec = job_spec(profile_of(jobs, "split"), "context-sync")
    source, sink = source_ddl(spec), sink_ddl(spec)
    assert "'properties.bootstrap.servers' = 'in.example:9093'" in source
    assert "'properties.security.protocol' = 'SASL_SSL'" in source
    assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in source
    assert f'username="reader" password="{READER_PASSWORD}";' in source
    assert "'properties.ssl.truststore.location' = '/etc/ctxsync/in-ca.pem'" in source
    assert "'properties.bootstrap.servers' = 'out.example:9093'" in sink
    assert "'properties.sasl.mechanism' = 'PLAIN'" in sink
    assert "plain.PlainLoginModule required username=\"writer\"" in sink and WRITER_PASSWORD in sink
    assert "'properties.ssl.truststore.location' = '/etc/ctxsync/out-ca.pem'" in sink
    assert READER_PASSWORD not in sink and WRITER_PASSWORD not in source
    assert READER_PASSWORD not in repr(spec) and WRITER_PASSWORD not in repr(spec)
    same = job_spec(profile_of(jobs, "secure"), "context-sync")
    assert f'password="{READER_PASSWORD}"' in sink_ddl(same)  # no sink security: the source's


@pytest.mark.parametrize("command", [
    ["verify"], ["snapshot", "create", "s", "--from-topic", "--dir", "{tmp}/snaps"], ["dlq", "list"],
    ["as-of", "--user", "u1", "--at", "2026-11-17T10:00:00Z"], ["trace", "evt-1"],
    ["replay", "{tmp}/events.jsonl"], ["replay", "--from-topic", "old.events"],
    ["connect", "redis", "--until-caught-up"], ["run", "context-sync"], ["submit", "context-sync"],
    ["drift-report", "{tmp}/drift.jsonl", "--kafka"],
], ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("profile", ["secure", "split"])
def test_every_command_builds_its_kafka_clients_with_the_profiles_security(jobs, clients, tmp_path, capsys,
                                                                          command, profile):
    (tmp_path / "events.jsonl").write_text('{"eventId": "e1"}\n')
    (tmp_path / "drift.jsonl").write_text(
        '{"windowStart": "2026-11-17T10:00:00.000Z", "category": "behavioral", "attribute": "segment", '
        '"scores": {}, "thresholds": {}, "alerts": [], "categorical": true}\n')
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    assert cli.main([*args, "--profile", profile, "--jobs", str(jobs)]) == 1
    err = capsys.readouterr().err
    assert "Captured" in err and READER_PASSWORD not in err and WRITER_PASSWORD not in err, err
    assert_secured_by_cluster(clients)


@pytest.mark.parametrize("profile", ["secure", "split"])
def test_connectors_stores_and_readers_use_the_given_security(jobs, clients, profile):
    config = kafka_config(profile_of(jobs, profile))
    builders = [
        lambda: redis_connector(config, MagicMock()).run(until_caught_up=True),
        lambda: elasticsearch_connector(config, MagicMock()).run(until_caught_up=True),
        lambda: KafkaStore(config, "context.audit").read(),
        lambda: read_ledger(config, "context.dlq"),
        lambda: list(read_topic(config, "context.history")),
    ]
    for build in builders:
        with pytest.raises(Captured):
            build()
    assert len(clients) == len(builders)
    assert_secured_by_cluster(clients)

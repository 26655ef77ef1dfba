"""The local Apache Kafka broker's configuration and jar cache (no broker started here: the `servers`
tests run it)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctxsync import kafka_broker, kafka_dist, maven_dist


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_are_one_kraft_node_on_loopback_with_the_decided_settings(tmp_path):
    got = props(kafka_broker.server_properties(9092, 9093, tmp_path / "data"))
    assert got["process.roles"] == "broker,controller" and got["node.id"] == "1"
    assert got["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert got["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert got["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert got["log.dirs"] == str(tmp_path / "data")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):
        assert got[key] == "1"
    assert got["group.initial.rebalance.delay.ms"] == "0"
    assert got["log.message.timestamp.after.max.ms"] == "3600000"  # Kafka 4's default, kept on purpose
    assert got["log.retention.ms"] == "-1"


def test_extra_listeners_and_settings(tmp_path):
    got = props(kafka_broker.server_properties(1, 2, tmp_path, {"sasl_plaintext": 3},
                                               {"sasl.enabled.mechanisms": "PLAIN", "num.partitions": "3"}))
    assert got["listeners"] == "PLAINTEXT://127.0.0.1:1,SASL_PLAINTEXT://127.0.0.1:3,CONTROLLER://127.0.0.1:2"
    assert got["listener.security.protocol.map"] == \
        "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert got["sasl.enabled.mechanisms"] == "PLAIN" and got["num.partitions"] == "3"


def test_cluster_ids_look_like_kafkas_own():
    ids = {kafka_broker._cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) and not i.startswith("-") for i in ids)


def test_only_a_jvm_running_kafka_counts_as_the_broker():
    assert kafka_broker.is_broker_cmdline(["/usr/bin/java", "-Xmx512m", "-cp", "x/*", "kafka.Kafka", "s.props"])
    assert not kafka_broker.is_broker_cmdline(["/usr/bin/java", "-cp", "x/*", "org.apache.flink.Main"])
    assert not kafka_broker.is_broker_cmdline(["python", "kafka.Kafka"])
    assert not kafka_broker.is_broker_cmdline([])


def test_the_pom_pins_the_broker_version():
    assert re.fullmatch(r"4\.\d+\.\d+", kafka_dist.kafka_version())
    assert kafka_dist.libs_dir().parts[-3:] == ("kafka", kafka_dist.kafka_version(), "libs")


def test_missing_mvn_or_java_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path))  # an empty cache: it would have to resolve
    monkeypatch.setattr(maven_dist.shutil, "which", lambda name: None if name == "mvn" else f"/usr/bin/{name}")
    assert maven_dist.main(kafka_dist.KAFKA.resolve, "ctxsync.kafka_dist") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mvn not found" in err and "apt-get install maven" in err
    monkeypatch.setattr(maven_dist.shutil, "which", lambda name: None)
    with pytest.raises(maven_dist.MavenDistError, match="java not found"):
        kafka_dist.resolve()


def test_a_pom_without_a_version_is_refused(tmp_path):
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    dist = maven_dist.MavenDist("the Kafka broker", pom, "kafka.version", "kafka_2.13-*.jar")
    with pytest.raises(maven_dist.MavenDistError, match="no <kafka.version>"):
        dist.version()
    missing = maven_dist.MavenDist("the Kafka broker", tmp_path / "missing.xml", "kafka.version", "*.jar")
    with pytest.raises(maven_dist.MavenDistError, match="missing.xml not found"):
        missing.version()

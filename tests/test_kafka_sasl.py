"""Every Kafka client of ctxsync through a real SASL_SSL listener (SCRAM-SHA-512, StandardAuthorizer ACLs) of
Apache Kafka (tests/fixtures_kafka_sasl.py), each role with its own user and only its own ACLs; Redis and
Elasticsearch are the shared loopback servers.

End to end: the operator replays events (`ctxsync replay`), the Flink job (`ctxsync run`, Kafka profile, the
job's user in its DDL's `sasl.jaas.config` and a PEM truststore) turns them into Redis views and, through the
Elasticsearch connector, history; a model publishes through the client library (and waits for its outcome);
`ctxsync connect redis|elasticsearch` run as the connector users; `verify`, `trace`, `dlq list` and
`drift-report --kafka` run as the operator. Then a wrong password, a wrong CA and a missing ACL each end every
command in one line, exit 1, without a hang; a job whose user lacks the transactional-id ACL fails in one line.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import KafkaException

from ctxsync import cli
from ctxsync.client import ContextClient, from_profile
from ctxsync.config import resolve_job
from ctxsync.errors import RuntimeFailure, explain
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.kafka_io import read_topic
from ctxsync.io.redis_views import RedisViewSink
from ctxsync.kafka_security import ScramUser, listener_settings, scram_format_args
from pipelines.drift_sinks import DRIFT_TOPIC
from pipelines.file_outputs import OutputCollector
from pipelines.reference import read_lines, run_reference
from tests.fixtures_kafka_sasl import (
    ES_CONNECTOR, JOB, JOB_GROUP, JOB_NO_TXN, MODEL, NO_TXN_GROUP, OPERATOR, OTHER_MODEL, REDIS_CONNECTOR, TOPICS,
    TXN_PREFIX, SecureKafka, sasl_kafka,
)
from tests.fixtures_servers import es_client, redis_client, servers  # noqa: F401
from tests.helpers import ROOT

pytestmark = pytest.mark.servers

JOB_PREFIX, CONNECTOR_PREFIX = "sec", "secconn"  # Redis prefixes: the job's views, the Redis connector's copy
OUTPUT_KINDS = ("views", "history", "violations", "dlq")


def security(kafka: SecureKafka, user: ScramUser, **changes: Any) -> dict[str, Any]:
    return {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": user.name,
            "password": user.password, "ca_location": str(kafka.tls.ca), **changes}


def profile(kafka: SecureKafka, servers, user: ScramUser, state: Path, redis_prefix: str = JOB_PREFIX,
            **changes: Any) -> dict[str, Any]:
    """A Kafka profile on the secured broker as `user` (changes: e.g. a wrong password)."""
    endpoints = servers.endpoints()
    return {
        "source": {"type": "kafka", "bootstrap": kafka.bootstrap, "topic": TOPICS["events"], "group_id": JOB_GROUP,
                   "start": "earliest", "bounded": False, "security": security(kafka, user, **changes)},
        "sink": {"type": "kafka", "delivery": "exactly-once", "partitions": 3, "create_topics": False,
                 "checkpoint_interval": "1s", "transactional_id_prefix": TXN_PREFIX,
                 "topics": {kind: TOPICS[kind] for kind in OUTPUT_KINDS}},
        "redis": {"url": endpoints["redis"], "prefix": redis_prefix},
        "elasticsearch": {"hosts": endpoints["elasticsearch"]},
        "state_dir": str(state),
    }


@pytest.fixture(scope="module")
def jobs(sasl_kafka: SecureKafka, servers, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """jobs.yaml with one profile per role, and the broken ones."""
    folder = tmp_path_factory.mktemp("sasl-jobs")
    state = folder / "state"
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", []).model_dump(mode="json")
    k, s = sasl_kafka, servers
    job["profiles"] = {
        "job": profile(k, s, JOB, state),
        "model": profile(k, s, MODEL, state),
        "redis-connector": profile(k, s, REDIS_CONNECTOR, state, CONNECTOR_PREFIX),
        "es-connector": profile(k, s, ES_CONNECTOR, state),
        "operator": profile(k, s, OPERATOR, state),
        "wrong-password": profile(k, s, OPERATOR, state, password="not-the-password"),
        "wrong-ca": profile(k, s, OPERATOR, state, ca_location=str(k.tls.wrong_ca)),
        "no-acl": profile(k, s, OTHER_MODEL, state),
        "job-no-txn": profile(k, s, JOB_NO_TXN, state),
    }
    job["profiles"]["job-no-txn"]["source"].update(group_id=NO_TXN_GROUP, bounded=True)
    path = folder / "jobs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job}}))
    return path


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Events with invalid ones among them (dead letters), duplicates and conflicts."""
    path = tmp_path_factory.mktemp("sasl-events") / "events.jsonl"
    options = GeneratorOptions(events=300, users=12, seed=23, invalid_rate=0.05)
    path.write_bytes(b"".join(line + b"\n" for line in generate_lines(options)))
    return path


def ctxsync(capsys, *args: str) -> tuple[int, str, str]:
    """`ctxsync ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def start_job(jobs: Path, profile_name: str) -> subprocess.Popen:
    """`ctxsync run context-sync` (Flink) in a subprocess: PyFlink stays out of the test process."""
    return subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "run", "context-sync", "--profile", profile_name,
                             "--jobs", str(jobs)], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def reference(events_file: Path, jobs: Path) -> OutputCollector:
    job = resolve_job(jobs, "context-sync", [])
    collector = OutputCollector()
    collector.add_all(run_reference(read_lines(events_file), str(events_file), job.settings.to_settings()))
    collector.finish()
    return collector


@pytest.mark.flink
def test_every_client_works_through_sasl_ssl_with_its_own_user(sasl_kafka, servers, redis_client, es_client,  # noqa: F811
                                                              jobs, events_file, capsys, tmp_path):
    expected = reference(events_file, jobs)

    # the operator replays the file into the input topic
    code, out, err = ctxsync(capsys, "replay", str(events_file), "--profile", "operator", "--jobs", str(jobs))
    assert code == 0, err
    assert f"{expected.summary.read:,} events sent" in err

    # the job (unbounded; its Elasticsearch connector runs alongside), and a model publishing through it
    running = start_job(jobs, "job")
    client = ContextClient(from_profile("model", jobs, dev_endpoints={}), "risk-model")
    try:
        outcome = client.publish("sasl-user", {"riskTolerance": "low"}, wait=True, timeout_s=240)
        assert (outcome.outcome, outcome.applied) == ("applied", ("riskTolerance",))
        sent = client.publish("sasl-user", {"segment": "power"})
        wait_for(lambda: client.get("sasl-user").value("segment") == "power", "the second publish's view")
        assert client.conflicts([sent]) == []  # the model reads the violations topic it is granted
        views = RedisViewSink(redis_client, JOB_PREFIX)
        want = sorted((orjson.loads(text) for _, text in expected.views.values()), key=lambda v: v["key"])
        wait_for(lambda: [v for v in views.read_all() if v["userId"] != "sasl-user"] == want, "the views")
        accepted = expected.summary.accepted + 2

        def history() -> int:
            es_client.indices.refresh(index="context-history-*")
            return es_client.count(index="context-history-*")["count"]

        wait_for(lambda: history() == accepted, "the history in Elasticsearch")
    finally:
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=300)
        client.close()
    assert running.returncode == 0, err[-3000:]

    # the operator's reads: verify, trace, the dead letters, and drift records published to Kafka
    code, out, err = ctxsync(capsys, "verify", "--profile", "operator", "--jobs", str(jobs))
    assert code == 0, out + err
    assert "0 mismatches" in out
    code, out, err = ctxsync(capsys, "trace", outcome.event_id, "--json", "--profile", "operator",
                             "--jobs", str(jobs))
    assert code == 0, err
    wheres = " ".join(hop["where"] for hop in json.loads(out)["hops"])
    assert TOPICS["events"] in wheres and TOPICS["history"] in wheres, wheres
    code, out, err = ctxsync(capsys, "dlq", "list", "--profile", "operator", "--jobs", str(jobs))
    assert code == 0, err
    assert f"{expected.summary.dead_lettered:,}" in out
    drift = tmp_path / "drift.jsonl"
    drift.write_text('{"windowStart": "2026-11-17T10:00:00.000Z", "category": "behavioral", "attribute": "segment", '
                     '"scores": {}, "thresholds": {}, "alerts": [], "categorical": true}\n')
    code, out, err = ctxsync(capsys, "drift-report", str(drift), "--kafka", "--profile", "operator",
                             "--jobs", str(jobs))
    assert code == 0, err
    published = read_topic(sasl_kafka.config(OPERATOR), DRIFT_TOPIC)
    assert [json.loads(m.value())["attribute"] for m in published] == ["segment"]

    # the connectors, each as its own user: the Redis one rebuilds the views under another prefix
    code, out, err = ctxsync(capsys, "connect", "redis", "--until-caught-up", "--profile", "redis-connector",
                             "--jobs", str(jobs))
    assert code == 0, err
    rebuilt = RedisViewSink(redis_client, CONNECTOR_PREFIX).read_all()
    assert sorted(v["key"] for v in rebuilt) == sorted(v["key"] for v in views.read_all())
    code, out, err = ctxsync(capsys, "connect", "elasticsearch", "--until-caught-up", "--profile", "es-connector",
                             "--jobs", str(jobs))
    assert code == 0, err
    assert history() == accepted


REFUSALS = {  # profile -> what the one line says
    "wrong-password": "Kafka refused the login: .*SASL authentication error: Authentication failed",
    "wrong-ca": "Kafka's TLS handshake failed: .*certificate verify failed",
    "no-acl": "TOPIC_AUTHORIZATION_FAILED",
}
COMMANDS = [
    ["replay", "{events}"], ["verify"], ["trace", "evt-1"], ["dlq", "list"], ["connect", "redis", "--until-caught-up"],
    ["connect", "elasticsearch", "--until-caught-up"], ["drift-report", "{drift}", "--kafka"], ["run", "context-sync"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_wrong_password_wrong_ca_or_missing_acl_ends_every_command_in_one_line(jobs, events_file, capsys,
                                                                                 tmp_path, command, refusal):
    drift = tmp_path / "drift.jsonl"
    drift.write_text('{"windowStart": "2026-11-17T10:00:00.000Z", "category": "behavioral", "attribute": "segment", '
                     '"scores": {}, "thresholds": {}, "alerts": [], "categorical": true}\n')
    args = [part.format(events=events_file, drift=drift) for part in command]
    # it returns (librdkafka alone would retry a refused login for ever), in one line
    code, out, err = ctxsync(capsys, *args, "--profile", refusal, "--jobs", str(jobs))
    assert code == 1, out + err
    assert len(err.splitlines()) == 1 and err.startswith("ctxsync "), err
    assert re.search(REFUSALS[refusal], err), err


@pytest.mark.parametrize("refusal", REFUSALS)
def test_the_client_library_refuses_in_one_line(jobs, refusal):
    client = ContextClient(from_profile(refusal, jobs, dev_endpoints={}), "risk-model")
    try:
        with pytest.raises((KafkaException, RuntimeFailure)) as raised:
            client.publish("u1", {"riskTolerance": "low"})
    finally:
        client.close()
    message = str(explain(raised.value))
    assert "\n" not in message and re.search(REFUSALS[refusal], message), message


@pytest.mark.flink
def test_a_job_whose_user_may_not_use_its_transactional_ids_fails_in_one_line(jobs, events_file, capsys):
    code, _, err = ctxsync(capsys, "replay", str(events_file), "--profile", "operator", "--jobs", str(jobs))
    assert code == 0, err  # input to read: the job gets as far as its first transaction
    running = start_job(jobs, "job-no-txn")
    out, err = running.communicate(timeout=600)
    assert running.returncode == 1, out + err
    last = err.splitlines()[-1]
    assert last.startswith("ctxsync run: ") and "TransactionalIdAuthorization" in last, err[-3000:]
    assert "Traceback" not in err


def test_scram_users_are_format_arguments_and_the_listener_denies_by_default(tmp_path):
    args = scram_format_args([ScramUser("ctxsync-job", "pw-1"), ScramUser("model-a", "pw-2")])
    assert args == ["--add-scram", 'SCRAM-SHA-512=[name=ctxsync-job,password="pw-1"]',
                    "--add-scram", 'SCRAM-SHA-512=[name=model-a,password="pw-2"]']
    with pytest.raises(ValueError, match="passwords without quotes"):
        scram_format_args([ScramUser("u", 'a"b')])
    with pytest.raises(ValueError, match="names are"):
        scram_format_args([ScramUser("u,x", "pw")])
    settings = listener_settings(tmp_path / "keystore.pem", [ScramUser("ctxsync-admin", "pw")])
    assert settings["allow.everyone.if.no.acl.found"] == "false"
    assert settings["super.users"] == "User:ANONYMOUS;User:ctxsync-admin"
    assert settings["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert "pw-secret" not in repr(ScramUser("ctxsync-admin", "pw-secret"))

"""An Apache Kafka broker with a real SASL_SSL listener (SCRAM-SHA-512 users, StandardAuthorizer ACLs), one per
test module, built from ctxsync/kafka_security.py.

Certificates come from tests/fixtures_tls.make_tls (a CA, a server certificate for 127.0.0.1/localhost, and an
unrelated "wrong" CA). The users are written into the metadata log when the storage is formatted
(`StorageTool format --add-scram`), the ACLs are created by the admin user through the SASL_SSL listener, and
the topics are created by the admin too, so no ctxsync role needs CREATE. Roles and what they may do:
- JOB reads the input topic, commits its group, writes the outputs transactionally (prefix TXN_PREFIX);
- JOB_NO_TXN has JOB's ACLs but those on the transactional ids (a job that cannot commit its writes);
- MODEL writes the input topic and reads the violations topic; OTHER_MODEL has no ACL at all;
- REDIS_CONNECTOR / ES_CONNECTOR read their topics, commit their groups, write the DLQ;
- OPERATOR (replay, verify, trace, dlq, drift-report) reads every topic, writes the input (replay) and the
  drift topic, and reads the groups whose positions `verify` compares.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctxsync import kafka_broker, kafka_dist
from ctxsync.io.connectors import ES_GROUP, REDIS_GROUP
from ctxsync.io.kafka_io import RECORD_LIMIT, TopicSpec, ensure_topics
from ctxsync.kafka_security import (
    LISTENER, ScramUser, connector_acls, create_acls, job_acls, listener_settings, model_acls, reader_acls,
    scram_format_args,
)
from ctxsync.servers import LocalServers, free_port
from pipelines.drift_sinks import DRIFT_TOPIC
from tests.fixtures_tls import Tls, make_tls

PREFIX = "sec"
TOPICS = {**{kind: f"{PREFIX}.{kind}" for kind in ("events", "views", "history", "violations", "dlq")},
          "drift": DRIFT_TOPIC}  # drift-report --kafka writes this fixed topic
JOB_GROUP = f"{PREFIX}-job"
NO_TXN_GROUP = f"{PREFIX}-job-no-txn"
TXN_PREFIX = f"{PREFIX}-txn"

ADMIN = ScramUser("ctxsync-admin", "admin-Scram-9k2")
JOB = ScramUser("ctxsync-job", "job-Scram-4fT")
MODEL = ScramUser("model-risk-model", "model-Scram-7Qa")
OTHER_MODEL = ScramUser("model-recommender", "other-Scram-3Zp")
REDIS_CONNECTOR = ScramUser("ctxsync-redis-connector", "redis-conn-Scram-8Lw")
ES_CONNECTOR = ScramUser("ctxsync-es-connector", "es-conn-Scram-2Mx")
OPERATOR = ScramUser("ctxsync-operator", "operator-Scram-5Rb")
JOB_NO_TXN = ScramUser("ctxsync-job-no-txn", "job-no-txn-Scram-6Hd")  # the job's ACLs but the transactional ids
USERS = (ADMIN, JOB, MODEL, OTHER_MODEL, REDIS_CONNECTOR, ES_CONNECTOR, OPERATOR, JOB_NO_TXN)


@dataclass(frozen=True)
class SecureKafka:
    """The running secured broker: its SASL_SSL bootstrap, its CA, the wrong CA."""

    local: LocalServers
    bootstrap: str
    tls: Tls

    def config(self, user: ScramUser, **changes: Any) -> dict[str, Any]:
        """confluent-kafka settings for `user` over SASL_SSL (changes: e.g. another password or CA)."""
        return {**user.client_config(self.bootstrap, self.tls.ca), **changes}


def _grants() -> dict[ScramUser, list]:
    t = TOPICS
    outputs = [t["views"], t["history"], t["violations"], t["dlq"]]
    return {
        # `ctxsync run` runs the Elasticsearch connector in its own process, with the job's user
        JOB: [*job_acls(t["events"], JOB_GROUP, outputs, TXN_PREFIX),
              *connector_acls([t["history"], t["violations"], t["dlq"]], ES_GROUP, t["dlq"])],
        JOB_NO_TXN: [grant for grant in job_acls(t["events"], NO_TXN_GROUP, outputs, TXN_PREFIX)
                     if grant[0] != "TRANSACTIONAL_ID"],
        MODEL: model_acls(t["events"], [t["violations"]]),
        REDIS_CONNECTOR: connector_acls([t["views"]], REDIS_GROUP, t["dlq"]),
        ES_CONNECTOR: connector_acls([t["history"], t["violations"], t["dlq"]], ES_GROUP, t["dlq"]),
        OPERATOR: [*reader_acls(t.values()), ("TOPIC", t["events"], "LITERAL", "WRITE"),
                   ("TOPIC", t["drift"], "LITERAL", "WRITE"),
                   *(("GROUP", group, "LITERAL", "DESCRIBE") for group in (JOB_GROUP, REDIS_GROUP, ES_GROUP))],
    }


def _topic_spec(kind: str, name: str) -> TopicSpec:
    """The topics as the job would create them (ctxsync/pipelines/flink/kafka_run.py), 3 partitions."""
    if kind == "views":
        return TopicSpec(name, 3, (("cleanup.policy", "compact"), *RECORD_LIMIT))
    return TopicSpec(name, 1 if kind == "dlq" else 3, RECORD_LIMIT)


def start_secure_kafka(folder: Path) -> SecureKafka:
    """Format (with the SCRAM users) and start the broker, then create the topics and ACLs as ADMIN."""
    tls = make_tls(folder / "tls")
    keystore = folder / "tls" / "broker-keystore.pem"  # Kafka's PEM keystore: PKCS#8 key + certificate
    keystore.write_bytes(tls.server_key.read_bytes() + tls.server_cert.read_bytes())
    local = LocalServers(folder / "servers")
    ports = {"kafka": free_port(), "controller": free_port(), LISTENER: free_port()}
    settings = listener_settings(keystore, [ADMIN])
    server_dir = local.run_dir / "kafka"
    server_dir.mkdir(parents=True)
    kafka_broker.prepare(server_dir, ports, kafka_dist.resolve(), settings, scram_format_args(USERS))
    server = local.start("kafka", listeners=ports, settings=settings)
    secure = SecureKafka(local, server.endpoints[f"kafka_{LISTENER.lower()}"], tls)
    try:
        admin = secure.config(ADMIN)
        ensure_topics(admin, [_topic_spec(kind, name) for kind, name in TOPICS.items()], timeout_s=60)
        for user, grants in _grants().items():
            create_acls(admin, user.principal, grants)
    except BaseException:
        local.down()
        raise
    return secure


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One secured broker per test module (a JVM: ~10 s to format and start)."""
    secure = start_secure_kafka(tmp_path_factory.mktemp("sasl-kafka"))
    try:
        yield secure
    finally:
        secure.local.down()

"""A SASL_SSL listener with SCRAM-SHA-512 users and ACLs for the Apache Kafka broker of ctxsync/kafka_broker.py.

The tests' secured broker (tests/fixtures_kafka_sasl.py) is built from these pieces, and they are the shape a
real cluster needs for ctxsync (docs/security.md, "Kafka security"):
- `listener_settings`: server.properties entries for a `SASL_SSL` client listener (TLS with a PEM keystore,
  SCRAM-SHA-512 logins) and the `StandardAuthorizer` (KRaft's ACL store) that denies what no ACL allows.
- `scram_format_args`: SCRAM users are written into the metadata log when the storage is formatted
  (`kafka.tools.StorageTool format --add-scram`), so they exist before the first client connects; a running
  cluster adds users with `kafka-configs --alter --add-config SCRAM-SHA-512=[...]` instead.
- `job_acls`, `model_acls`, `connector_acls`, `reader_acls`: the least each ctxsync role needs, created by
  `create_acls` as a super user.

The broker's own PLAINTEXT listeners (inter-broker, controller, and the readiness check of ctxsync/servers.py)
log in as `User:ANONYMOUS`, which therefore is a super user: on the loopback test broker that is the broker
talking to itself; a shared cluster must not expose a PLAINTEXT listener to clients (docs/security.md).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxsync.errors import RuntimeFailure

MECHANISM = "SCRAM-SHA-512"
LISTENER = "SASL_SSL"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
BROKER_PRINCIPAL = "User:ANONYMOUS"  # the broker's PLAINTEXT inter-broker and controller listeners


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 login; the password stays out of repr."""

    name: str
    password: str = field(repr=False)

    @property
    def principal(self) -> str:
        return f"User:{self.name}"

    def client_config(self, bootstrap: str, ca_location: Path) -> dict[str, str]:
        """confluent-kafka settings to log in as this user over the SASL_SSL listener."""
        return {"bootstrap.servers": bootstrap, "security.protocol": LISTENER, "sasl.mechanism": MECHANISM,
                "sasl.username": self.name, "sasl.password": self.password, "ssl.ca.location": str(ca_location)}


def listener_settings(keystore: Path, admins: Iterable[ScramUser]) -> dict[str, str]:
    """server.properties entries for the SASL_SSL listener and the authorizer.

    `keystore` is one PEM file holding the broker's private key (PKCS#8, unencrypted) and its certificate
    chain; `admins` become super users (they may create topics and ACLs)."""
    name = LISTENER.lower()
    supers = ";".join([BROKER_PRINCIPAL, *(admin.principal for admin in admins)])
    return {
        "sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{name}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{name}.{MECHANISM.lower()}.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"listener.name.{name}.ssl.keystore.type": "PEM",
        f"listener.name.{name}.ssl.keystore.location": str(keystore),
        f"listener.name.{name}.ssl.client.auth": "none",
        "authorizer.class.name": AUTHORIZER,
        "super.users": supers,
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_format_args(users: Iterable[ScramUser]) -> list[str]:
    """`StorageTool format` arguments that create the users' SCRAM-SHA-512 credentials (4096 iterations)."""
    args: list[str] = []
    for user in users:
        if not user.name.replace("-", "").replace("_", "").replace(".", "").isalnum() or '"' in user.password:
            raise ValueError(f"SCRAM user {user.name!r}: names are [A-Za-z0-9._-], passwords without quotes")
        args += ["--add-scram", f'{MECHANISM}=[name={user.name},password="{user.password}"]']
    return args


# --- ACLs ------------------------------------------------------------------------------------------
# (resource type, name, pattern, operation) per grant; confluent-kafka's enums are looked up by name so this
# module imports the client only when ACLs are created.

Grant = tuple[str, str, str, str]


def _topic(name: str, *operations: str) -> list[Grant]:
    return [("TOPIC", name, "LITERAL", op) for op in ("DESCRIBE", *operations)]


def _group(name: str) -> list[Grant]:
    return [("GROUP", name, "LITERAL", "READ"), ("GROUP", name, "LITERAL", "DESCRIBE")]


def reader_acls(topics: Iterable[str]) -> list[Grant]:
    """Read topics by assignment (no group: `verify`, `trace`, `dlq list`, snapshots, `as-of`)."""
    return [grant for topic in topics for grant in _topic(topic, "READ")]


def job_acls(input_topic: str, group: str, outputs: Iterable[str], transactional_prefix: str) -> list[Grant]:
    """The context-sync job: read the input and commit its group, write the outputs in transactions whose
    ids start with the sink's transactional_id_prefix (exactly-once)."""
    return [*_topic(input_topic, "READ"), *_group(group),
            *(grant for topic in outputs for grant in _topic(topic, "READ", "WRITE")),
            ("TRANSACTIONAL_ID", transactional_prefix, "PREFIXED", "WRITE"),
            ("TRANSACTIONAL_ID", transactional_prefix, "PREFIXED", "DESCRIBE")]


def model_acls(events_topic: str, readable: Iterable[str] = ()) -> list[Grant]:
    """A model: write events, read only the topics it is granted (e.g. violations, for `conflicts`)."""
    return [*_topic(events_topic, "WRITE"), *reader_acls(readable)]


def connector_acls(topics: Iterable[str], group: str, dlq_topic: str) -> list[Grant]:
    """A sink connector: read its topics, commit its group, write the records it cannot apply to the DLQ."""
    return [*reader_acls(topics), *_group(group), *_topic(dlq_topic, "WRITE")]


def create_acls(admin_config: dict[str, Any], principal: str, grants: Iterable[Grant],
                timeout_s: float = 30.0) -> int:
    """ALLOW each grant to `principal` from any host, as the admin of `admin_config`; returns the count."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType,
    )

    bindings = list(dict.fromkeys(
        AclBinding(ResourceType[kind], name, ResourcePatternType[pattern], principal, "*", AclOperation[op],
                   AclPermissionType.ALLOW)
        for kind, name, pattern, op in grants))
    admin = AdminClient({**admin_config, "log_level": 3})  # kept referenced until the futures resolve (else they fail _DESTROY)
    futures = admin.create_acls(bindings, request_timeout=timeout_s)
    for binding, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise RuntimeFailure(f"Kafka refused the ACL {binding}: {exc.args[0].str()}") from exc
    return len(bindings)

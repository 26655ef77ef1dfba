"""One Apache Kafka broker in KRaft combined mode (broker and controller in one JVM) on loopback ports.

ctxsync/servers.py starts it for `ctxsync dev up`, the tests and the benches: `prepare` writes
`server.properties` and a Log4j2 config into the server's directory and formats its log dir once
(`kafka.tools.StorageTool format --standalone`); `command` is the JVM that serves it. The jars come from
ctxsync/kafka_dist.py (deploy/kafka/pom.xml).

Settings that differ from Kafka's defaults, and why:
- replication factor 1 and min ISR 1 for the internal topics (offsets, transactions, share groups): there is
  one broker; their partition counts are cut from 50 to 5, so the first group or transaction starts fast.
- `group.initial.rebalance.delay.ms=0`: a consumer group forms at once instead of after 3 s.
- `log.retention.ms=-1`: records are kept until `ctxsync dev down --reset` (or the tests' temp dir goes).
  Time retention judges records by their timestamps, and tests write records stamped in 1970 or 2023
  (offsets_for_time, replay by time) that a 7-day retention would delete under them.
- `log.message.timestamp.after.max.ms` stays Kafka 4's default, one hour, set here so that the decision is
  visible: a user's cluster refuses records stamped more than an hour ahead, so ours does too. Every producer
  of ctxsync (the Flink job's Kafka sink, replay, dlq redrive, the client, connectors) leaves the record
  timestamp to the client, i.e. now; event time lives in the payload. Tests stamp records in the past.
- `log.cleaner.dedupe.buffer.size` 32 MiB instead of 128 MiB: the cleaner allocates it at start, and the heap
  is 512 MiB.
- a 512 MiB heap with the serial collector: a test broker on a 2-core machine should not compete with Flink
  for cores (G1's concurrent threads) or memory.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from ctxsync.errors import RuntimeFailure

MAIN_CLASS = "kafka.Kafka"
TIMESTAMP_AFTER_MAX_MS = 3_600_000  # Kafka 4's default (KIP-937), kept on purpose: see the module docstring
HEAP = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError")

LOG4J2 = """\
# the broker's Log4j2 config (ctxsync/kafka_broker.py): everything to stdout, which is the server's log file
status = warn
# Kafka logs its own shutdown: Log4j's hook must not stop the logger first
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.statechange.name = state.change.logger
logger.statechange.level = warn
# the full config of every internal client, ~1,800 lines a start (server.properties is next to this file)
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
"""


class BrokerError(RuntimeFailure):
    """The broker's storage could not be formatted."""


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerError("java not found: the Kafka broker needs Java 17",
                          "sudo apt-get install openjdk-17-jre-headless, or scripts/install-system-deps.sh")
    return found


def server_properties(kafka_port: int, controller_port: int, log_dir: Path,
                      listeners: dict[str, int] | None = None, extra: dict[str, str] | None = None) -> str:
    """The broker's server.properties: combined mode, PLAINTEXT for clients, CONTROLLER for the quorum.

    `listeners` adds client listeners named by their security protocol (e.g. {"SASL_PLAINTEXT": port});
    `extra` adds or overrides settings (their mechanisms and JAAS configs, say)."""
    names = {"PLAINTEXT": kafka_port, **{name.upper(): port for name, port in (listeners or {}).items()}}
    client = ",".join(f"{name}://127.0.0.1:{port}" for name, port in names.items())
    protocols = ",".join(f"{name}:{name}" for name in names)
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"{client},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": client,
        "listener.security.protocol.map": f"{protocols},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.ms": "-1",
        "log.message.timestamp.after.max.ms": str(TIMESTAMP_AFTER_MAX_MS),
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        **(extra or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _cluster_id() -> str:
    """A random Kafka cluster id: a UUID in URL-safe base64 without padding (what `random-uuid` prints)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own generator avoids these: they read as a CLI option
            return text


def _jvm(libs: Path, log4j: Path, *extra: str) -> list[str]:
    return [java_bin(), *HEAP, *extra, "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*"]


def prepare(server_dir: Path, ports: dict[str, int], libs: Path, extra: dict[str, str] | None = None,
            format_args: Sequence[str] = ()) -> Path:
    """Write the configs and format the log dir unless it is already formatted; returns the server.properties
    path. `ports`: "kafka" (PLAINTEXT), "controller", and any further listener by its security protocol.
    `format_args` go to the first format only (e.g. `--add-scram` users: ctxsync/kafka_security.py)."""
    log_dir = server_dir / "data"
    props = server_dir / "server.properties"
    listeners = {name: port for name, port in ports.items() if name not in ("kafka", "controller")}
    props.write_text(server_properties(ports["kafka"], ports["controller"], log_dir, listeners, extra))
    (server_dir / "log4j2.properties").write_text(LOG4J2.format(level="info"))
    if (log_dir / "meta.properties").exists():
        return props
    quiet = server_dir / "log4j2-format.properties"
    quiet.write_text(LOG4J2.format(level="warn"))
    # a short-lived tool: C1 only starts faster
    cmd = [*_jvm(libs, quiet, "-XX:TieredStopAtLevel=1"), "kafka.tools.StorageTool", "format", "--standalone",
           "-t", _cluster_id(), "-c", str(props), *format_args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise BrokerError(f"formatting the Kafka log dir {log_dir} failed: {lines[-1] if lines else result.returncode}")
    return props


def command(server_dir: Path, libs: Path) -> list[str]:
    """The broker's JVM command line (after `prepare`)."""
    return [*_jvm(libs, server_dir / "log4j2.properties"), MAIN_CLASS, str(server_dir / "server.properties")]


def is_broker_cmdline(args: list[str]) -> bool:
    """True when a process's argv is a broker started by `command` (its main class is an argument)."""
    return bool(args) and Path(args[0]).name == "java" and MAIN_CLASS in args


READY_ID = "ctxsync-broker-ready"


def coordinators_ready(bootstrap: str) -> bool:
    """True once the group and transaction coordinators answer. A fresh broker creates __consumer_offsets and
    __transaction_state on their first use and answers "not coordinator" while it loads them; asking here
    makes the first job, connector or test after a start not race that (costs ~1 s once)."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    config = {"bootstrap.servers": bootstrap, "log_level": 3}  # its "load in progress: retrying" is expected
    consumer = Consumer({**config, "group.id": READY_ID, "enable.auto.commit": False})
    try:
        consumer.committed([TopicPartition(READY_ID, 0)], timeout=5)
        Producer({**config, "transactional.id": READY_ID}).init_transactions(10)
        return True
    except KafkaException:
        return False
    finally:
        consumer.close()

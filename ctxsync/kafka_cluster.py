"""A three-node Apache Kafka cluster on loopback ports, for the broker-failure tests (tests/fixtures_kafka_cluster.py).

Each node runs in KRaft combined mode (broker and controller in one JVM, ctxsync/kafka_broker.py's config and
JVM), the three controllers form a static quorum (`controller.quorum.voters`), and everything is replicated the
way a production cluster is: replication factor 3 for new topics and the internal ones, `min.insync.replicas=2`,
so a producer with `acks=all` (every ctxsync producer: librdkafka's and Kafka's default) keeps writing with one
node down, and never loses an acknowledged record. Timeouts stay Kafka's defaults (a dead node is fenced after
`broker.session.timeout.ms`, 9 s), so a measured recovery is what a default cluster gives.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxsync import kafka_broker, kafka_dist
from ctxsync.errors import RuntimeFailure
from ctxsync.servers import _last_line, free_port

REPLICATED = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "unclean.leader.election.enable": "false",  # Kafka's default, stated: a lagging replica never leads
}


@dataclass
class Node:
    """One combined broker+controller: its id, ports, directory and process."""

    node_id: int
    kafka_port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / "server.log"


class KafkaCluster:
    """Three nodes under `run_dir`: start them, kill -9 one, stop them all."""

    def __init__(self, run_dir: Path, size: int = 3) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.nodes = {i: Node(i, free_port(), free_port(), self.run_dir / f"node-{i}") for i in range(1, size + 1)}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.kafka_port}" for n in self.nodes.values())

    def config(self) -> dict[str, str]:
        """confluent-kafka settings for clients of the cluster."""
        return {"bootstrap.servers": self.bootstrap}

    def admin(self) -> Any:
        """An admin client that keeps quiet about nodes that are down (they are, in these tests)."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({**self.config(), "log_level": 0})

    def start(self, timeout_s: float = 180.0) -> None:
        """Format every node's log dir with one cluster id, start the nodes together (a controller quorum
        needs a majority) and wait until all brokers are registered and the coordinators answer."""
        libs = kafka_dist.resolve()
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values())
        cluster_id = kafka_broker._cluster_id()
        formats = [self._format(node, libs, voters, cluster_id) for node in self.nodes.values()]
        for node, process in zip(self.nodes.values(), formats):
            if process.wait(timeout=120) != 0:
                raise RuntimeFailure(f"formatting Kafka node {node.node_id} failed: {_last_line(node.log)}")
        for node in self.nodes.values():
            self._launch(node, libs)
        self.wait_ready(len(self.nodes), timeout_s)

    def _format(self, node: Node, libs: Path, voters: str, cluster_id: str) -> subprocess.Popen:
        node.directory.mkdir(parents=True, exist_ok=True)
        props = node.directory / "server.properties"
        base = kafka_broker.server_properties(node.kafka_port, node.controller_port, node.directory / "data")
        settings = dict(line.split("=", 1) for line in base.splitlines())
        settings.pop("controller.quorum.bootstrap.servers")  # the static quorum below replaces it
        settings.update({"node.id": str(node.node_id), "controller.quorum.voters": voters, **REPLICATED})
        props.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (node.directory / "log4j2.properties").write_text(kafka_broker.LOG4J2.format(level="info"))
        quiet = node.directory / "log4j2-format.properties"
        quiet.write_text(kafka_broker.LOG4J2.format(level="warn"))
        cmd = [*kafka_broker._jvm(libs, quiet, "-XX:TieredStopAtLevel=1"), "kafka.tools.StorageTool", "format",
               "-t", cluster_id, "-c", str(props)]
        with node.log.open("ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _launch(self, node: Node, libs: Path) -> None:
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(kafka_broker.command(node.directory, libs), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=node.directory, start_new_session=True)

    def wait_ready(self, brokers: int, timeout_s: float = 180.0) -> None:
        """Until `brokers` brokers are in the metadata and the group and transaction coordinators answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.process is not None and node.process.poll() not in (None, -signal.SIGKILL):
                    raise RuntimeFailure(f"Kafka node {node.node_id} exited: {_last_line(node.log)}")
            try:
                registered = self.admin().list_topics(timeout=2).brokers
                if len(registered) >= brokers and kafka_broker.coordinators_ready(self.bootstrap):
                    return
            except Exception:  # KafkaException while nodes start
                pass
            time.sleep(0.5)
        raise RuntimeFailure(f"the Kafka cluster was not ready within {timeout_s:.0f}s",
                             f"see the logs under {self.run_dir}")

    def leader(self, topic: str, partition: int) -> int:
        """The node id leading a partition now."""
        metadata = self.admin().list_topics(topic, timeout=10)
        return metadata.topics[topic].partitions[partition].leader

    def led_by(self, node_id: int, topics: list[str]) -> list[str]:
        """`topic/partition` of every partition of `topics` that `node_id` leads."""
        metadata = self.admin().list_topics(timeout=10).topics
        return [f"{t}/{p}" for t in topics for p, info in sorted(metadata[t].partitions.items())
                if info.leader == node_id]

    def kill(self, node_id: int) -> None:
        """kill -9: no controlled shutdown, no leadership handed over; the controller notices by the missing
        heartbeats."""
        process = self.nodes[node_id].process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def stop(self) -> None:
        """kill -9 every node: a test cluster's data goes with its directory, and a controlled shutdown of a
        whole quorum at once only waits on itself."""
        for node_id in self.nodes:
            self.kill(node_id)

"""deploy/docker-compose.yml is valid Compose (checked by the docker compose client; no engine needed)
and runs the official images the `prod` profile targets."""
from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import yaml

from tests.helpers import ROOT

COMPOSE = ROOT / "deploy" / "docker-compose.yml"
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"  # the Apache Kafka broker the tests run


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) if present, else the Debian `docker-compose` (installed by
    scripts/install-system-deps.sh)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    assert found, "neither `docker compose` nor `docker-compose` is installed (scripts/install-system-deps.sh)"
    return [found]


def test_compose_file_is_valid_for_the_compose_client():
    result = subprocess.run([*compose_command(), "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_runs_official_images_with_healthchecks_and_durable_data():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:8.")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name in ("kafka", "elasticsearch", "redis"):
        assert "healthcheck" in services[name] and services[name]["volumes"]
    assert "cleanup.policy=compact" in services["kafka-init"]["command"][0]


def test_compose_runs_the_kafka_release_the_tests_run():
    """apache/kafka images of the broker version deploy/kafka/pom.xml pins (ctxsync dev up, the tests)."""
    found = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", {"m": "http://maven.apache.org/POM/4.0.0"})
    assert found is not None and found.text
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    images = {name: s["image"] for name, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert set(images) == {"kafka", "kafka-init"}
    assert set(images.values()) == {f"apache/kafka:{found.text.strip()}"}

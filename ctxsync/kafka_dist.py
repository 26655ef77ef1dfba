"""The Apache Kafka broker's jars, resolved once from Maven Central into ctxsync's cache.

`deploy/kafka/pom.xml` names the broker (`kafka_2.13`) and its Log4j2 binding; `mvn dependency:copy-dependencies`
copies them with every transitive jar into `<ctxsync home>/kafka/<version>/libs`, and the broker runs as
`java -cp <libs>/* kafka.Kafka` (ctxsync/servers.py). Resolving is skipped while the cached jars were made from
the same pom (its hash is stamped next to them), so the install step and every broker start can call it.

`python -m ctxsync.kafka_dist` resolves (if needed) and prints the libs directory.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ctxsync import paths
from ctxsync.errors import RuntimeFailure

POM = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "pom.xml"
STAMP = "pom.sha256"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class KafkaDistError(RuntimeFailure):
    """The broker's jars are not cached and could not be resolved (no mvn, no Java, Maven failed)."""


def kafka_version(pom: Path = POM) -> str:
    """The broker version the pom pins (`<kafka.version>`): it names the cache directory."""
    if not pom.is_file():
        raise KafkaDistError(f"no Kafka pom at {pom}", "ctxsync must run from its source tree (pip install -e)")
    found = ET.parse(pom).getroot().find("m:properties/m:kafka.version", _NS)
    if found is None or not (found.text or "").strip():
        raise KafkaDistError(f"{pom} has no <kafka.version> property")
    return found.text.strip()


def libs_dir(pom: Path = POM) -> Path:
    """Where the jars of this pom's broker live (they may not be there yet)."""
    return paths.home() / "kafka" / kafka_version(pom) / "libs"


def _digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def is_resolved(pom: Path = POM) -> bool:
    libs = libs_dir(pom)
    stamp = libs.parent / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest(pom) and any(libs.glob("kafka_2.13-*.jar"))


def resolve(pom: Path = POM) -> Path:
    """The libs directory, running Maven first unless the cache already holds this pom's jars."""
    libs = libs_dir(pom)
    if is_resolved(pom):
        return libs
    if shutil.which("java") is None:
        raise KafkaDistError("java not found: the Kafka broker needs Java 17",
                             "sudo apt-get install openjdk-17-jre-headless, or scripts/install-system-deps.sh")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaDistError("mvn not found: the Kafka broker's jars are resolved with Maven",
                             "sudo apt-get install maven, or scripts/install-system-deps.sh")
    libs.parent.mkdir(parents=True, exist_ok=True)
    # copy into a temporary sibling and rename: an interrupted download never looks like a complete cache
    with tempfile.TemporaryDirectory(prefix=".libs-", dir=libs.parent) as tmp:
        fresh = Path(tmp) / "libs"
        result = subprocess.run([mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                                 f"-DoutputDirectory={fresh}"], capture_output=True, text=True)
        if result.returncode != 0 or not any(fresh.glob("kafka_2.13-*.jar")):
            lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
            reason = lines[0].strip() if lines else f"exit code {result.returncode}"
            raise KafkaDistError(f"mvn could not resolve {pom.name}: {reason}",
                                 f"run: mvn -f {pom} dependency:copy-dependencies -DoutputDirectory={libs}")
        if libs.exists():
            shutil.rmtree(libs)
        fresh.replace(libs)
    (libs.parent / STAMP).write_text(_digest(pom) + "\n")
    return libs


def main() -> int:
    try:
        print(resolve())
    except KafkaDistError as exc:
        print(f"ctxsync.kafka_dist: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

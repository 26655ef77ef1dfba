"""The Flink Kafka connector jars, resolved from Maven Central once into a cache.

The connector is not in apache-flink-libraries. `deploy/flink/pom.xml` names it and the Kafka client it is
built against (`org.apache.flink:flink-connector-kafka:5.0.0-2.2`, `org.apache.kafka:kafka-clients:4.2.0`)
and excludes everything the Flink runtime already has on its classpath. `kafka_jars()` runs

    mvn -B -q -f deploy/flink/pom.xml dependency:copy-dependencies -DincludeScope=runtime
        -Dmdep.stripVersion=true -DoutputDirectory=<scratch dir>

into a scratch directory and renames it into place as
`~/.cache/ctxsync/jars/flink-connector-kafka-<version>-<pom hash>/`, so a changed pom resolves anew and an
interrupted download never looks like a complete cache. The jars keep their artifact names without versions:
`flink-connector-kafka.jar`, `kafka-clients.jar` and `zstd-jni.jar`.
`CTXSYNC_JARS_DIR` points at a directory that already holds them (the Flink image's `/opt/ctxsync/jars`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ctxsync import paths
from ctxsync.errors import RuntimeFailure

POM = Path(__file__).resolve().parent.parent / "deploy" / "flink" / "pom.xml"
JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")  # always resolved; other runtime jars follow them
MVN_TIMEOUT_S = 600


class JarsError(RuntimeFailure, RuntimeError):
    """The connector jars are missing and could not be fetched."""


def connector_version(pom: Path = POM) -> str:
    """`connector.version` of the Maven descriptor."""
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise JarsError(f"cannot read {pom}: {exc}") from None
    found = root.find("m:properties/m:connector.version", {"m": "http://maven.apache.org/POM/4.0.0"})
    version = (found.text or "").strip() if found is not None else ""
    if not version:
        raise JarsError(f"{pom} has no <connector.version> property")
    return version


def cache_dir() -> Path:
    base = os.environ.get("CTXSYNC_JARS_DIR")
    if base:
        return Path(base)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:8] if POM.is_file() else "nopom"
    return paths.home() / "jars" / f"flink-connector-kafka-{connector_version()}-{digest}"


def _present(target: Path) -> list[Path] | None:
    """The connector and kafka-clients first, then the other jars; None unless both are there."""
    if not all((target / name).is_file() for name in JARS):
        return None
    extra = sorted(p for p in target.glob("*.jar") if p.name not in JARS)
    return [target / name for name in JARS] + extra


def _resolve(target: Path) -> None:
    """Run Maven into a scratch directory next to `target`, then move it into place."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsError("mvn not found: the Kafka connector jars come from Maven Central",
                        "install Maven: apt-get install maven, or scripts/install-system-deps.sh")
    if not POM.is_file():
        raise JarsError(f"{POM} not found", "set CTXSYNC_JARS_DIR to a directory with the connector jars")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=target.parent))
    try:
        command = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
                   "-Dmdep.stripVersion=true", f"-DoutputDirectory={scratch}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise JarsError(f"mvn did not finish resolving {POM.name} in {MVN_TIMEOUT_S} s",
                            "check the network to Maven Central and retry") from None
        if result.returncode != 0 or _present(scratch) is None:
            output = "\n".join(line for line in (result.stdout + result.stderr).splitlines() if line.strip())
            last = output.splitlines()[-1] if output else f"no {' or '.join(JARS)} in its output"
            raise JarsError(f"mvn could not resolve the Kafka connector jars ({POM}): {last[:300]}",
                            "check the network to Maven Central and retry; "
                            "mvn -f deploy/flink/pom.xml dependency:copy-dependencies shows the whole log")
        scratch.chmod(0o755)  # mkdtemp makes it 0700
        try:
            scratch.rename(target)  # atomic; an empty target directory is replaced too
        except OSError:
            if _present(target) is None:  # not a concurrent fetch that finished first: fill it file by file
                target.mkdir(parents=True, exist_ok=True)
                for jar in scratch.glob("*.jar"):
                    jar.replace(target / jar.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def kafka_jars(fetch: bool = True) -> list[Path]:
    """Paths of the connector jars (connector, kafka-clients, then the rest), resolving them on first use."""
    target = cache_dir()
    found = _present(target)
    if found is not None:
        return found
    if not fetch:
        raise JarsError(f"Kafka connector jars missing in {target}", "run scripts/fetch-kafka-jars.sh")
    _resolve(target)
    found = _present(target)
    if found is None:
        raise JarsError(f"Kafka connector jars missing in {target} after mvn resolved them")
    return found


def main() -> int:
    """`python -m ctxsync.jars`: resolve (if needed) and print the jar paths; a failure is one line, exit 1."""
    try:
        for path in kafka_jars():
            print(path)
    except JarsError as exc:
        print(f"ctxsync.jars: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""JVM servers and jars resolved once from Maven Central into ctxsync's cache.

Each server the project starts (Apache Kafka, and others that follow the same recipe) is named by a small pom
under `deploy/<name>/pom.xml`; `mvn dependency:copy-dependencies` copies it with every transitive jar into
`<ctxsync home>/<name>/<version>/libs`, and the server runs as `java -cp <libs>/* <main class>`. Resolving is
skipped while the cached jars were made from the same pom (its hash is stamped next to them), so the install
step and every server start can call it; an interrupted download never looks like a complete cache.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctxsync import paths
from ctxsync.errors import RuntimeFailure

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
STAMP = "pom.sha256"
MVN_TIMEOUT_S = 900
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class MavenDistError(RuntimeFailure):
    """A server's jars are not cached and could not be resolved (no mvn, no Java, Maven failed)."""


@dataclass(frozen=True)
class MavenDist:
    """One server's pom: where its version is pinned and which jar proves the cache is complete."""

    title: str             # for messages: "the Kafka broker"
    pom: Path              # deploy/<name>/pom.xml
    version_property: str  # the <properties> entry that names the cache directory
    marker: str            # a glob that must match in libs/ once resolved
    java: str = "Java 17"

    @property
    def name(self) -> str:
        return self.pom.parent.name

    def version(self) -> str:
        if not self.pom.is_file():
            raise MavenDistError(f"{self.pom} not found ({self.title})",
                                 "ctxsync must run from its source tree (pip install -e)")
        found = ET.parse(self.pom).getroot().find(f"m:properties/m:{self.version_property}", _NS)
        version = (found.text or "").strip() if found is not None else ""
        if not version:
            raise MavenDistError(f"{self.pom} has no <{self.version_property}> property")
        return version

    def libs_dir(self) -> Path:
        """Where this pom's jars live (they may not be there yet)."""
        return paths.home() / self.name / self.version() / "libs"

    def _digest(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def is_resolved(self) -> bool:
        libs = self.libs_dir()
        stamp = libs.parent / STAMP
        return stamp.is_file() and stamp.read_text().strip() == self._digest() and any(libs.glob(self.marker))

    def resolve(self) -> Path:
        """The libs directory, running Maven first unless the cache already holds this pom's jars."""
        libs = self.libs_dir()
        if self.is_resolved():
            return libs
        if shutil.which("java") is None:
            raise MavenDistError(f"java not found: {self.title} needs {self.java}",
                                 "sudo apt-get install openjdk-17-jre-headless, or scripts/install-system-deps.sh")
        mvn = shutil.which("mvn")
        if mvn is None:
            raise MavenDistError(f"mvn not found: the jars of {self.title} are resolved with Maven",
                                 "sudo apt-get install maven, or scripts/install-system-deps.sh")
        libs.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".libs-", dir=libs.parent) as tmp:
            fresh = Path(tmp) / "libs"
            command = [mvn, "-q", "-B", "-f", str(self.pom), "dependency:copy-dependencies",
                       f"-DoutputDirectory={fresh}"]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S,
                                        stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise MavenDistError(f"mvn did not resolve {self.pom} in {MVN_TIMEOUT_S} s",
                                     "check the network to Maven Central and retry") from None
            if result.returncode != 0 or not any(fresh.glob(self.marker)):
                lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
                reason = lines[0].strip()[:300] if lines else f"exit code {result.returncode}"
                raise MavenDistError(f"mvn could not resolve {self.pom}: {reason}",
                                     f"run: mvn -f {self.pom} dependency:copy-dependencies -DoutputDirectory={libs}")
            if libs.exists():
                shutil.rmtree(libs)
            fresh.replace(libs)
        (libs.parent / STAMP).write_text(self._digest() + "\n")
        return libs


def main(resolve: Callable[[], Path], prog: str) -> int:
    """`python -m <module>` of a server's dist module: resolve or build it (if needed) and print where it
    is; a failure is one line, exit 1."""
    try:
        print(resolve())
    except MavenDistError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0

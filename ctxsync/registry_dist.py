"""The schema registry (Apicurio Registry, Confluent-compatible API) built once from Maven Central into the cache.

Maven Central serves `apicurio-registry-app` only as a plain jar: a Quarkus app runs after Quarkus' build step
augments it. `deploy/registry/pom.xml` runs that step (quarkus-maven-plugin) over the app jar, after
`deploy/registry/config-index-deployment` (a build step of one of its extensions that Central does not serve) is
installed into the local Maven repository. The result, `registry-1-runner.jar` and its `lib/`, lands in
`<ctxsync home>/registry/<version>/app`, stamped with the digest of the build's files so that a changed pom
builds again and an interrupted build never looks complete. The registry runs as `java -jar` (ctxsync/servers.py).

`python -m ctxsync.registry_dist` builds (if needed) and prints the app directory.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ctxsync.maven_dist import DEPLOY, MVN_TIMEOUT_S, MavenDist, MavenDistError, main

SOURCE = DEPLOY / "registry"
REGISTRY = MavenDist("the schema registry", SOURCE / "pom.xml", "apicurio.version", "registry-1-runner.jar")
RUNNER = "registry-1-runner.jar"
STAMP = "build.sha256"
HEAP = "384m"


def version() -> str:
    return REGISTRY.version()


def app_dir() -> Path:
    """Where the built registry lives (it may not be there yet)."""
    return REGISTRY.libs_dir().parent / "app"


def _build_files() -> list[Path]:
    return sorted(path for path in SOURCE.rglob("*") if path.is_file() and "target" not in path.parts)


def _digest() -> str:
    sha = hashlib.sha256()
    for path in _build_files():
        sha.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def is_built() -> bool:
    app = app_dir()
    stamp = app.parent / STAMP
    return stamp.is_file() and stamp.read_text().strip() == _digest() and (app / RUNNER).is_file()


def _mvn(mvn: str, pom: Path, goal: str, build_dir: Path) -> None:
    command = [mvn, "-q", "-B", "-f", str(pom), goal, "-DskipTests", f"-Dregistry.build.dir={build_dir}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MavenDistError(f"mvn did not build {pom} in {MVN_TIMEOUT_S} s",
                             "check the network to Maven Central and retry") from None
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        reason = lines[0].strip()[:300] if lines else f"exit code {result.returncode}"
        raise MavenDistError(f"mvn could not build {pom}: {reason}", f"run: mvn -f {pom} {goal}")


def build() -> Path:
    """The app directory, running the Maven build first unless the cache holds this source's build."""
    app = app_dir()
    if is_built():
        return app
    if shutil.which("java") is None:
        raise MavenDistError("java not found: the schema registry needs Java 17",
                             "sudo apt-get install openjdk-17-jre-headless, or scripts/install-system-deps.sh")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenDistError("mvn not found: the schema registry is built with Maven",
                             "sudo apt-get install maven, or scripts/install-system-deps.sh")
    app.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=app.parent) as tmp:
        _mvn(mvn, SOURCE / "config-index-deployment" / "pom.xml", "install", Path(tmp) / "config-index")
        out = Path(tmp) / "registry"
        _mvn(mvn, SOURCE / "pom.xml", "package", out)
        fresh = Path(tmp) / "app"
        fresh.mkdir()
        if not (out / RUNNER).is_file():
            raise MavenDistError(f"the registry build left no {RUNNER} in {out}",
                                 f"run: mvn -f {SOURCE / 'pom.xml'} package")
        (out / RUNNER).replace(fresh / RUNNER)
        (out / "lib").replace(fresh / "lib")
        if app.exists():
            shutil.rmtree(app)
        fresh.replace(app)
    (app.parent / STAMP).write_text(_digest() + "\n")
    return app


def command(data_dir: Path, port: int, java: str = "java") -> list[str]:
    """The registry on 127.0.0.1:port, its schemas in an H2 file under data_dir (they outlive a restart, as the
    ids inside Kafka records do), BACKWARD the compatibility level of every subject that sets none."""
    runner = build() / RUNNER
    # the app's application.properties sets these under %prod, which wins over a plain key: set them there too
    return [java, f"-Xmx{HEAP}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-D%prod.quarkus.http.port={port}", "-Dquarkus.http.host=127.0.0.1",
            f"-D%prod.quarkus.datasource.jdbc.url=jdbc:h2:file:{data_dir / 'registry'}",
            "-D%prod.quarkus.datasource.jdbc.min-size=1", "-D%prod.quarkus.datasource.jdbc.initial-size=1",
            "-Dregistry.rules.global.compatibility=BACKWARD",
            "-jar", str(runner)]


if __name__ == "__main__":
    sys.exit(main(build, "ctxsync.registry_dist"))

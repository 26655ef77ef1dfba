#!/usr/bin/env bash
# Resolve the Flink Kafka connector jars (flink-connector-kafka, kafka-clients and its zstd codec) from Maven
# Central with `mvn -f deploy/flink/pom.xml dependency:copy-dependencies` into the ctxsync jar cache, once per
# pom (see ctxsync/jars.py). Prints the jar paths; needs mvn and java.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ctxsync.jars

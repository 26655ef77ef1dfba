#!/usr/bin/env bash
# Fetch flink-connector-kafka.jar and kafka-clients.jar into the ctxsync jar cache (see ctxsync/jars.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ctxsync.jars

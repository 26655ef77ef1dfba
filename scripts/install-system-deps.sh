#!/usr/bin/env bash
# System packages the test suite needs: a real redis-server, Java for Flink and Kafka, Maven for the Kafka
# broker's jars, Chromium for the drift-report page check, the compose client, Prometheus, nginx.
# Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
# Maven resolves the Apache Kafka broker (deploy/kafka/pom.xml) that the tests and `ctxsync dev up` start
command -v mvn >/dev/null 2>&1 || need+=(maven)
# headless Chromium renders the drift-report page (tests/test_drift_report.py finds it with shutil.which)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
# the compose client validates deploy/docker-compose.yml in the tests (no Docker engine needed)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
# Prometheus (and promtool) scrapes the job and connectors in the observability tests and `dev up --with prometheus`
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# nginx terminates TLS with basic auth in front of noida-db's Elasticsearch API (tests/fixtures_tls.py)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "please install: ${need[*]}" >&2; exit 1
  fi
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  # services installed here are started by the tests that need them, never by the package (no daemons left behind)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Flink's Kafka connector jars into the ctxsync cache (ctxsync/jars.py; the runner also fetches on first use)
if [ -x "${PY:-.venv/bin/python}" ]; then "${PY:-.venv/bin/python}" -m ctxsync.jars >/dev/null; fi
# the Kafka broker's jars into the ctxsync cache, once per deploy/kafka/pom.xml (needs java and mvn, above)
if [ -x "${PY:-.venv/bin/python}" ]; then "${PY:-.venv/bin/python}" -m ctxsync.kafka_dist >/dev/null; fi
# the schema registry (Apicurio, deploy/registry/pom.xml) built once into the ctxsync cache (java and mvn, above)
if [ -x "${PY:-.venv/bin/python}" ]; then "${PY:-.venv/bin/python}" -m ctxsync.registry_dist >/dev/null; fi
# the OpenSearch node's jars and home layout (deploy/opensearch/pom.xml; `dev up --search opensearch`, tests)
if [ -x "${PY:-.venv/bin/python}" ]; then "${PY:-.venv/bin/python}" -m ctxsync.opensearch_dist >/dev/null; fi

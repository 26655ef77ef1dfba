#!/usr/bin/env bash
# Flink needs a Java 11+ runtime (17 recommended). Say how to get one instead of failing deep inside Flink.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "Java is required by Flink but was not found." >&2
  echo "Install Java 17: 'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu)," >&2
  echo "'brew install openjdk@17' (macOS), or set JAVA_HOME to a JDK 17." >&2
  exit 1
fi
version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2}')
major=${version%%.*}
if [ "${major:-0}" -lt 11 ]; then
  echo "Java $version found; Flink 2.x needs Java 11 or newer (17 recommended)." >&2
  exit 1
fi

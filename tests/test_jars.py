"""ctxsync.jars: the Flink Kafka connector jars resolved from Maven Central (deploy/flink/pom.xml).

The first test uses the real cache (what the install step fills); the others run a stand-in `mvn` on PATH,
so no failure path touches the network.
"""
from __future__ import annotations

import os
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from ctxsync import jars


def _fake_mvn(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "mvn"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _pom_property(name: str) -> str:
    import xml.etree.ElementTree as ET

    found = ET.parse(jars.POM).getroot().find(f"m:properties/m:{name}", {"m": "http://maven.apache.org/POM/4.0.0"})
    assert found is not None and found.text
    return found.text.strip()


def test_the_cached_jars_are_the_versions_the_pom_names_and_a_second_call_runs_no_mvn(monkeypatch) -> None:
    monkeypatch.delenv("CTXSYNC_JARS_DIR", raising=False)
    paths = jars.kafka_jars()
    assert [p.name for p in paths[:2]] == list(jars.JARS) and all(p.is_file() for p in paths)
    assert paths[0].parent.name.startswith(f"flink-connector-kafka-{jars.connector_version()}-")
    with zipfile.ZipFile(paths[0]) as connector:
        manifest = connector.read("META-INF/MANIFEST.MF").decode()
    assert f"Implementation-Version: {_pom_property('connector.version')}" in manifest.splitlines()
    with zipfile.ZipFile(paths[1]) as clients:
        props = clients.read("kafka/kafka-version.properties").decode()
    assert f"version={_pom_property('kafka.version')}" in props.splitlines()
    # nothing the Flink runtime already has: only the connector, the client and its zstd codec
    assert sorted(p.name for p in paths) == ["flink-connector-kafka.jar", "kafka-clients.jar", "zstd-jni.jar"]

    def no_mvn(*args, **kwargs):
        raise AssertionError("mvn ran although the cache was complete")

    monkeypatch.setattr(jars.subprocess, "run", no_mvn)
    assert jars.kafka_jars() == paths


def test_a_maven_failure_is_one_jars_error_and_leaves_no_partial_cache(tmp_path, monkeypatch) -> None:
    _fake_mvn(tmp_path / "bin", 'echo "[ERROR] Failed to execute goal: Could not transfer artifact '
                                'org.apache.kafka:kafka-clients:jar:4.2.0 from/to central: Connection refused"\n'
                                'exit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CTXSYNC_JARS_DIR", raising=False)
    with pytest.raises(jars.JarsError) as caught:
        jars.kafka_jars()
    assert "Connection refused" in str(caught.value) and "\n" not in str(caught.value)
    assert list((tmp_path / "home" / "jars").iterdir()) == []  # the scratch directory is gone


def test_mvn_missing_or_fetch_off_is_a_jars_error(tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CTXSYNC_JARS_DIR", raising=False)
    with pytest.raises(jars.JarsError, match="mvn not found"):
        jars.kafka_jars()
    with pytest.raises(jars.JarsError, match="fetch-kafka-jars.sh"):
        jars.kafka_jars(fetch=False)


def test_a_successful_resolve_moves_the_jars_into_the_versioned_cache(tmp_path, monkeypatch) -> None:
    # the stand-in writes what copy-dependencies would, into the -DoutputDirectory it is given
    _fake_mvn(tmp_path / "bin", 'for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#-DoutputDirectory=}";; '
                                'esac; done\nfor j in flink-connector-kafka kafka-clients zstd-jni; do '
                                'echo jar > "$out/$j.jar"; done\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CTXSYNC_JARS_DIR", raising=False)
    paths = jars.kafka_jars()
    assert [p.name for p in paths] == ["flink-connector-kafka.jar", "kafka-clients.jar", "zstd-jni.jar"]
    cache = paths[0].parent
    assert cache.parent == tmp_path / "home" / "jars" and cache.name.startswith("flink-connector-kafka-")
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no scratch left beside it
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755


def test_jars_dir_override_is_used_as_it_is(tmp_path, monkeypatch) -> None:
    for name in jars.JARS:
        (tmp_path / name).write_bytes(b"jar")
    monkeypatch.setenv("CTXSYNC_JARS_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no mvn: it must not be needed
    assert jars.kafka_jars(fetch=False) == [tmp_path / name for name in jars.JARS]

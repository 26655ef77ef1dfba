"""context-drift on Flink and on Beam writes the reference runner's files byte for byte.

The Flink run goes through the `ctxsync run` command line in a subprocess, as docs/data-quality.md shows it.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ctxsync.generate import GeneratorOptions, generate_lines, parse_drift
from tests.fixtures_drift import assert_same_drift_files, read_records, run_drift
from tests.helpers import ROOT

# Small windows so a short stream has many scored windows; a planted drift so alerts are compared too.
OVERRIDES = ["drift.window=5m", "drift.min_count=30", "drift.out_of_orderness=1m"]


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory):
    base = tmp_path_factory.mktemp("drift-engines")
    stream = base / "stream.jsonl"
    options = GeneratorOptions(events=6000, seed=4, drift=(parse_drift("segment@+30m"), parse_drift("sessionLength@+30m")))
    stream.write_bytes(b"".join(line + b"\n" for line in generate_lines(options)))
    run_drift("reference", stream, base / "reference", OVERRIDES)
    records = read_records(base / "reference")
    assert any(r["alerts"] for r in records) and any(r["late"] for r in records)
    return stream, base / "reference"


@pytest.mark.flink
def test_flink_at_parallelism_2_equals_reference(small_stream, tmp_path):
    stream, reference = small_stream
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    subprocess.run(
        [sys.executable, "-m", "ctxsync.cli", "run", "context-drift", "--runner", "flink", "--parallelism", "2",
         "--input", str(stream), "--out", str(tmp_path), "--jobs", str(ROOT / "jobs.yaml"), *sets],
        check=True, cwd=ROOT, capture_output=True, timeout=600,
    )
    assert_same_drift_files(tmp_path, reference)
    assert json.loads((tmp_path / "summary.json").read_text())["read"] == 6000
    assert not (tmp_path / "_parts").exists()


@pytest.mark.beam
def test_beam_equals_reference(small_stream, tmp_path):
    stream, reference = small_stream
    summary = run_drift("beam", stream, tmp_path, OVERRIDES)
    assert_same_drift_files(tmp_path, reference)
    assert summary.read == 6000

"""Shared fixtures of the drift tests: a stable and a drifted stream (same seed, so identical before the
drift starts), generated once per session, and a helper that runs context-drift like `ctxsync run`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxsync.config import resolve_job
from ctxsync.generate import GeneratorOptions, generate_lines, parse_drift
from ctxsync.progress import Progress
from pipelines.drift_outputs import DRIFT_FILES, DriftSummary
from pipelines.runners import RunRequest, get_runner
from tests.helpers import ROOT

EVENTS, SEED = 24_000, 1
DRIFT_AT = "2026-11-24T10:00:00.000Z"  # +2h: the start of a 15-minute window
DRIFTS = (f"segment@{DRIFT_AT}", f"creditScore@{DRIFT_AT}")


def _write(path: Path, options: GeneratorOptions) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in generate_lines(options)))
    return path


@pytest.fixture(scope="session")
def drift_streams(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("drift-streams")
    return {
        "stable": _write(base / "stable.jsonl", GeneratorOptions(events=EVENTS, seed=SEED)),
        "drifted": _write(base / "drifted.jsonl", GeneratorOptions(
            events=EVENTS, seed=SEED, drift=tuple(parse_drift(d) for d in DRIFTS))),
    }


def run_drift(runner: str, input_path: Path, out_dir: Path, overrides: list[str] = ()) -> DriftSummary:
    job = resolve_job(ROOT / "jobs.yaml", "context-drift", list(overrides))
    request = RunRequest("context-drift", job, input_path, out_dir, job.parallelism, Progress(f"test [{runner}]"))
    return get_runner(runner, job.type).run_embedded(request)


def read_records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "drift.jsonl").read_text().splitlines()]


def assert_same_drift_files(a: Path, b: Path) -> None:
    for name in DRIFT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between {a} and {b}"


@pytest.fixture(scope="session")
def drifted_run(drift_streams, tmp_path_factory) -> Path:
    """The drifted stream's context-drift outputs (reference runner), computed once per session."""
    out = tmp_path_factory.mktemp("drifted-run")
    run_drift("reference", drift_streams["drifted"], out)
    return out


@pytest.fixture(scope="session")
def stable_run(drift_streams, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stable-run")
    run_drift("reference", drift_streams["stable"], out)
    return out

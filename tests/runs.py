"""Run a job through the runner registry exactly as `ctxsync run` does, for engine tests."""
from __future__ import annotations

from pathlib import Path

from ctxsync.config import resolve_job
from ctxsync.progress import Progress
from pipelines.file_outputs import OUTPUT_FILES, Summary
from pipelines.runners import RunRequest, get_runner
from tests.helpers import ROOT


def run_with(runner: str, input_path: Path, out_dir: Path, overrides: list[str] = (),
             parallelism: int | None = None) -> Summary:
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", list(overrides))
    request = RunRequest("context-sync", job, input_path, out_dir,
                         parallelism or job.parallelism, Progress(f"test [{runner}]"))
    return get_runner(runner).run_embedded(request)


def assert_same_files(a: Path, b: Path) -> None:
    for name in OUTPUT_FILES:
        left, right = (a / name).read_bytes(), (b / name).read_bytes()
        assert left == right, f"{name} differs between {a} and {b}"

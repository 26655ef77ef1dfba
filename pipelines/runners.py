"""Pick an engine for a job: one job definition, several runners, identical outputs."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ctxsync.config import ConfigError, JobConfig
from ctxsync.progress import Progress
from pipelines.file_outputs import Summary

# runner name -> module with `run_embedded(request) -> Summary`; imported lazily (engines start slowly)
RUNNERS = {"beam": "pipelines.beam.runner", "flink": "pipelines.flink.runner", "reference": "pipelines.reference"}
# job types other than context-sync: job type -> runner name -> module
JOB_RUNNERS = {
    "context-drift": {"beam": "pipelines.beam.drift", "flink": "pipelines.flink.drift",
                      "reference": "pipelines.drift_reference"},
}


@dataclass(frozen=True)
class RunRequest:
    """Everything a runner needs for one run of a job in the embedded profile (files in, files out)."""

    job_name: str
    job: JobConfig
    input_path: Path
    out_dir: Path
    parallelism: int
    progress: Progress


class Runner(Protocol):
    def run_embedded(self, request: RunRequest) -> Summary: ...


def get_runner(name: str, job_type: str = "context-sync") -> Runner:
    runners = JOB_RUNNERS.get(job_type, RUNNERS)
    if name not in runners:
        raise ConfigError(f"unknown runner {name!r} for {job_type}; runners: {', '.join(runners)}")
    return importlib.import_module(runners[name])  # type: ignore[return-value]

"""The PyFlink runner, embedded profile: FileSource -> context-sync graph -> FileSink -> contract files."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.file_outputs import OutputCollector, Summary
from pipelines.flink.env import flink_environment
from pipelines.flink.files import CHECKPOINT_INTERVAL_MS, local_file_job_config, run_to_files, tagged_line_sink, text_lines

if TYPE_CHECKING:
    from pipelines.runners import RunRequest


def build_embedded_job(request: "RunRequest", parts: Path) -> Any:
    """The job graph of the embedded profile; returns the environment ready to execute."""
    from pipelines.flink.sync import sync_stream

    job = request.job
    # Default parallelism 1 keeps the source and key extraction in one ordered pipeline;
    # only the keyed step and the sink fan out.
    env = flink_environment({**local_file_job_config(parts), **job.flink}, parallelism=1)
    env.enable_checkpointing(CHECKPOINT_INTERVAL_MS)
    lines = text_lines(env, request.input_path)
    cache_size = int(job.flink.get("python.state.cache-size", "10000"))
    outputs = sync_stream(env, lines, job.settings.to_settings(), str(request.input_path), request.parallelism,
                          job.batching.to_batching(), cache_size)
    outputs.sink_to(tagged_line_sink(parts)).set_parallelism(request.parallelism).name("tagged outputs")
    return env


def run_embedded(request: "RunRequest", timings: dict[str, float] | None = None) -> Summary:
    """Run the job, then merge its part files into the contract's files."""
    return run_to_files(request, lambda parts: build_embedded_job(request, parts), OutputCollector(), timings)

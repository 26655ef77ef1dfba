"""The PyFlink runner, embedded profile: FileSource -> context-sync graph -> FileSink -> contract files.

Part files are committed by Flink's FileSink at checkpoints (the final one at end of input), then
merged by pipelines.file_outputs into the contract layout, ordered by source position so that
parallelism 1 and N write identical files.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.file_outputs import OutputCollector, Summary
from pipelines.flink_env import flink_environment

if TYPE_CHECKING:
    from pipelines.runners import RunRequest

PARTS_DIR = "_parts"
FINAL_CHECKPOINT_INTERVAL_MS = 1000


def _line_files(parts: Path) -> list[Path]:
    return sorted(p for p in parts.rglob("*") if p.is_file() and not p.name.startswith("."))


def _unfinished(parts: Path) -> list[Path]:
    return [p for p in parts.rglob(".*") if p.is_file()]


def build_embedded_job(request: "RunRequest", parts: Path):
    """The job graph of the embedded profile; returns the environment ready to execute."""
    from pyflink.common import Encoder, WatermarkStrategy
    from pyflink.datastream.connectors.file_system import (
        BucketAssigner, FileSink, FileSource, OutputFileConfig, StreamFormat,
    )

    from pipelines.flink_sync import sync_stream

    job = request.job
    # Default parallelism 1 keeps the source and key extraction in one ordered pipeline;
    # only the keyed step and the sink fan out.
    env = flink_environment(job.flink, parallelism=1)
    env.enable_checkpointing(FINAL_CHECKPOINT_INTERVAL_MS)
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format("ISO-8859-1"), str(request.input_path.resolve())
    ).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "read lines")
    settings = job.settings.to_settings()
    cache_size = int(job.flink.get("python.state.cache-size", "10000"))
    outputs = sync_stream(lines, settings, str(request.input_path), request.parallelism, cache_size)
    sink = (
        FileSink.for_row_format(str(parts), Encoder.simple_string_encoder("UTF-8"))
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
        .with_output_file_config(OutputFileConfig.builder().with_part_prefix("part").build())
        .build()
    )
    outputs.sink_to(sink).set_parallelism(request.parallelism).name("tagged outputs")
    return env


def run_embedded(request: "RunRequest", timings: dict[str, float] | None = None) -> Summary:
    """Run the job, then merge its part files; `timings["engine_s"]` gets the Flink job's own time."""
    parts = request.out_dir / PARTS_DIR
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    request.progress.note("starting Flink (local mini-cluster)")
    env = build_embedded_job(request, parts)
    started = time.perf_counter()
    client = env.execute_async(f"ctxsync {request.job_name}")
    _wait(client, parts, request)
    if timings is not None:
        timings["engine_s"] = time.perf_counter() - started
    unfinished = _unfinished(parts)
    if unfinished:
        raise RuntimeError(f"Flink left {len(unfinished)} uncommitted part files in {parts}: {unfinished[:3]}")
    collector = OutputCollector()
    for path in _line_files(parts):
        with path.open("r", encoding="utf-8") as handle:
            for line in handle:
                collector.add(line.rstrip("\n"))
    summary = collector.write(request.out_dir)
    shutil.rmtree(parts)
    return summary


def _wait(client, parts: Path, request: "RunRequest") -> None:
    """Block until the job ends, reporting bytes written while it runs; raise if it failed."""
    from pyflink.common import JobStatus

    done = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED}
    while True:
        try:
            status = client.get_job_status().result()
        except Exception:  # the per-job mini-cluster shuts down as soon as the job has ended
            break
        if status in done:
            break
        written = sum(p.stat().st_size for p in parts.rglob("*") if p.is_file())
        request.progress.note(f"running, {written / 1e6:,.1f} MB of outputs written", force=False)
        time.sleep(0.5)
    client.get_job_execution_result().result()  # raises with the job's failure cause

"""File source, part-file sink and run-to-files, shared by every embedded-profile job on PyFlink.

Part files are committed by Flink's FileSink at checkpoints (the final one at end of input), then fed to
a collector (pipelines/file_outputs.py, pipelines/drift_outputs.py) that writes the job's files in a
deterministic order, so parallelism 1 and N write identical files.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipelines.flink.control import JobFailed, stop_requests

if TYPE_CHECKING:
    from pipelines.runners import RunRequest

PARTS_DIR = "_parts"
CHECKPOINTS_DIR = "_checkpoints"
# Checkpoints of a file job only commit part files; the last one is taken as soon as the input ends,
# whatever the interval, so a long interval saves snapshotting all users' state every second.
CHECKPOINT_INTERVAL_MS = 60_000
# A file job fails instead of restarting: with checkpointing on, Flink's default strategy would retry a
# broken operator forever instead of reporting it, and a file run is cheap to start again.
FILE_JOB_CONFIG = {"restart-strategy.type": "disable"}


def local_file_job_config(parts: Path) -> dict[str, str]:
    """FILE_JOB_CONFIG plus checkpoints on local disk beside the part files: the default storage (the
    JobManager's memory) caps a checkpoint at 5 MB, which 10,000 users' state exceeds."""
    return {**FILE_JOB_CONFIG, "execution.checkpointing.storage": "filesystem",
            "execution.checkpointing.dir": (parts.parent / CHECKPOINTS_DIR).resolve().as_uri()}
S = TypeVar("S", covariant=True)


class Collector(Protocol[S]):
    def add(self, line: str) -> None: ...

    def write(self, out_dir: Path) -> S: ...


def text_lines(env: Any, path: Path, watermarks: Any = None) -> Any:
    """The lines of one file, decoded as ISO-8859-1 (bytes map 1:1, so `.encode('latin-1')` restores them)."""
    from pyflink.common import WatermarkStrategy
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format("ISO-8859-1"), str(path.resolve())).build()
    return env.from_source(source, watermarks or WatermarkStrategy.no_watermarks(), "read lines")


def tagged_line_sink(parts: Path) -> Any:
    """Row-format part files in `parts`, committed at checkpoints."""
    from pyflink.common import Encoder
    from pyflink.datastream.connectors.file_system import BucketAssigner, FileSink, OutputFileConfig

    return (
        FileSink.for_row_format(str(parts), Encoder.simple_string_encoder("UTF-8"))
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
        .with_output_file_config(OutputFileConfig.builder().with_part_prefix("part").build())
        .build()
    )


def run_to_files(request: "RunRequest", build: Callable[[Path], Any], collector: Collector[S],
                 timings: dict[str, float] | None = None) -> S:
    """Build the job with `build(parts_dir)`, run it, feed its part files to `collector`, write outputs.

    `timings["engine_s"]` gets the Flink job's own time (submit to finish), for the benchmark.
    """
    parts = request.out_dir / PARTS_DIR
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    request.progress.note("starting Flink (local mini-cluster)")
    # Ctrl-C is taken between calls into the JVM, never inside one (py4j would log a traceback of its own)
    with stop_requests() as interrupted:
        env = build(parts)
        if interrupted.is_set():
            raise KeyboardInterrupt
        started = time.perf_counter()
        client = env.execute_async(f"ctxsync {request.job_name}")
        _wait(client, parts, request, interrupted)
    if timings is not None:
        timings["engine_s"] = time.perf_counter() - started
    unfinished = [p for p in parts.rglob(".*") if p.is_file()]
    if unfinished:
        raise RuntimeError(f"Flink left {len(unfinished)} uncommitted part files in {parts}: {unfinished[:3]}")
    for path in sorted(p for p in parts.rglob("*") if p.is_file()):
        with path.open("r", encoding="utf-8") as handle:
            for line in handle:
                collector.add(line.rstrip("\n"))
    result = collector.write(request.out_dir)
    shutil.rmtree(parts)
    shutil.rmtree(request.out_dir / CHECKPOINTS_DIR, ignore_errors=True)
    return result


def _wait(client: Any, parts: Path, request: "RunRequest", interrupted: threading.Event) -> None:
    """Block until the job ends, reporting bytes written while it runs; raise if it failed, cancel the job
    and raise KeyboardInterrupt on Ctrl-C."""
    from pyflink.common import JobStatus

    done = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED}
    while True:
        try:
            status = client.get_job_status().result()
        except Exception:  # the per-job mini-cluster shuts down as soon as the job has ended
            break
        if status in done:
            break
        if interrupted.is_set():
            client.cancel().result()
            raise KeyboardInterrupt
        written = sum(p.stat().st_size for p in parts.rglob("*") if p.is_file())
        request.progress.note(f"running, {written / 1e6:,.1f} MB of outputs written", force=False)
        time.sleep(0.5)
    try:
        client.get_job_execution_result().result()
    except Exception as exc:  # Py4JJavaError: surface the Python error, not the Java stack
        python_error = udf_error(exc)
        if python_error is None:
            raise
        raise JobFailed(f"a Python function of the job failed: {python_error}",
                        "--debug prints the Python frames") from exc


def udf_error(exc: BaseException) -> str | None:
    """The Python error inside a Flink job failure (pemja's PythonException) and its innermost frame."""
    cause = getattr(exc, "java_exception", None)
    while cause is not None:
        if cause.getClass().getName() == "pemja.core.PythonException":
            frames = [f"{el.getFileName()}:{el.getLineNumber()}"
                      for el in cause.getStackTrace() if str(el.getFileName()).endswith(".py")]
            message = re.sub(r"<class '([\w.]+)'>", r"\1", " ".join(str(cause.getMessage()).split()))
            return f"{message} (at {frames[0]})" if frames else message
        cause = cause.getCause()
    return None

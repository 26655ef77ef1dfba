"""The Beam runner: context-sync on Apache Beam's local runner (FnApiRunner, in-process, batch for files).

A thin adapter around the same operators as every other runner:

    Create(chunks) -> ReadAndIngest (bytes -> (userId, pickled [Events of the chunk]) | dead-letter lines)
                   -> GroupByKey(userId) -> FoldUser (sort by seq, transforms.sync.sync_step)
                   -> Flatten -> WriteToText shards -> OutputCollector -> the contract's five files

Ordering. Beam promises no order among the elements of one key, neither in batch nor in streaming, yet
the contract wants each user's events in source order. So every event carries its source position `seq`
(line number; a Kafka offset for a partitioned source), and the keyed step always *sorts by seq, then
folds* (`fold_user`) with the user's one state value:

- Batch (files, `run_embedded`): GroupByKey per user, then one fold over all of the user's events. This is
  deterministic and the fastest form on the FnApiRunner: a stateful DoFn there pays a state-cache size
  walk and a timer write per element (about 4x the CPU, profiled on 20k events) for state that a batch
  fold keeps in a local variable anyway. Each chunk ships one pickled list per user, so Beam's cost is per
  (user, chunk), not per event.
- Streaming (`SyncUser`, used on unbounded sources and by the TestStream test): a stateful DoFn keeps the
  user's state value in a ReadModifyWriteState and buffers arriving events in a bag; an event-time timer
  at the earliest buffered event time releases the whole bag, sorted by seq, once the watermark passes
  it (a late element's time is already behind, so it goes out at the next watermark step). A watermark
  passes only after everything emitted before it upstream was delivered, so no smaller seq can still be
  on its way. Late elements (behind the watermark) are kept, never dropped: the global window never
  expires, and lateness is the operators' business (ordering violations), not the runner's.

Nothing depends on when timers fire: dedup retention runs on the user's event-time clock
(transforms/dedup.py) and expired eventIds are purged inside the state value, so no cleanup timer; the
state TTL (transforms/state_ttl.py) is decided in sync_step on the user's own clock too. Only memory
depends on a timer: with a state TTL, streaming `SyncUser` clears a user whose clock is two TTLs behind the
watermark (the batch fold keeps no state past one user's group, so it has nothing to reclaim).
"""
from __future__ import annotations

import pickle
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import apache_beam as beam
from apache_beam.coders import PickleCoder, StrUtf8Coder, VarIntCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer,
)
from apache_beam.utils.timestamp import Timestamp

from pipelines.beam.compat import beam_urns
from pipelines.beam.metrics import job_counters, record_tally
from pipelines.file_outputs import OutputCollector, Summary
from transforms.ingest import DEAD_LETTER_KEY, ingest, is_blank
from transforms.model import Event
from transforms.records import HISTORY, VIEW
from transforms.settings import SyncSettings
from transforms.state_ttl import user_clock
from transforms.sync import UserState, sync_step
from transforms.tally import lags_ms, tally_lines

if TYPE_CHECKING:
    from ctxsync.config import JobConfig
    from pipelines.runners import RunRequest

CHUNK_BYTES = 4 << 20  # one read task per ~4 MiB of input; lines never straddle chunks
DEAD = "dead"  # tag of the ingest step's dead-letter output
KEYED = tuple[str, Any]  # (userId, value): str keys get the deterministic coder that keyed steps need


class Chunk(NamedTuple):
    """A byte range of the input file that starts at a line start; `first_line` numbers its first line."""

    offset: int
    length: int
    first_line: int


def plan_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cut the file after a `\\n` every ~chunk_bytes, counting lines exactly as reference.read_lines does.

    Cutting only after `\\n` keeps `\\r\\n` whole, so `bytes.splitlines` of the chunks, concatenated,
    equals `bytes.splitlines` of the file: same lines, same numbers, blank lines counted.
    """
    data = path.read_bytes()
    chunks: list[Chunk] = []
    start, line = 0, 1
    while start < len(data):
        cut = data.find(b"\n", start + chunk_bytes)
        end = len(data) if cut < 0 else cut + 1
        chunks.append(Chunk(start, end - start, line))
        line += len(data[start:end].splitlines())
        start = end
    return chunks


class ReadAndIngest(beam.DoFn):
    """Read one chunk's lines and validate them: (userId, [Events of this chunk]), dead letters on DEAD.

    Reading raw bytes (not ReadFromText) keeps non-UTF-8 lines for the dead letter and splits lines like
    the reference runner (\\n, \\r, \\r\\n). A chunk's events are grouped per user before the shuffle:
    one element per user and chunk instead of one per event (Beam's cost is mostly per element).
    """

    def __init__(self, path: str, settings: SyncSettings) -> None:
        self.path, self.settings = path, settings

    def process(self, chunk: Chunk) -> Iterator[Any]:
        with open(self.path, "rb") as handle:
            handle.seek(chunk.offset)
            data = handle.read(chunk.length)
        by_user: dict[str, list[Event]] = {}
        dead: list[str] = []
        for number, raw in enumerate(data.splitlines(), start=chunk.first_line):
            if is_blank(raw):
                continue
            key, value = ingest(raw, number, f"{self.path}:{number}", int(time.time() * 1000), self.settings)
            if key == DEAD_LETTER_KEY:
                dead.append(value)
            else:
                by_user.setdefault(key, []).append(value)
        if dead:
            record_tally(tally_lines(dead))
            yield beam.pvalue.TaggedOutput(DEAD, "\n".join(dead))
        for user, events in by_user.items():
            yield user, pickle.dumps(events, pickle.HIGHEST_PROTOCOL)  # one pickle, not one per Event


class IngestRecords(beam.DoFn):
    """Validate (seq, raw) records of an unbounded source; the element's timestamp (event time) is kept."""

    def __init__(self, origin_prefix: str, settings: SyncSettings) -> None:
        self.origin_prefix, self.settings = origin_prefix, settings

    def process(self, record: tuple[int, bytes]) -> Iterator[Any]:
        seq, raw = record
        key, value = ingest(raw, seq, f"{self.origin_prefix}:{seq}", int(time.time() * 1000), self.settings)
        if key == DEAD_LETTER_KEY:
            record_tally(tally_lines([value]))
        yield beam.pvalue.TaggedOutput(DEAD, value) if key == DEAD_LETTER_KEY else (key, value)


def fold_user(
    state: UserState | None, events: Iterable[Event], settings: SyncSettings, accepted_ms: list[int] | None = None
) -> tuple[UserState | None, list[str]]:
    """sync_step over events sorted by seq; of each aggregate's views only the last is kept. The event
    times of accepted events go to `accepted_ms` (the job metrics' lag).

    Every sink keeps the latest view per aggregate (the file sink by seq, an index by upsert), so the
    earlier views of one fold are dropped here rather than shipped.
    """
    outputs: list[str] = []
    views: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.seq):
        state, lines = sync_step(state, event, settings)
        if accepted_ms is not None and lines[-1][0] == HISTORY:
            accepted_ms.append(event.ts)
        for line in lines:
            if line[0] == VIEW:
                views[line.split("\t", 2)[1]] = line
            else:
                outputs.append(line)
    outputs.extend(views.values())
    return state, outputs


def record_fold(outputs: list[str], accepted_ms: list[int], started: float) -> None:
    """One fold's job metrics: its output lines, its accepted events' lag, its time since `started`."""
    record_tally(tally_lines(outputs), lags_ms(accepted_ms, int(time.time() * 1000)),
                 int((time.perf_counter() - started) * 1000))


class FoldUser(beam.DoFn):
    """Batch: all of one user's events (after GroupByKey: one pickled list per chunk), folded in seq order."""

    def __init__(self, settings: SyncSettings) -> None:
        self.settings = settings

    def process(self, group: tuple[str, Iterable[bytes]]) -> Iterator[str]:
        started, accepted = time.perf_counter(), []
        events = (event for part in group[1] for event in pickle.loads(part))
        _, outputs = fold_user(None, events, self.settings, accepted)
        record_fold(outputs, accepted, started)
        if outputs:
            yield "\n".join(outputs)  # one element per user: the text sink writes it as that many lines


class SyncUser(beam.DoFn):
    """Streaming: buffer a user's events; when the watermark passes the earliest, fold all in seq order."""

    PENDING = BagStateSpec("pending", PickleCoder())
    EARLIEST = ReadModifyWriteStateSpec("earliest", VarIntCoder())  # micros of the earliest pending
    USER = ReadModifyWriteStateSpec("user", PickleCoder())
    RELEASE = TimerSpec("release", TimeDomain.WATERMARK)
    RECLAIM = TimerSpec("reclaim", TimeDomain.WATERMARK)  # state TTL: two TTLs after the user's clock

    def __init__(self, settings: SyncSettings) -> None:
        self.settings = settings

    def process(
        self, element: tuple[str, Event], timestamp: Timestamp = beam.DoFn.TimestampParam,
        pending: Any = beam.DoFn.StateParam(PENDING), earliest: Any = beam.DoFn.StateParam(EARLIEST),
        release: Any = beam.DoFn.TimerParam(RELEASE),
    ) -> Iterable[str]:
        pending.add(element[1])
        first = earliest.read()
        if first is None or timestamp.micros < first:
            earliest.write(timestamp.micros)
            # A late element's time is already behind the watermark: the timer fires at the next step.
            release.set(timestamp)
        return ()  # nothing yet: the timer emits, in seq order

    @on_timer(RELEASE)
    def on_release(
        self, pending: Any = beam.DoFn.StateParam(PENDING), earliest: Any = beam.DoFn.StateParam(EARLIEST),
        user: Any = beam.DoFn.StateParam(USER), reclaim: Any = beam.DoFn.TimerParam(RECLAIM),
    ) -> Iterator[str]:
        started, accepted = time.perf_counter(), []
        state, outputs = fold_user(user.read(), pending.read(), self.settings, accepted)
        record_fold(outputs, accepted, started)
        pending.clear()
        earliest.clear()
        user.write(state)
        ttl_ms, clock = self.settings.state_ttl_ms, None if state is None else user_clock(state)
        if ttl_ms is not None and clock is not None:
            reclaim.set(Timestamp(micros=(clock + 2 * ttl_ms) * 1000))
        yield from outputs

    @on_timer(RECLAIM)
    def on_reclaim(
        self, earliest: Any = beam.DoFn.StateParam(EARLIEST), user: Any = beam.DoFn.StateParam(USER),
    ) -> Iterable[str]:
        """The watermark is two TTLs past the user's clock: its state leaves (events still buffered are
        folded first; their release sets this timer again)."""
        if earliest.read() is None:
            user.clear()
        return ()


def read_and_ingest(pipeline: beam.Pipeline, input_path: Path, settings: SyncSettings) -> Any:
    """The file's lines, parsed: `.valid` holds (userId, pickled events), `[DEAD]` dead-letter lines."""
    return (
        pipeline
        | "Chunks" >> beam.Create(plan_chunks(input_path))
        | "ReadAndIngest" >> beam.ParDo(ReadAndIngest(str(input_path), settings))
        .with_output_types(KEYED).with_outputs(DEAD, main="valid")
    )


def build_batch(pipeline: beam.Pipeline, input_path: Path, settings: SyncSettings) -> beam.PCollection:
    """File chunks in, tagged output lines out (dead letters and sync outputs)."""
    ingested = read_and_ingest(pipeline, input_path, settings)
    synced = (
        ingested.valid
        | "ByUser" >> beam.GroupByKey()
        | "FoldUser" >> beam.ParDo(FoldUser(settings))
    )
    return (ingested[DEAD], synced) | "Outputs" >> beam.Flatten()


def build_streaming(records: beam.PCollection, origin_prefix: str, settings: SyncSettings) -> beam.PCollection:
    """Timestamped (seq, raw) records of an unbounded source in, tagged output lines out."""
    ingested = records | "Ingest" >> beam.ParDo(IngestRecords(origin_prefix, settings)).with_output_types(
        KEYED).with_outputs(DEAD, main="valid")
    synced = ingested.valid | "SyncUser" >> beam.ParDo(SyncUser(settings))
    return (ingested[DEAD], synced) | "Outputs" >> beam.Flatten()


def read_shards(directory: Path) -> Iterator[str]:
    """Tagged lines of the text shards; split on \\n only (JSON text may hold U+2028, which splitlines cuts)."""
    for shard in sorted(directory.iterdir()):
        for line in shard.read_bytes().split(b"\n"):
            if line:
                yield line.decode("utf-8")


def pipeline_options(parallelism: int) -> PipelineOptions:
    """Beam's local runner: in-process at parallelism 1, else that many SDK worker processes (real cores)."""
    mode = "in_memory" if parallelism == 1 else "multi_processing"
    return PipelineOptions(flags=[], runner="DirectRunner", direct_num_workers=parallelism, direct_running_mode=mode)


def run_job(
    input_path: Path, job: "JobConfig", out_dir: Path, parallelism: int | None = None,
    timings: dict[str, float] | None = None, metrics: dict[str, int] | None = None,
) -> Summary:
    """Run the batch graph to text shards, then write the contract's files to out_dir from them.

    `timings["engine_s"]` gets the pipeline's own seconds (without merging the shards into files), as the
    Flink runner reports it for the benchmark; `metrics` gets the job metrics' Beam counters.
    """
    settings = job.settings.to_settings()
    work = Path(tempfile.mkdtemp(prefix="ctxsync-beam-"))
    try:
        start = time.perf_counter()
        with beam_urns(), beam.Pipeline(options=pipeline_options(parallelism or job.parallelism)) as pipeline:
            lines = build_batch(pipeline, input_path, settings)
            lines | "WriteShards" >> beam.io.WriteToText(str(work / "part"), coder=StrUtf8Coder())
        if metrics is not None:
            metrics.update(job_counters(pipeline.result))  # run and waited for when the block ended
        if timings is not None:
            timings["engine_s"] = time.perf_counter() - start
        collector = OutputCollector()
        collector.add_all(read_shards(work))
        return collector.write(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_embedded(request: "RunRequest", timings: dict[str, float] | None = None) -> Summary:
    """Embedded profile on Beam: same inputs, files and summary as pipelines.reference.run_embedded."""
    request.progress.note(f"running Beam pipeline on {request.input_path} (DirectRunner, in-process)")
    return run_job(request.input_path, request.job, request.out_dir, request.parallelism, timings)


def measure_beam(input_path: Path, job: "JobConfig") -> float:
    """Events per second of one whole embedded run (pipeline start to files written), for bench/."""
    out_dir = Path(tempfile.mkdtemp(prefix="ctxsync-beam-bench-"))
    try:
        start = time.perf_counter()
        summary = run_job(input_path, job, out_dir)
        return summary.read / (time.perf_counter() - start)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

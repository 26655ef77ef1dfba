"""The context-drift graph on Apache Beam (local runner, batch over a file): a thin adapter.

    Create(chunks) -> ReadAndIngest (from pipelines/beam/runner.py: (userId, Event) | dead-letter line)
                   -> (seq, ts, rows) -> GroupByKey(constant) -> StampAll (sort by seq; transforms.drift
                      stamp_step, then flush: windows, watermark, late rows, window closes)
                   -> GroupByKey(category/attribute) -> FoldKey (sort by message index; drift_step)
                   -> WriteToText shards -> DriftCollector -> drift.jsonl, dead_letter.jsonl, summary.json

Beam keeps no element order, and the watermark of this job is a property of the whole stream in source
order (max event time so far), so the stamp step sees all valid events of the file in one sorted pass:
it is O(events) in memory on one worker, like the reference runner. Each stamp message carries its
position, so the per-key fold restores the order the reference and Flink see.
"""
from __future__ import annotations

import pickle

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.coders import StrUtf8Coder

from pipelines.beam.compat import beam_urns
from pipelines.beam.runner import DEAD, pipeline_options, read_and_ingest, read_shards
from pipelines.drift_outputs import DriftCollector, DriftSummary
from pipelines.drift_reference import drift_settings
from transforms.drift import (
    DriftSettings, drift_line, drift_step, event_rows, flush, new_key_state, new_stamp_state, stamp_step,
    stats_line,
)

if TYPE_CHECKING:
    from pipelines.runners import RunRequest

ALL = ""  # the one key of the global stamp step
STATS = "stats"


class StampAll(beam.DoFn):
    """Every valid event, sorted by seq, through the stamp step; emits (key, (index, message))."""

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings

    def process(self, group: tuple[str, Iterable[tuple[int, int, list]]]) -> Iterator[Any]:
        stamp = new_stamp_state()
        index = 0
        for _, ts, rows in sorted(group[1], key=lambda e: e[0]):
            for message in stamp_step(stamp, ts, rows, self.settings):
                index += 1
                yield message[1], (index, message)
        for message in flush(stamp, self.settings):
            index += 1
            yield message[1], (index, message)
        yield beam.pvalue.TaggedOutput(STATS, stats_line(stamp))


class FoldKey(beam.DoFn):
    """All stamp messages of one (category, attribute), folded in stamp order from a fresh state."""

    def __init__(self, settings: DriftSettings) -> None:
        self.settings = settings

    def process(self, group: tuple[str, Iterable[tuple[int, tuple]]]) -> Iterator[str]:
        state = new_key_state()
        for _, message in sorted(group[1], key=lambda m: m[0]):
            for record in drift_step(state, message, self.settings):
                yield drift_line(record)


def build_batch(pipeline: beam.Pipeline, input_path: Path, request: "RunRequest") -> beam.PCollection:
    settings = request.job.settings.to_settings()
    drift = drift_settings(request.job)
    ingested = read_and_ingest(pipeline, input_path, settings)
    stamped = (
        ingested.valid
        | "Rows" >> beam.FlatMap(lambda kv: [(ALL, (e.seq, e.ts, event_rows(e))) for e in pickle.loads(kv[1])])
        | "All" >> beam.GroupByKey()
        | "Stamp" >> beam.ParDo(StampAll(drift)).with_outputs(STATS, main="messages")
    )
    records = (
        stamped.messages
        | "ByAttribute" >> beam.GroupByKey()
        | "Fold" >> beam.ParDo(FoldKey(drift))
    )
    return (ingested[DEAD], stamped[STATS], records) | "Outputs" >> beam.Flatten()


def run_embedded(request: "RunRequest") -> DriftSummary:
    request.progress.note(f"running Beam pipeline on {request.input_path} (DirectRunner)")
    work = Path(tempfile.mkdtemp(prefix="ctxsync-beam-drift-"))
    try:
        with beam_urns(), beam.Pipeline(options=pipeline_options(request.parallelism)) as pipeline:
            lines = build_batch(pipeline, request.input_path, request)
            lines | "WriteShards" >> beam.io.WriteToText(str(work / "part"), coder=StrUtf8Coder())
        collector = DriftCollector()
        collector.add_all(read_shards(work))
        return collector.write(request.out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

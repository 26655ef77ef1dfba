"""The context-drift graph on PyFlink: a thin adapter around transforms/drift.py.

    FileSource -> IngestLines (parse+validate, parallelism 1)
               -> key_by(constant) -> StampWindows (windows + watermark from the data, parallelism 1)
               -> key_by(category/attribute) -> DriftByKey (statistics, scores, alerts; any parallelism)
               -> FileSink of tagged lines -> drift.jsonl, dead_letter.jsonl, summary.json

The watermark is computed by `stamp_step` from the event stream, not by Flink, so the records equal the
reference runner's byte for byte. Flink's own end-of-input watermark only fires the final flush timer.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.drift_outputs import DriftCollector, DriftSummary
from pipelines.drift_reference import drift_settings
from pipelines.flink.env import flink_environment
from pipelines.flink.files import CHECKPOINT_INTERVAL_MS, local_file_job_config, run_to_files, tagged_line_sink, text_lines
from transforms.ingest import ingest, is_blank
from transforms.model import event_from_wire, event_to_wire
from transforms.settings import SyncSettings
from transforms.drift import (
    DriftSettings, drift_line, drift_step, flush, new_key_state, new_stamp_state, stamp_event, stats_line,
)

if TYPE_CHECKING:
    from pipelines.runners import RunRequest

END_OF_INPUT = 2**63 - 1  # Flink's final watermark (Long.MAX_VALUE) fires a timer registered here
PASS_THROUGH = ""  # key of lines that need no drift state (dead letters, the final stats)


def _functions():
    """The operator classes; defined lazily so importing this module does not start PyFlink."""
    from pyflink.common import Types
    from pyflink.datastream import FlatMapFunction, KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    class IngestLines(FlatMapFunction):
        """Numbers the lines of one file and parses each into (userId, event wire form) or a dead letter."""

        def __init__(self, settings: SyncSettings, origin: str) -> None:
            self.settings = settings
            self.origin = origin
            self.line = 0

        def flat_map(self, value: str):
            self.line += 1
            raw = value.encode("latin-1")  # ISO-8859-1 maps bytes 1:1: the line's original bytes
            if not is_blank(raw):
                key, parsed = ingest(raw, self.line, f"{self.origin}:{self.line}", int(time.time() * 1000),
                                     self.settings)
                yield key, parsed if isinstance(parsed, str) else event_to_wire(parsed)

    class StampWindows(KeyedProcessFunction):
        """One global instance (constant key): window assignment, watermark, lateness, window closes."""

        def __init__(self, settings: DriftSettings) -> None:
            self.settings = settings
            self.state: Any = None

        def open(self, runtime_context: RuntimeContext) -> None:
            self.state = runtime_context.get_state(ValueStateDescriptor("stamp", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value, ctx):
            _, payload = value
            if isinstance(payload, str):  # a dead-letter line
                yield PASS_THROUGH, payload
                return
            stamp = self.state.value()
            if stamp is None:
                stamp = new_stamp_state()
                ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            for message in stamp_event(stamp, event_from_wire(payload), self.settings):
                yield message[1], message
            self.state.update(stamp)

        def on_timer(self, timestamp: int, ctx):
            stamp = self.state.value()
            for message in flush(stamp, self.settings):
                yield message[1], message
            yield PASS_THROUGH, stats_line(stamp)
            self.state.clear()

    class DriftByKey(KeyedProcessFunction):
        """Per (category, attribute): open windows, history and reference in one ValueState."""

        def __init__(self, settings: DriftSettings) -> None:
            self.settings = settings
            self.state: Any = None

        def open(self, runtime_context: RuntimeContext) -> None:
            self.state = runtime_context.get_state(ValueStateDescriptor("key", Types.PICKLED_BYTE_ARRAY()))

        def process_element(self, value, ctx):
            _, payload = value
            if isinstance(payload, str):
                yield payload
                return
            state = self.state.value() or new_key_state()
            for record in drift_step(state, payload, self.settings):
                yield drift_line(record)
            self.state.update(state)

    return IngestLines, StampWindows, DriftByKey


def build_embedded_job(request: "RunRequest", parts: Path):
    from pyflink.common import Types, WatermarkStrategy

    IngestLines, StampWindows, DriftByKey = _functions()
    job = request.job
    drift = drift_settings(job)
    env = flink_environment({**local_file_job_config(parts), **job.flink}, parallelism=1)
    env.enable_checkpointing(CHECKPOINT_INTERVAL_MS)
    lines = text_lines(env, request.input_path, WatermarkStrategy.for_monotonous_timestamps())
    stamped = (
        lines.flat_map(IngestLines(job.settings.to_settings(), str(request.input_path)),
                       output_type=Types.PICKLED_BYTE_ARRAY()).set_parallelism(1).name("parse+validate")
        .key_by(lambda _: PASS_THROUGH, key_type=Types.STRING())
        .process(StampWindows(drift), output_type=Types.PICKLED_BYTE_ARRAY()).set_parallelism(1)
        .name("stamp windows")
    )
    outputs = (
        stamped.key_by(lambda message: message[0], key_type=Types.STRING())
        .process(DriftByKey(drift), output_type=Types.STRING()).set_parallelism(request.parallelism)
        .name("profile + score")
    )
    outputs.sink_to(tagged_line_sink(parts)).set_parallelism(request.parallelism).name("tagged outputs")
    return env


def run_embedded(request: "RunRequest") -> DriftSummary:
    return run_to_files(request, lambda parts: build_embedded_job(request, parts), DriftCollector())

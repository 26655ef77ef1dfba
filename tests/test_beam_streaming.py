"""Beam in streaming mode (TestStream on the DirectRunner): watermarks and late data change nothing.

The same events in the same order give the same ordering violations, conflicts and dedup results as the
reference runner: late elements (behind the watermark) are kept and flagged, not dropped; each user's
state carries over between watermark steps; dedup retention follows each user's event-time clock.
"""
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as ScriptedStream  # not a pytest class
from apache_beam.transforms.window import TimestampedValue

from ctxsync.config import resolve_job
from pipelines.beam.compat import beam_urns
from pipelines.beam.runner import build_streaming
from pipelines.file_outputs import OUTPUT_FILES, OutputCollector
from pipelines.reference import run_reference
from tests.helpers import ROOT, event, raw, read_jsonl
from transforms.timestamps import parse_iso_ms

pytestmark = pytest.mark.beam

BASE_S = parse_iso_ms("2026-11-17T10:00:00.000Z") / 1000
ORIGIN = "stream"
_LINES: dict[str, list[tuple[str, float]]] = {}  # run id -> (line, element time): the runner is in-process


def update(event_id: str, second: int, user: str, updates: dict, **extra) -> bytes:
    """A valid event; an update given as a plain value becomes {current: value, confidence: 0.8}."""
    updates = {a: u if isinstance(u, dict) else {"current": u, "confidence": 0.8} for a, u in updates.items()}
    return raw(event(eventId=event_id, timestamp=f"2026-11-17T10:{second // 60:02d}:{second % 60:02d}.000Z",
                     contextDelta__userId=user, contextDelta__updates=updates, **extra))


E1 = update("e1", 10, "u1", {"segment": "a"})
E2 = update("e2", 12, "u2", {"riskTolerance": "low"})
# Watermark steps (seconds after BASE_S) and the batches of lines that arrive between them.
SCRIPT: list[int | list[bytes]] = [
    0,
    [E1, E2, update("e3", 30, "u1", {"segment": "b", "timezone": "UTC"})],
    20,
    [update("e4", 5, "u1", {"segment": "c"}),  # late: behind the watermark and behind u1's clock
     E1,  # re-delivered after its first delivery was released: a duplicate
     b'{"eventId": "broken"',
     update("e5", 40, "u2", {"riskTolerance": "high"}, contextDelta__expectedVersion=0),  # version is 1
     update("e6", 41, "u2", {"riskTolerance": {"current": "mid", "previous": "low", "confidence": 0.9}})],
    50,
    [update("e7", 200, "u1", {"timezone": "CET"}),  # u1's clock passes e1 + the 60 s retention...
     E1,  # ...so this re-delivery is accepted again (and is late)
     E2,  # u2's clock is at 41 s: still a duplicate
     update("e8", 45, "u2", {"riskTolerance": None}, eventType="context.deleted")],
    300,
    [update("e9", 20, "u1", {"segment": "d"})],  # late again, after a quiet step
]


def records() -> list[tuple[int, bytes]]:
    """(seq, raw) in arrival order, as a partitioned source would number them."""
    lines = [line for step in SCRIPT if isinstance(step, list) for line in step]
    return list(enumerate(lines, 1))


def event_time(line: bytes) -> float:
    try:
        return parse_iso_ms(json.loads(line)["timestamp"]) / 1000
    except ValueError:
        return BASE_S  # an unparsable line still needs an element time; it is dead-lettered anyway


def scripted_stream() -> ScriptedStream:
    stream, numbered = ScriptedStream(), iter(records())
    for step in SCRIPT:
        if isinstance(step, int):
            stream = stream.advance_watermark_to(BASE_S + step)
        else:
            batch = [next(numbered) for _ in step]
            stream = stream.add_elements([TimestampedValue(record, event_time(record[1])) for record in batch])
    return stream.advance_watermark_to_infinity()


class Collect(beam.DoFn):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def process(self, line: str, timestamp=beam.DoFn.TimestampParam):
        _LINES[self.run_id].append((line, float(timestamp)))
        return ()


def run_streaming(settings, run_id: str) -> list[tuple[str, float]]:
    _LINES[run_id] = []
    options = PipelineOptions(flags=[])
    options.view_as(StandardOptions).streaming = True
    with beam_urns(), beam.Pipeline(options=options) as pipeline:
        lines = build_streaming(pipeline | scripted_stream(), ORIGIN, settings)
        lines | beam.ParDo(Collect(run_id))
    return _LINES.pop(run_id)


def write(lines, out: Path):
    collector = OutputCollector()
    collector.add_all(lines)
    return collector.write(out)


@pytest.mark.parametrize("policy", ["last-writer-wins", "reject"])
def test_streaming_beam_equals_reference_with_late_data_and_watermarks(tmp_path, policy):
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [f"conflict_policy={policy}", "dedup_retention=60s"])
    settings = job.settings.to_settings()
    released = run_streaming(settings, policy)
    beam_summary = write([line for line, _ in released], tmp_path / "beam")
    ref_summary = write(run_reference(records(), ORIGIN, settings), tmp_path / "ref")
    for name in OUTPUT_FILES:
        assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name

    assert beam_summary == ref_summary
    assert (beam_summary.read, beam_summary.dead_lettered, beam_summary.duplicates) == (13, 1, 2)
    violations = read_jsonl(tmp_path / "beam" / "violations.jsonl")
    ordering = [(v["eventId"], v["lagMs"]) for v in violations if v["kind"] == "ordering"]
    assert ordering == [("e4", 25_000), ("e1", 20_000), ("e9", 10_000)]  # per aggregate
    conflicts = [v["eventId"] for v in violations if v["kind"] == "conflict"]
    assert conflicts == (["e5", "e6"] if policy == "last-writer-wins" else ["e5"])  # reject keeps "low"
    history = [h["eventId"] for h in read_jsonl(tmp_path / "beam" / "history.jsonl")]
    assert history == ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e1", "e8", "e9"]
    # u1's events left in one release per watermark step, each stamped with its earliest buffered event
    # time, so u1's dedup and aggregate state really carried over between timer firings.
    u1 = sorted((int(line[1:line.index("\t")]), t - BASE_S) for line, t in released
                if line[0] == "H" and '"userId":"u1"' in line)
    assert [stamp for _, stamp in u1] == [10, 10, 5, 10, 10, 20]  # e1 e3 | e4 | e7 e1 | e9

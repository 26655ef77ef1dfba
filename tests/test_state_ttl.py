"""State TTL (settings.state_ttl, transforms/state_ttl.py): a user idle longer than the TTL in their own event
time starts afresh, each engine reclaims users two TTLs idle, and the outputs are the same on every runner.
"""
from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import apache_beam as beam
import pytest

from ctxsync.config import ConfigError, resolve_job
from pipelines.file_outputs import OutputCollector
from pipelines.reference import run_reference
from tests.helpers import NOW_MS, ROOT, SETTINGS, event, raw, read_jsonl
from tests.runs import run_with
from tests.test_parity import RUNTIMES, run_and_compare
from transforms.batching import Batching, bucket_of, frame
from transforms.records import TOMBSTONE, VIEW, untag
from transforms.state_ttl import Sweeper, expired
from transforms.sync import sync_step
from transforms.timestamps import format_iso_ms, parse_iso_ms
from transforms.validate import parse_event

HOUR = 3_600_000
TTL = replace(SETTINGS, state_ttl_ms=HOUR)
BASE = parse_iso_ms("2026-11-17T10:00:00.000Z")


def at(offset_ms: int, event_id: str, user: str = "u1", **changes: Any) -> bytes:
    return raw(event(eventId=event_id, timestamp=format_iso_ms(BASE + offset_ms), contextDelta__userId=user,
                     **changes))


def run(lines: list[bytes], settings=TTL, states: dict | None = None) -> list[str]:
    return list(run_reference(enumerate(lines, 1), "t", settings, NOW_MS, states))


def views_of(lines: list[str]) -> list[tuple[str, str, int | None]]:
    """(kind, key, version) of the view and tombstone lines, in order."""
    out = []
    for line in lines:
        kind, _, _, text = untag(line)
        if kind in (VIEW, TOMBSTONE):
            record = json.loads(text)
            out.append((kind, record["key"], record.get("version")))
    return out


# ---- the rule: per user, on the user's own clock ----

def test_idle_longer_than_the_ttl_is_expired_and_exactly_the_ttl_is_not():
    state, _ = sync_step(None, parse_event(at(0, "e1"), 1, "t", NOW_MS, TTL), TTL)
    assert not expired(state, BASE + HOUR, HOUR)
    assert expired(state, BASE + HOUR + 1, HOUR)
    assert not expired(state, BASE - 5 * HOUR, HOUR)  # a late event never expires its user


def test_a_returning_user_starts_afresh_after_a_tombstone_of_each_fresh_view():
    lines = run([at(0, "e1"), at(HOUR, "e2"), at(2 * HOUR + 1, "e3")])
    key = "behavioral:u1"
    assert views_of(lines) == [("T", key, None), ("V", key, 1), ("V", key, 2),  # exactly one TTL idle: kept
                               ("T", key, None), ("V", key, 1)]  # one ms more: version restarts at 1


def test_an_event_id_sent_again_after_expiry_is_not_a_duplicate():
    within = run([at(0, "e1"), at(HOUR, "e1")])
    after = run([at(0, "e1"), at(HOUR + 1, "e1")])
    assert [line[0] for line in within] == ["T", "V", "H", "U"]
    assert [line[0] for line in after] == ["T", "V", "H", "T", "V", "H"]


def test_expected_version_counts_from_the_fresh_start():
    lines = run([at(0, "e1"), at(10, "e2"), at(2 * HOUR, "e3", contextDelta__expectedVersion=0)])
    assert not [line for line in lines if line[0] == "C"]  # version 2 was forgotten: 0 is right


def test_without_a_ttl_nothing_changes():
    lines = run([at(0, "e1"), at(20 * HOUR, "e1"), at(22 * HOUR, "e2")], SETTINGS)
    assert [line[0] for line in lines] == ["V", "H", "U", "V", "H"]
    assert views_of(lines)[-1] == ("V", "behavioral:u1", 2)


def test_tombstones_never_hide_a_view_in_the_files(tmp_path):
    collector = OutputCollector()
    collector.add_all(run([at(0, "e1"), at(2 * HOUR, "e2"), at(2 * HOUR + 5, "e3", user="u2")]))
    summary = collector.write(tmp_path)
    views = read_jsonl(tmp_path / "views.jsonl")
    assert [(v["key"], v["version"]) for v in views] == [("behavioral:u1", 1), ("behavioral:u2", 1)]
    assert summary.views == 2


# ---- reclaiming memory: users two TTLs behind the operator's clock leave, without changing outputs ----

def test_sweeper_runs_each_part_every_quarter_ttl_with_a_two_ttl_horizon():
    sweeper = Sweeper(HOUR)
    sweeper.advance(BASE)
    assert sweeper.due(0) is None  # first sight of the part
    sweeper.advance(BASE + HOUR // 4 - 1)
    assert sweeper.due(0) is None and sweeper.due(1) is None
    sweeper.advance(BASE + HOUR // 4)
    assert sweeper.due(0) == BASE + HOUR // 4 - 2 * HOUR
    assert sweeper.due(0) is None and sweeper.due(1) is None  # part 1: first seen one ms ago
    sweeper.advance(BASE)  # the clock never goes back
    assert sweeper.clock == BASE + HOUR // 4


def test_reference_memory_stays_flat_on_ever_new_users():
    states: dict = {}
    sizes = []
    lines = [at(i * 60_000, f"e{i}", user=f"user-{i}") for i in range(600)]  # one new user a minute
    for n, _ in enumerate(run(lines, states=states)):
        if n % 3 == 2:  # after each event (T, V, H)
            sizes.append(len(states))
    assert max(sizes) <= 2.25 * 60 + 1  # users of the last 2.25 h at most
    assert sizes[-1] >= 2 * 60
    assert len(run(lines, SETTINGS, states := {})) and len(states) == 600


# The same scripted case on every engine: u1 at 10 s, then u2 (same Flink bucket) at 300 s, which puts the
# operator's clock 4 TTLs past u1, then a late u1 event at 50 s. The rule alone would apply it to u1's
# state (40 s after u1's clock, within the 60 s TTL); every engine has reclaimed u1 by then, so it starts
# u1 afresh: the one kind of event (more than a TTL behind the newest event time processed) whose outcome
# depends on reclaiming. Here the engines' progress is scripted, so all agree.
SHORT = replace(SETTINGS, state_ttl_ms=60_000)
U2 = next(f"u{i}" for i in range(2, 999) if bucket_of(f"u{i}", 32) == bucket_of("u1", 32))
SCRIPTED = [at(10_000, "e1"), at(300_000, "e2", user=U2), at(50_000, "e3")]
RECLAIMED = [("T", "behavioral:u1", None), ("V", "behavioral:u1", 1), ("T", f"behavioral:{U2}", None),
             ("V", f"behavioral:{U2}", 1), ("T", "behavioral:u1", None), ("V", "behavioral:u1", 1)]


def test_reference_reclaims_a_user_two_ttls_behind():
    assert views_of(run(SCRIPTED, SHORT)) == RECLAIMED


class _MapState(dict):
    def put(self, key, value):
        self[key] = value

    def remove(self, key):
        del self[key]


class _Group:
    def add_group(self, *_):
        return self

    def counter(self, *_):
        return self

    def inc(self, *_):
        pass


class _Context:
    def __init__(self):
        self.users = _MapState()

    def get_map_state(self, _):
        return self.users

    def get_metrics_group(self):
        return _Group()


def test_flink_operator_reclaims_its_bucket_between_batches():
    pytest.importorskip("pyflink")
    from pipelines.flink.sync import SyncFileBuckets

    operator, context = SyncFileBuckets(SHORT, Batching(buckets=32), "t"), _Context()  # U2 shares u1's bucket of 32
    operator.open(context)
    bucket, out = bucket_of("u1", 32), []
    for seq, line in enumerate(SCRIPTED, 1):  # one batch each
        batch = frame(line.decode("latin-1"), seq, 0)
        out += [line for text in operator.process_element((bucket, batch), None) for line in text.split("\n")]
        if seq == 2:
            assert set(context.users) == {U2} and "u1" not in operator.cache
    assert views_of(out) == RECLAIMED


class _Collect(beam.DoFn):
    lines: list[str] = []  # the DirectRunner runs in-process

    def process(self, line):
        self.lines.append(line)
        return ()


@pytest.mark.beam
def test_beam_streaming_reclaims_when_the_watermark_passes_two_ttls():
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream as ScriptedStream
    from apache_beam.transforms.window import TimestampedValue

    from pipelines.beam.compat import beam_urns
    from pipelines.beam.runner import build_streaming

    stream = ScriptedStream()
    for seq, line in enumerate(SCRIPTED, 1):
        stamp = parse_iso_ms(json.loads(line)["timestamp"]) / 1000
        stream = stream.add_elements([TimestampedValue((seq, line), stamp)])
        if seq < 3:  # u1's release at 20 s; at 400 s the watermark is more than two TTLs past u1's 10 s
            stream = stream.advance_watermark_to(BASE / 1000 + (20 if seq == 1 else 400))
    options = PipelineOptions(flags=[])
    options.view_as(StandardOptions).streaming = True
    with beam_urns(), beam.Pipeline(options=options) as pipeline:
        lines = build_streaming(pipeline | stream.advance_watermark_to_infinity(), "t", SHORT)
        lines | beam.ParDo(_Collect())
    assert sorted(views_of(_Collect.lines), key=str) == sorted(RECLAIMED, key=str)


# ---- parity: the same stream with a TTL gives the same five files on every runner ----

def ttl_stream(seed: int = 7, count: int = 400) -> bytes:
    """Users that come and go (idle spells past a 10 min TTL), ids sent again before and after expiry,
    expectedVersion, deletes, late events (never a TTL behind the stream: see SCRIPTED for those)."""
    rng, clock, lines, sent = random.Random(seed), BASE, [], []
    users = [f"u{i}" for i in range(30)]
    for n in range(count):
        clock += rng.randint(0, 40_000)
        user = rng.choice(users[: 5 + n // 20])  # new users keep arriving
        ts = clock - (rng.randint(1, 300_000) if rng.random() < 0.1 else 0)
        attrs = rng.sample(["segment", "riskTolerance", "timezone", "mood"], rng.randint(1, 2))
        deleted = rng.random() < 0.05
        doc = event(eventId=f"e{n}", timestamp=format_iso_ms(ts), contextDelta__userId=user,
                    eventType="context.deleted" if deleted else "context.updated",
                    contextDelta__updates={a: {"current": None if deleted else rng.choice(["a", "b", 1]),
                                               "confidence": 0.5} for a in attrs})
        if rng.random() < 0.1 and sent:  # an id this user sent before, at a new time
            doc["eventId"] = rng.choice([i for u, i in sent if u == user] or ["e0"])
        if rng.random() < 0.1:
            doc["contextDelta"]["updates"] = {attrs[0]: doc["contextDelta"]["updates"][attrs[0]]}
            doc["contextDelta"]["expectedVersion"] = rng.randint(0, 2)
        line = raw(doc)
        lines.append(line)
        sent.append((user, doc["eventId"]))
        if rng.random() < 0.05:  # a redelivery right away
            lines.append(line)
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ttl_stream_gives_the_same_files_on_every_runner(runtime, tmp_path):
    path = tmp_path / "stream.jsonl"
    path.write_bytes(ttl_stream())
    summary = run_and_compare(runtime, path, tmp_path, ["state_ttl=10m", "dedup_retention=2h"])
    assert summary.duplicates and summary.conflicts
    without = run_with("reference", path, tmp_path / "no-ttl", ["dedup_retention=2h"])
    assert summary.duplicates < without.duplicates  # ids sent again after an expiry are new again
    versions = {v["key"]: v["version"] for v in read_jsonl(tmp_path / "reference" / "views.jsonl")}
    old = {v["key"]: v["version"] for v in read_jsonl(tmp_path / "no-ttl" / "views.jsonl")}
    assert any(versions[k] < old[k] for k in old.keys() & versions.keys())  # fresh starts


# ---- configuration ----

def test_state_ttl_is_a_duration_or_null():
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", ["state_ttl=30d"])
    assert job.settings.to_settings().state_ttl_ms == 30 * 24 * HOUR
    assert resolve_job(ROOT / "jobs.yaml", "context-sync", []).settings.to_settings().state_ttl_ms is None
    for bad, message in (("0", "longer than 0"), ("true", "expected a duration"), ("1.5", "expected a duration")):
        with pytest.raises(ConfigError, match=message):
            resolve_job(ROOT / "jobs.yaml", "context-sync", [f"state_ttl={bad}"])

"""Point-in-time views (ctxsync.consistency.as_of) checked against the reference runner at chosen cut
points: event time (ties at the cut, late events counted at their own time) and write time (--seen-by)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.consistency.as_of import views_as_of
from ctxsync.io.history_topic import read_history
from tests.fixtures_servers import servers, unique  # noqa: F401
from tests.helpers import SETTINGS, event, read_jsonl, reference_files
from tests.published import events_file, published
from transforms.timestamps import parse_iso_ms

T0 = "2026-11-17T10:00:0"


def segment(event_id: str, second: int, value: str, user: str = "u1", attr: str = "segment") -> dict:
    doc = event(eventId=event_id, timestamp=f"{T0}{second}.000Z", contextDelta__userId=user)
    doc["contextDelta"]["updates"] = {attr: {"current": value, "confidence": 0.5}}
    return doc


# arrival order: a tie at 10:00:00 (e-c wins over e-a and the later-arriving e-b: larger eventId), then a
# late event at 10:00:02 arriving after 10:00:05 (stale for the job, but true at 10:00:02 in event time)
STREAM = [segment("e-a", 0, "A"), segment("e-c", 0, "C"), segment("e-b", 0, "B"), segment("e-d", 5, "D"),
          segment("e-late", 2, "L"), segment("e-tz", 6, "Europe/Paris", attr="timezone"),
          segment("e-u2", 1, "other", user="u2")]


def write(path: Path, docs: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def history_of(source: Path, out: Path, settings=SETTINGS) -> list[tuple[str, bytes, int]]:
    """(origin, record, written_ms) of the reference run's history; written_ms = its position."""
    reference_files(source, out, settings)
    lines = (out / "history.jsonl").read_bytes().splitlines()
    return [(f"h/0/{n}", raw, n) for n, raw in enumerate(lines)]


def event_time_oracle(history: list[tuple[str, bytes, int]], at_ms: int, tmp: Path) -> list[dict]:
    """The reference runner over the accepted events up to `at_ms`, in (timestamp, eventId) order."""
    docs = [orjson.loads(raw) for _, raw, _ in history]
    chosen = sorted((d for d in docs if parse_iso_ms(d["timestamp"]) <= at_ms),
                    key=lambda d: (parse_iso_ms(d["timestamp"]), d["eventId"]))
    reference_files(write(tmp / "prefix.jsonl", chosen), tmp / "prefix")
    return read_jsonl(tmp / "prefix" / "views.jsonl")


def segment_at(history, at: str, user: str = "u1"):
    views = views_as_of(history, SETTINGS, parse_iso_ms(at), user, category="behavioral")
    return views[0]["attributes"]["segment"]["value"] if views else None


def test_ties_and_late_events_at_chosen_cut_points(tmp_path):
    history = history_of(write(tmp_path / "events.jsonl", STREAM), tmp_path / "out")
    live = {v["key"]: v for v in read_jsonl(tmp_path / "out" / "views.jsonl")}
    assert live["behavioral:u1"]["attributes"]["segment"]["value"] == "D"  # the late event was stale
    assert segment_at(history, "2026-11-17T09:59:59.999Z") is None           # nothing before the first event
    assert segment_at(history, f"{T0}0.000Z") == "C"                         # a tie at the cut: all count, e-c wins
    assert segment_at(history, f"{T0}1.999Z") == "C"
    assert segment_at(history, f"{T0}2.000Z") == "L"                         # the late event, at its own time
    assert segment_at(history, f"{T0}4.999Z") == "L"
    assert segment_at(history, f"{T0}5.000Z") == "D"
    assert views_as_of(history, SETTINGS, parse_iso_ms(f"{T0}5.000Z"), "u1", category="temporal") == []
    for second in (0, 2, 5, 6):
        at = parse_iso_ms(f"{T0}{second}.000Z")
        assert views_as_of(history, SETTINGS, at) == event_time_oracle(history, at, tmp_path)


def test_a_generated_stream_equals_the_reference_at_every_cut_point(tmp_path):
    source = events_file(tmp_path / "events.jsonl", events=500, users=6, seed=21)
    history = history_of(source, tmp_path / "out")
    stamps = sorted({parse_iso_ms(orjson.loads(raw)["timestamp"]) for _, raw, _ in history})
    cuts = [stamps[0] - 1, stamps[0], *stamps[len(stamps) // 5::len(stamps) // 5], stamps[-1]]
    for at in cuts:
        want = event_time_oracle(history, at, tmp_path)
        assert views_as_of(history, SETTINGS, at) == want
        assert views_as_of(history, SETTINGS, at, "user-00002", "financial") == \
            [v for v in want if v["key"] == "financial:user-00002"]


def test_updates_a_reject_policy_refused_never_appear(tmp_path):
    settings = replace(SETTINGS, conflict_policy="reject")
    refused = segment("e-x", 3, "X")
    refused["contextDelta"]["expectedVersion"] = 7  # the aggregate is at version 1 or 2: a conflict
    history = history_of(write(tmp_path / "events.jsonl", STREAM[:4] + [refused]), tmp_path / "out", settings)
    views = views_as_of(history, settings, parse_iso_ms(f"{T0}4.000Z"), "u1")
    assert views[0]["attributes"]["segment"]["value"] == "C"


@pytest.mark.servers
def test_seen_by_is_what_the_job_had_written_by_then(servers, unique, tmp_path, monkeypatch, capsys):
    """Write time: at line k's write time, a model could read exactly the reference run of the first k
    lines (whatever their event times), restricted to the views aimed at it."""
    pub = published(f"ao{unique}", servers, tmp_path, monkeypatch)
    source = events_file(tmp_path / "events.jsonl", events=300, users=6, seed=8)
    base = 1_700_000_000_000  # past: Kafka 4 refuses records stamped > 1 h ahead (ctxsync/kafka_broker.py)
    pub.publish(source, stamp=lambda line: base + line * 1000)
    history = list(read_history(pub.config, pub.spec.history_topic))
    lines = source.read_bytes().splitlines(keepends=True)
    for k in (1, 57, 150, 300):
        reference_files(write_lines(tmp_path / f"first{k}.jsonl", lines[:k]), tmp_path / f"first{k}")
        want = [v for v in read_jsonl(tmp_path / f"first{k}" / "views.jsonl") if "churn-predictor" in v["targetModels"]]
        assert views_as_of(history, SETTINGS, base + k * 1000, seen_by="churn-predictor") == want
    user = want[0]["userId"]
    at = "2023-11-15T00:00:00Z"  # after every write (base is 2023-11-14T22:13:20Z)
    assert main(["as-of", "--user", user, "--at", at, "--seen-by", "churn-predictor", "--json",
                 "--jobs", str(pub.jobs)]) == 0
    assert [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] == \
        [v for v in want if v["userId"] == user]
    assert main(["as-of", "--user", user, "--at", "2020-01-01T00:00:00Z", "--jobs", str(pub.jobs)]) == 1
    assert "no views for user" in capsys.readouterr().out


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path

"""context-drift on the reference runner: windowing, lateness, planted drift, stable streams, baseline."""
from __future__ import annotations

import json

from tests.fixtures_drift import (  # noqa: F401 (fixtures)
    DRIFT_AT, drift_streams, drifted_run, read_records, run_drift, stable_run,
)
from transforms.drift import (
    DriftSettings, Row, drift_step, flush, new_key_state, new_stamp_state, stamp_step,
)

MIN = 60_000
S = DriftSettings(window_ms=10 * MIN, out_of_orderness_ms=2 * MIN, min_count=1)


def _row(value, attribute="segment", confidence=0.8):
    return Row("behavioral", attribute, value, confidence, "m1")


def test_windows_close_when_the_watermark_passes_and_late_rows_are_counted():
    st = new_stamp_state()
    assert stamp_step(st, 1 * MIN, [_row("a")], S) == [("R", "behavioral/segment", 0, _row("a"))]
    assert stamp_step(st, 11 * MIN, [_row("b")], S) == [("R", "behavioral/segment", 10 * MIN, _row("b"))]
    # watermark 12 - 2 = 10 min: window [0, 10) closes
    out = stamp_step(st, 12 * MIN, [_row("c", "timezone")], S)
    assert out == [("R", "behavioral/timezone", 10 * MIN, _row("c", "timezone")), ("C", "behavioral/segment", 0)]
    # an event for the closed window is late (counted, not dropped silently)
    assert stamp_step(st, 9 * MIN, [_row("d")], S) == [("L", "behavioral/segment")]
    assert st["late"] == 1 and st["events"] == 4
    assert flush(st, S) == [("C", "behavioral/segment", 10 * MIN), ("C", "behavioral/timezone", 10 * MIN)]


def test_a_window_record_carries_counts_top_k_numbers_and_late_rows():
    state = new_key_state()
    key = "behavioral/segment"
    for value in ("a", "a", "b", None):
        drift_step(state, ("R", key, 0, _row(value)), S)
    drift_step(state, ("L", key), S)
    [record] = drift_step(state, ("C", key, 0), S)
    assert record["count"] == 4 and record["nulls"] == 1 and record["nullRate"] == 0.25
    assert record["late"] == 1 and record["categorical"] == {"top": [["a", 2], ["b", 1]], "other": 0, "distinct": 2}
    assert record["reference"] is None and record["alerts"] == []
    for value in (1, 2, 3):
        drift_step(state, ("R", key, 10 * MIN, _row(value, confidence=0.5)), S)
    [record] = drift_step(state, ("C", key, 10 * MIN), S)
    assert record["numeric"] == {"count": 3, "mean": 2.0, "std": 1.0, "min": 1, "max": 3, "quantiles": [1, 2, 2, 3]}
    assert record["meanConfidence"] == 0.5 and record["byModel"] == {"m1": {"count": 3, "meanConfidence": 0.5}}


def test_planted_drift_is_detected_in_the_window_where_it_starts_and_not_before(drifted_run):
    summary = json.loads((drifted_run / "summary.json").read_text())
    assert summary["read"] == summary["accepted"] + summary["dead_lettered"] and summary["late_rows"] > 0
    records = read_records(drifted_run)
    alerts = {(r["windowStart"], r["attribute"]): r["alerts"] for r in records if r["alerts"]}
    assert not [k for k in alerts if k[0] < DRIFT_AT], alerts
    assert {"psi", "js"} <= set(alerts[(DRIFT_AT, "segment")])
    assert "psi" in alerts[(DRIFT_AT, "creditScore")] and "spcValue" in alerts[(DRIFT_AT, "creditScore")]


def test_a_stable_stream_raises_no_alert(stable_run):
    records = read_records(stable_run)
    scored = [r for r in records if r["scores"]["psi"] is not None]
    assert len(scored) > 50  # the windows were really scored, not skipped
    assert [(r["windowStart"], r["attribute"], r["scores"]) for r in records if r["alerts"]] == []


def test_a_pinned_baseline_is_the_reference(drift_streams, stable_run, tmp_path):
    run_drift("reference", drift_streams["drifted"], tmp_path / "run",
              ["drift.reference=baseline", f"drift.baseline={stable_run / 'drift.jsonl'}"])
    records = read_records(tmp_path / "run")
    assert {r["reference"] for r in records} <= {"baseline", None}  # None: no baseline window was big enough
    assert {r["reference"] for r in records if r["attribute"] in ("segment", "creditScore")} == {"baseline"}
    segment = {r["windowStart"]: r for r in records if r["attribute"] == "segment"}
    after = [r for start, r in segment.items() if start >= DRIFT_AT and r["count"] >= 200]
    assert after and all("psi" in r["alerts"] for r in after)  # against a baseline the drift persists
    assert not [s for s, r in segment.items() if s < DRIFT_AT and r["alerts"]]


def test_output_is_sorted_and_deterministic(drift_streams, drifted_run, tmp_path):
    run_drift("reference", drift_streams["drifted"], tmp_path)
    assert (tmp_path / "drift.jsonl").read_bytes() == (drifted_run / "drift.jsonl").read_bytes()
    keys = [(r["windowStart"], r["category"], r["attribute"]) for r in read_records(drifted_run)]
    assert keys == sorted(keys)
    dead = [json.loads(line) for line in (drifted_run / "dead_letter.jsonl").read_text().splitlines()]
    assert dead and all(d["reason"] and d["origin"] for d in dead)


def test_generate_drift_option_changes_only_the_attribute_after_t(tmp_path):
    from ctxsync.cli import main
    from ctxsync.generate import parse_drift
    from transforms.timestamps import parse_iso_ms

    assert parse_drift("segment@+90m") == ("segment", parse_iso_ms("2026-11-24T09:30:00Z"))
    assert parse_drift("creditScore@2026-11-24T10:00:00+01:00") == ("creditScore", parse_iso_ms("2026-11-24T09:00:00Z"))
    assert main(["generate", "--events", "5", "--drift", "nope@+1h", str(tmp_path / "x.jsonl")]) == 2
    assert main(["generate", "--events", "5", "--drift", "segment@later", str(tmp_path / "x.jsonl")]) == 2
    plain, drifted = tmp_path / "plain.jsonl", tmp_path / "drifted.jsonl"
    assert main(["generate", "--events", "3000", "--invalid-rate", "0", str(plain)]) == 0
    assert main(["generate", "--events", "3000", "--invalid-rate", "0", "--drift", "segment@+10m", str(drifted)]) == 0
    t = parse_iso_ms("2026-11-24T08:10:00Z")
    plain_lines, drifted_lines = plain.read_text().splitlines(), drifted.read_text().splitlines()
    docs = [json.loads(line) for line in drifted_lines]
    start = next(i for i, doc in enumerate(docs) if parse_iso_ms(doc["timestamp"]) >= t)
    assert start > 1000 and plain_lines[:start] == drifted_lines[:start]  # identical until T
    segments = [doc["contextDelta"]["updates"]["segment"]["current"] for doc in docs[start:]
                if "segment" in doc["contextDelta"]["updates"] and doc["eventType"] == "context.updated"
                and parse_iso_ms(doc["timestamp"]) >= t]
    assert segments.count("dormant") / len(segments) > 0.5  # the shifted distribution: 60% + 40%/6

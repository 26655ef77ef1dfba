"""`ctxsync validate` (GE as a batch, HTML report) and expectations enforced in the context-sync stream."""
from __future__ import annotations

import json

import pytest

from ctxsync.cli import main
from ctxsync.generate import GeneratorOptions, generate_lines
from tests.helpers import SAMPLE
from tests.runs import assert_same_files, run_with


def test_validate_writes_a_report_of_the_failing_expectations(tmp_path, capsys):
    report = tmp_path / "out" / "validation.html"
    assert main(["validate", str(SAMPLE), "--report", str(report)]) == 0
    text = report.read_text()
    assert "compiled fast path agrees with GE on every row: <b class=\"ok\">yes</b>" in text
    assert "expect_column_values_to_be_between:confidence" in text
    assert f"{SAMPLE}:" in text  # failing rows are traced back to file:line
    out = capsys.readouterr().out
    assert "expect_column_values_to_be_in_set:eventType" in out
    assert main(["validate", str(SAMPLE), "--report", str(report), "--strict"]) == 1


def test_validate_of_clean_events_passes_strict(tmp_path):
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(line + b"\n" for line in generate_lines(GeneratorOptions(events=400, invalid_rate=0))))
    assert main(["validate", str(clean), "--report", str(tmp_path / "v.html"), "--strict"]) == 0


def test_validate_usage_errors_exit_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.jsonl"), "--report", str(tmp_path / "r.html")]) == 2
    assert main(["validate", str(SAMPLE), "--suite", "nope", "--report", str(tmp_path / "r.html")]) == 2
    assert "suites: context_events" in capsys.readouterr().err


def _events() -> list[dict]:
    """A valid creditScore update, then one out of range, then a segment outside its value set."""
    base = {"timestamp": "2026-11-24T10:00:00.000Z", "eventType": "context.updated",
            "source": {"modelId": "risk-model", "instanceId": "r-0"}}
    return [
        dict(base, eventId="ok", contextDelta={"userId": "u1", "updates": {"creditScore": {"current": 700, "confidence": 0.9}}}),
        dict(base, eventId="bad", contextDelta={"userId": "u1", "updates": {"creditScore": {"current": 9000, "confidence": 0.9}}}),
        dict(base, eventId="odd", contextDelta={"userId": "u2", "updates": {"segment": {"current": "vip", "confidence": 0.9}}}),
    ]


def test_stream_dead_letters_expectation_failures_by_name(tmp_path):
    stream = tmp_path / "events.jsonl"
    events = _events()
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    off = run_with("reference", stream, tmp_path / "off")
    assert (off.accepted, off.dead_lettered) == (3, 0)  # default: contract v1 outputs unchanged
    on = run_with("reference", stream, tmp_path / "on", ["expectations=context_events"])
    assert (on.read, on.accepted, on.dead_lettered) == (3, 1, 2)
    dead = [json.loads(line) for line in (tmp_path / "on" / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["origin"].rsplit(":", 1)[1], d["stage"]) for d in dead] == [
        ("expect_column_values_to_be_between:value.creditScore", "2", "expectations"),
        ("expect_column_values_to_be_in_set:value.segment", "3", "expectations"),
    ]
    assert "max_value=850" in dead[0]["detail"] and json.loads(dead[0]["raw"])["eventId"] == "bad"


@pytest.mark.flink
def test_expectations_in_the_flink_stream_equal_the_reference(tmp_path):
    """The compiled suite travels to Flink's workers inside the settings; outputs match the reference."""
    stream = tmp_path / "events.jsonl"
    planted = [json.dumps(e) for e in _events()]
    stream.write_text("\n".join(SAMPLE.read_text(encoding="latin-1").splitlines()[:500] + planted) + "\n",
                      encoding="latin-1")
    overrides = ["expectations=context_events"]
    reference = run_with("reference", stream, tmp_path / "ref", overrides)
    run_with("flink", stream, tmp_path / "flink", overrides)
    assert_same_files(tmp_path / "flink", tmp_path / "ref")
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "ref" / "dead_letter.jsonl").read_text().splitlines()]
    assert reasons[-2:] == ["expect_column_values_to_be_between:value.creditScore",
                            "expect_column_values_to_be_in_set:value.segment"]
    assert reference.accepted > 400

"""The PyFlink runner computes exactly what the plain-Python reference computes, at any parallelism."""
import json

import pytest

import pipelines.flink.sync as flink_sync
from ctxsync.generate import GeneratorOptions, generate_lines
from pipelines.flink.control import JobFailed
from pipelines.flink.sync import SyncFileBuckets
from tests.helpers import SAMPLE, event, raw, read_jsonl
from tests.runs import assert_same_files, run_with

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def sample_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    run_with("reference", SAMPLE, out)
    return out


@pytest.mark.parametrize("parallelism", [1, 2])
def test_sample_on_flink_equals_reference(sample_reference, tmp_path, parallelism):
    summary = run_with("flink", SAMPLE, tmp_path, parallelism=parallelism)
    assert_same_files(tmp_path, sample_reference)
    assert summary.read == summary.accepted + summary.duplicates + summary.dead_lettered == 3000
    assert not (tmp_path / "_parts").exists()


def test_generated_stream_with_reject_policy_equals_reference_at_parallelism_2(tmp_path):
    stream = tmp_path / "gen.jsonl"
    options = GeneratorOptions(events=4000, users=300, seed=99, conflict_rate=0.1, late_rate=0.1)
    stream.write_bytes(b"\n".join(generate_lines(options)) + b"\n")
    overrides = ["conflict_policy=reject", "dedup_retention=10m"]
    run_with("reference", stream, tmp_path / "ref", overrides)
    summary = run_with("flink", stream, tmp_path / "flink", overrides, parallelism=2)
    assert_same_files(tmp_path / "flink", tmp_path / "ref")
    assert summary.conflicts > 0 and summary.ordering_violations > 0 and summary.duplicates > 0


def test_bad_lines_are_dead_lettered_and_the_job_keeps_going(tmp_path):
    good = [raw(event(eventId=f"ok-{i}", timestamp=f"2026-11-17T10:00:0{i}Z")) for i in range(4)]
    huge = raw(event(eventId="huge", contextDelta__updates__segment__current="x" * 1_048_576))
    lines = [good[0], b'{"eventId": "broken", ', good[1], b'{"x": "\xff\xfe"}', b"", b"   ",
             b'{"eventId": "nan", "confidence": NaN}', huge, good[2] + b"\r", good[3]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = run_with("flink", path, tmp_path / "flink", parallelism=2)
    run_with("reference", path, tmp_path / "ref")
    assert_same_files(tmp_path / "flink", tmp_path / "ref")
    assert (summary.read, summary.accepted, summary.dead_lettered) == (8, 4, 4)
    dead = read_jsonl(tmp_path / "flink" / "dead_letter.jsonl")
    assert [(d["reason"], d["origin"].rsplit(":", 1)[1]) for d in dead] == [
        ("invalid_json", "2"), ("not_utf8", "4"), ("invalid_json", "7"), ("too_large", "8")]
    assert dead[1]["rawEncoding"] == "base64"
    assert json.loads(dead[3]["raw"])["eventId"] == "huge"
    assert [h["eventId"] for h in read_jsonl(tmp_path / "flink" / "history.jsonl")] == [
        "ok-0", "ok-1", "ok-2", "ok-3"]



def test_non_ascii_users_and_values_survive_every_stage(tmp_path):
    docs = [event(eventId="é-1", contextDelta__userId="José 🚀", contextDelta__updates={
                "segment": {"current": "naïve – ünïcödé", "confidence": 0.5}}),
            event(eventId="é-2", timestamp="2026-11-17T09:00:00Z", contextDelta__userId="José 🚀",
                  contextDelta__updates={"lastAction": {"current": "日本語", "confidence": 0.5}})]
    path = tmp_path / "utf8.jsonl"
    path.write_bytes(b"\n".join(json.dumps(d, ensure_ascii=False).encode() for d in docs) + b"\n")
    run_with("reference", path, tmp_path / "ref")
    run_with("flink", path, tmp_path / "flink", parallelism=2)
    assert_same_files(tmp_path / "flink", tmp_path / "ref")
    (view,) = read_jsonl(tmp_path / "flink" / "views.jsonl")
    assert view["key"] == "behavioral:José 🚀"
    assert view["attributes"]["segment"]["value"] == "naïve – ünïcödé"
    assert view["attributes"]["lastAction"]["value"] == "日本語"


class BrokenSync(SyncFileBuckets):
    """An operator with a bug; the Flink worker imports it from this module by reference."""

    def process_element(self, value, ctx):
        raise ZeroDivisionError("operator bug for the test")


def test_a_failing_python_function_reports_its_python_error(tmp_path, monkeypatch):
    """An operator bug (not bad input) fails the job with the Python error and where it was raised."""
    monkeypatch.setattr(flink_sync, "SyncFileBuckets", BrokenSync)
    path = tmp_path / "one.jsonl"
    path.write_bytes(raw(event()) + b"\n")
    with pytest.raises(JobFailed) as info:
        run_with("flink", path, tmp_path / "out")
    message = str(info.value)
    assert "ZeroDivisionError" in message and "operator bug for the test" in message
    assert "test_flink_runner.py" in message

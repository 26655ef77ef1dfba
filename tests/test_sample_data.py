"""sample_data/ holds every anomaly of the contract, and its summary.json is what the job computes."""
import base64
import collections
import json

from tests.helpers import ROOT, SAMPLE, read_jsonl
from tests.runs import run_with


def test_summary_json_is_what_the_job_computes(tmp_path):
    summary = run_with("reference", SAMPLE, tmp_path)
    expected = json.loads((ROOT / "sample_data" / "summary.json").read_text())
    assert summary.as_dict() == expected
    assert json.loads((tmp_path / "summary.json").read_text()) == expected


def test_sample_covers_every_anomaly_kind(tmp_path):
    summary = run_with("reference", SAMPLE, tmp_path)
    lines = [l for l in SAMPLE.read_bytes().splitlines() if l.strip()]
    assert 2000 <= summary.read == len(lines) <= 5000
    assert summary.duplicates > 0 and summary.ordering_violations > 0 and summary.stale_updates > 0
    dead = read_jsonl(tmp_path / "dead_letter.jsonl")
    reasons = collections.Counter(d["reason"] for d in dead)
    assert set(reasons) >= {"invalid_json", "not_utf8", "not_object", "missing_field", "invalid_field",
                            "future_timestamp", "delete_with_value", "multi_category_expected_version"}
    not_utf8 = sum(1 for l in lines if not _is_utf8(l))
    assert reasons["not_utf8"] == not_utf8
    for d in dead:
        original = base64.b64decode(d["raw"]) if d["rawEncoding"] == "base64" else d["raw"].encode()
        assert original == lines[int(d["origin"].rsplit(":", 1)[1]) - 1]
    violations = read_jsonl(tmp_path / "violations.jsonl")
    assert any("expectedVersion" in v for v in violations) and any("mismatches" in v for v in violations)
    history = read_jsonl(tmp_path / "history.jsonl")
    assert any(h["eventType"] == "context.deleted" for h in history)
    assert any(len(h["aggregates"]) > 1 for h in history)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False

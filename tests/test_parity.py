"""Parity harness: one test body, several runtimes (bytewax-style). Every runtime must write the same five
files as the plain-Python reference, byte for byte, on sample_data/ and on generated streams that hold
every anomaly kind, under both conflict policies.

Adding a runtime is one line in RUNTIMES. Engine runs cost seconds, so hypothesis draws few examples.
"""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipelines.file_outputs import OUTPUT_FILES, Summary
from tests.helpers import SAMPLE
from tests.runs import run_with
from transforms.timestamps import parse_iso_ms

RUNTIMES = [
    pytest.param("reference"),
    pytest.param("beam", marks=pytest.mark.beam),
    pytest.param("flink", marks=pytest.mark.flink),
]
POLICIES = [pytest.param([], id="last-writer-wins"), pytest.param(["conflict_policy=reject"], id="reject")]


def assert_identical(out: Path, oracle: Path) -> None:
    for name in OUTPUT_FILES:
        got, want = (out / name).read_bytes(), (oracle / name).read_bytes()
        assert got == want, f"{name} differs from the reference:\n{_first_difference(got, want)}"


def _first_difference(got: bytes, want: bytes) -> str:
    for n, (a, b) in enumerate(zip(got.splitlines(), want.splitlines()), 1):
        if a != b:
            return f"line {n}:\n  runtime:   {a[:300]!r}\n  reference: {b[:300]!r}"
    return f"line counts differ: {len(got.splitlines())} vs {len(want.splitlines())}"


def run_and_compare(runtime: str, stream: Path, work: Path, overrides: list[str]) -> Summary:
    """Run the reference and `runtime` on the same file; assert identical outputs; return the summary."""
    run_with("reference", stream, work / "reference", overrides)
    summary = run_with(runtime, stream, work / runtime / "out", overrides)
    assert_identical(work / runtime / "out", work / "reference")
    assert summary.read == summary.accepted + summary.duplicates + summary.dead_lettered
    return summary


@pytest.mark.parametrize("overrides", POLICIES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sample_data(runtime, overrides, tmp_path):
    summary = run_and_compare(runtime, SAMPLE, tmp_path, overrides)
    assert summary.read == 3000 and summary.duplicates and summary.ordering_violations and summary.conflicts


# ---- generated streams: every anomaly kind of the contract, in random order and number ----

USERS = ["u1", "u2", "u3"]
ATTRS = ["segment", "lastAction", "riskTolerance", "creditScore", "timezone", "mood"]  # 3 categories + general
VALUES = ["a", "b", "1", 1, 1.5, True, None]
KINDS = ("update", "late", "redelivery", "reused_id", "conflict_previous", "conflict_expected", "delete",
         "offset_timestamp", "unknown_fields", "invalid_json", "not_utf8", "not_object", "invalid_field",
         "multi_category_expected_version", "future_timestamp", "blank")
BASE_MS = parse_iso_ms("2026-11-17T10:00:00.000Z")


def iso(ms: int, offset_hours: int = 0) -> str:
    zone = timezone(timedelta(hours=offset_hours))
    text = datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_hours == 0 else text


@st.composite
def streams(draw) -> bytes:
    """A JSON Lines file: each kind at least once, then more of any kind; mixed line endings."""
    kinds = draw(st.permutations(KINDS)) + draw(st.lists(st.sampled_from(KINDS), max_size=30))
    kinds = draw(st.permutations(kinds))
    clock, count, sent, ids, written = BASE_MS, 0, [], [], []
    lines = []
    for kind in kinds:
        count += 1
        user = draw(st.sampled_from(USERS))
        attrs = draw(st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True))
        clock += draw(st.integers(0, 3_000))
        ts = clock
        if kind == "late" and written:  # older than an event already applied to the same aggregates
            user, attrs, before = draw(st.sampled_from(written))
            ts = before - draw(st.integers(1, 90_000))
        deleted = kind == "delete"
        updates = {a: {"current": None if deleted else draw(st.sampled_from(VALUES)),
                       "confidence": draw(st.sampled_from([0, 0.25, 0.9, 1]))} for a in attrs}
        doc = {
            "eventId": draw(st.sampled_from(ids)) if kind == "reused_id" and ids else f"e{count:03d}",
            "timestamp": iso(ts, 2 if kind == "offset_timestamp" else 0),
            "eventType": "context.deleted" if deleted else "context.updated",
            "source": {"modelId": draw(st.sampled_from(["m1", "m2"])), "instanceId": "i0"},
            "contextDelta": {"userId": user, "updates": updates},
            "propagationRules": {"targetModels": draw(st.lists(st.sampled_from(["m1", "m2", "m3"]), unique=True))},
        }
        delta = doc["contextDelta"]
        if kind == "conflict_previous":
            updates[attrs[0]]["previous"] = draw(st.sampled_from(VALUES))
        elif kind == "conflict_expected":
            delta["updates"] = {attrs[0]: updates[attrs[0]]}
            delta["expectedVersion"] = draw(st.integers(0, 3))
        elif kind == "unknown_fields":
            doc["x-trace"] = {"span": count}
        elif kind == "invalid_field":
            updates[attrs[0]]["confidence"] = draw(st.sampled_from([1.5, -1, "high", True]))
        elif kind == "multi_category_expected_version":
            delta["updates"] = {"segment": updates[attrs[0]], "riskTolerance": {"current": 1, "confidence": 1}}
            delta["expectedVersion"] = 0
        elif kind == "future_timestamp":
            doc["timestamp"] = "2099-01-01T00:00:00.000Z"
        line = json.dumps(doc, separators=(",", ":")).encode()
        if kind == "redelivery" and sent:
            line = draw(st.sampled_from(sent))
        elif kind == "invalid_json":
            line = line[: draw(st.integers(1, len(line) - 1))]
        elif kind == "not_utf8":
            line = line.replace(b'"updates"', b'"up\xff\xfedates"', 1)
        elif kind == "not_object":
            line = b"[" + line + b"]"
        elif kind == "blank":
            line = draw(st.sampled_from([b"", b"  ", b"\t"]))
        elif kind not in ("invalid_field", "multi_category_expected_version", "future_timestamp"):
            sent.append(line)
            ids.append(doc["eventId"])
            written.append((user, list(delta["updates"]), ts))
        lines.append(line + draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"])))
    return b"".join(lines)


@pytest.mark.parametrize("overrides", POLICIES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=streams(), retention=st.sampled_from(["24h", "20s"]))
def test_generated_streams(runtime, overrides, stream, retention):
    with tempfile.TemporaryDirectory(prefix="ctxsync-parity-") as work:
        path = Path(work) / "stream.jsonl"
        path.write_bytes(stream)
        summary = run_and_compare(runtime, path, Path(work), overrides + [f"dedup_retention={retention}"])
    assert summary.dead_lettered >= 6  # one line of each invalid kind at least

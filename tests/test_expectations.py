"""The GE suite is the source of truth: the compiled fast path must agree with real GE on every row."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import orjson
import pytest

from ctxsync.config import ConfigError, apply_overrides, resolve_job
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.quality import run_ge
from transforms.expectations import (
    check_expectations, compile_suite, failures, flatten, load_compiled, load_suite_dict,
)
from transforms.ingest import DEAD_LETTER_KEY, ingest
from transforms.model import Event
from transforms.records import untag
from transforms.settings import SyncSettings
from transforms.validate import parse_event

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_795_600_000_000  # 2026-11-25T08:26:40Z: after the generated stream, so only planted futures fail
SUITE = "context_events"

MUTATIONS = [  # (path, value) applied to a valid event: each should break the suite or the contract
    (("contextDelta", "updates", "segment"), {"current": "vip", "confidence": 0.9}),
    (("contextDelta", "updates", "segment"), {"current": 3, "confidence": 0.9}),
    (("contextDelta", "updates", "creditScore"), {"current": 900, "confidence": 0.9}),
    (("contextDelta", "updates", "creditScore"), {"current": "high", "confidence": 0.9}),
    (("contextDelta", "updates", "creditScore"), {"current": True, "confidence": 0.9}),
    (("contextDelta", "updates", "engagementScore"), {"current": 1.5, "confidence": 0.9}),
    (("contextDelta", "updates", "portfolioValue"), {"current": -10, "confidence": 0.9}),
    (("contextDelta", "updates", "sessionLength"), {"current": 100000, "confidence": 0.9}),
    (("contextDelta", "updates", "lastLogin"), {"current": "yesterday", "confidence": 0.9}),
    (("contextDelta", "updates", "lastLogin"), {"current": 17, "confidence": 0.9}),
    (("contextDelta", "updates", "timezone"), {"current": "Mars/Olympus", "confidence": 0.9}),
    (("contextDelta", "updates", "sentiment"), {"current": None, "confidence": 0.9}),
    (("contextDelta", "updates", "language"), {"current": "en", "confidence": 1.0001}),
    (("contextDelta", "updates", "language"), {"current": "en", "confidence": "high"}),
    (("contextDelta", "updates", "language"), {"current": "en"}),
    (("contextDelta", "updates"), {}),
    (("contextDelta", "updates"), "nope"),
    (("contextDelta", "userId"), None),
    (("eventType",), "context.patched"),
    (("eventType",), 7),
    (("timestamp",), "2099-01-01T00:00:00Z"),
    (("timestamp",), "yesterday"),
    (("propagationRules", "ttl"), 0),
    (("propagationRules", "ttl"), "1h"),
    (("propagationRules", "ttl"), False),
    (("propagationRules", "priority"), "urgent"),
    (("source",), None),
    (("eventId",), None),
]


def _mutate(doc: dict, path: tuple[str, ...], value: object) -> dict:
    """A copy of doc with path set to value (None on an id field removes it)."""
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is None and path[-1] in ("userId", "eventId", "source"):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


WEIRD = [None, True, False, 0, -0.0, 1, 1.0, 0.5, -1, 2**70, -2**70, 1e308, -1e-300, "", "1", "true", "null",
         "engaged", "EMAIL", "email ", "é", "2026-11-24T08:00:00Z", "2026-11-24T08:00:00.123+01:00", 300, 850,
         850.0001, 299.999, 86400, 86401, [], {}, [1], {"a": 1}, "context.updated", "low", 300.0, 1e-9]
ATTRIBUTES = ["segment", "preferredChannel", "lastAction", "riskTolerance", "timezone", "language", "sentiment",
              "engagementScore", "creditScore", "portfolioValue", "sessionLength", "lastLogin", "other", ""]


def _random_documents(n: int, seed: int = 1) -> list[dict]:
    """Event-shaped documents whose fields take edge values: big ints, -0.0, bools, containers, near-bounds."""
    rng = random.Random(seed)

    def weird():
        return rng.choice(WEIRD)

    docs = []
    for i in range(n):
        updates = {}
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            body = {}
            if rng.random() < 0.95:
                body["current"] = weird()
            if rng.random() < 0.9:
                body["confidence"] = rng.choice([weird(), rng.random()])
            updates[rng.choice(ATTRIBUTES)] = body if rng.random() < 0.95 else weird()
        docs.append({
            "eventId": weird() if rng.random() < 0.2 else f"e{i}",
            "timestamp": rng.choice(["2026-11-24T08:00:00Z", "2099-01-01T00:00:00Z", weird()]),
            "eventType": rng.choice(["context.updated", "context.deleted", weird()]),
            "source": rng.choice([{"modelId": "m", "instanceId": "i"}, {"modelId": weird()}, weird()]),
            "contextDelta": rng.choice([{"userId": rng.choice(["u", weird()]), "updates": updates},
                                        {"updates": updates}, weird()]),
            "propagationRules": rng.choice([{"ttl": weird(), "priority": weird()}, {"ttl": 300}, weird(), {}]),
        })
    return docs


def _documents() -> list[object]:
    """Every JSON document of sample_data/, a generated stream with many invalid records, mutants of valid
    events, and random event-shaped documents full of edge values."""
    docs: list[object] = []
    lines = [line for path in sorted((ROOT / "sample_data").glob("*.jsonl")) for line in path.read_bytes().splitlines()]
    lines += list(generate_lines(GeneratorOptions(events=1500, seed=11, invalid_rate=0.4)))
    for line in lines:
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass  # not JSON: the contract's dead letter, no row to flatten
    rng = random.Random(5)
    valid = [d for d in docs if isinstance(d, dict) and d.get("eventType") == "context.updated"][:200]
    for path, value in MUTATIONS:
        for doc in rng.sample(valid, 4):
            docs.append(_mutate(doc, path, value))
    return docs + _random_documents(1500)


@pytest.fixture(scope="module")
def agreement():
    suite_dict = load_suite_dict(SUITE)
    compiled = compile_suite(suite_dict)
    rows = [row for doc in _documents() for row in flatten(doc, NOW, compiled)]
    return compiled, rows, run_ge(suite_dict, compiled, rows)


def test_sample_data_is_part_of_the_comparison():
    assert list((ROOT / "sample_data").glob("*.jsonl")), "sample_data/ must hold the shipped sample stream"


def test_fast_path_agrees_with_great_expectations_on_every_row(agreement):
    compiled, rows, results = agreement
    assert len(results) == len(compiled.checks)
    fast = {c.name: [] for c in compiled.checks}
    for index, row in enumerate(rows):
        for check in failures(row, compiled):
            fast[check.name].append(index)
    for result in results:
        assert result.exception is None, (result.name, result.exception)
        assert result.unexpected_rows == fast[result.name], result.name
        assert result.success == (not fast[result.name])


def test_the_comparison_exercises_most_expectations(agreement):
    _, rows, results = agreement
    failing = [r.name for r in results if not r.success]
    assert len(rows) > 2000
    assert len(failing) >= len(results) - 2, sorted(r.name for r in results if r.success)


def _valid_event(doc: dict):
    raw = json.dumps(doc).encode()
    return parse_event(raw, 1, "t:1", NOW, SyncSettings()), raw


def _doc(updates: dict) -> dict:
    return {
        "eventId": "e1", "timestamp": "2026-11-24T10:00:00.000Z", "eventType": "context.updated",
        "source": {"modelId": "risk-model", "instanceId": "r-0"},
        "contextDelta": {"userId": "u1", "updates": updates},
        "propagationRules": {"ttl": 300, "priority": "high"},
    }


def test_check_expectations_names_the_failed_expectation():
    suite = load_compiled(SUITE)
    event, raw = _valid_event(_doc({"segment": {"current": "engaged", "confidence": 0.9}}))
    assert check_expectations(event, raw, NOW, suite) is None
    event, raw = _valid_event(_doc({"segment": {"current": "engaged", "confidence": 0.9},
                                     "creditScore": {"current": 990, "confidence": 0.7}}))
    dl = check_expectations(event, raw, NOW, suite)
    assert dl.reason == "expect_column_values_to_be_between:value.creditScore"
    assert "min_value=300" in dl.detail and "990" in dl.detail and "creditScore" in dl.detail
    assert dl.stage == "expectations" and dl.raw == raw.decode()


def test_ingest_dead_letters_expectation_failures_only_when_enabled():
    raw = json.dumps(_doc({"segment": {"current": "vip", "confidence": 0.9}})).encode()
    key, value = ingest(raw, 3, "f:3", NOW, SyncSettings())
    assert key == "u1"  # default: contract v1 only
    on = SyncSettings(expectations=load_compiled(SUITE))
    key, value = ingest(raw, 3, "f:3", NOW, on)
    assert key == DEAD_LETTER_KEY
    kind, seq, _, text = untag(value)
    record = json.loads(text)
    assert (kind, seq) == ("D", 3)
    assert record["reason"] == "expect_column_values_to_be_in_set:value.segment"
    assert record["origin"] == "f:3" and "'vip'" in record["detail"]


def test_compile_refuses_what_it_cannot_evaluate_per_row():
    with pytest.raises(ValueError, match="row-level"):
        compile_suite({"name": "x", "expectations": [
            {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "confidence"}}]})
    with pytest.raises(ValueError, match="mostly"):
        compile_suite({"name": "x", "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "userId", "mostly": 0.9}}]})


def test_jobs_yaml_setting_selects_the_suite():
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    assert job.settings.to_settings().expectations is None
    job = apply_overrides(job, ["expectations=context_events"])
    assert job.settings.to_settings().expectations.name == "context_events"
    with pytest.raises(ConfigError, match="no_such_suite"):
        apply_overrides(job, ["expectations=no_such_suite"])


def test_stream_check_equals_the_full_row_evaluation():
    """check_expectations skips checks whose verdict is known (other attributes' null columns)."""
    suite = load_compiled(SUITE)
    checked = failed = 0
    for doc in _documents():
        raw = json.dumps(doc).encode()
        event = parse_event(raw, 1, "t:1", NOW, SyncSettings())
        if not isinstance(event, Event):
            continue  # the contract already dead-letters it
        full = [(c.name, i) for i, row in enumerate(flatten(event.doc, NOW, suite)) for c in failures(row, suite)]
        dl = check_expectations(event, raw, NOW, suite)
        checked += 1
        if not full:
            assert dl is None
            continue
        failed += 1
        assert dl.reason == full[0][0]
        assert dl.detail.endswith(f"and {len(full) - 1} more: " + ", ".join(n for n, _ in full[1:])) or len(full) == 1
    assert checked > 1000 and failed > 30

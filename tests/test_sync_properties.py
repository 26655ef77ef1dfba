"""Properties of the keyed step over generated streams (hypothesis)."""
import json
import random

from hypothesis import given, settings, strategies as st

from pipelines.file_outputs import OutputCollector
from pipelines.reference import run_reference
from transforms.settings import SyncSettings
from tests.helpers import NOW_MS, SETTINGS, event

ATTRS = ["segment", "lastAction", "riskTolerance", "creditScore", "timezone", "mood"]
values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "1"]),
                   st.floats(allow_nan=False, allow_infinity=False, width=32))


@st.composite
def valid_events(draw, n_max=40):
    n = draw(st.integers(1, n_max))
    docs = []
    for i in range(n):
        attrs = draw(st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True))
        updates = {}
        for a in attrs:
            u = {"current": draw(values), "confidence": draw(st.floats(0, 1))}
            if draw(st.booleans()):
                u["previous"] = draw(values)
            updates[a] = u
        docs.append(event(
            eventId=f"e{i:03d}",
            timestamp=f"2026-11-17T10:{draw(st.integers(0, 5)):02d}:{draw(st.integers(0, 59)):02d}Z",
            contextDelta__userId=draw(st.sampled_from(["u1", "u2", "u3"])),
            contextDelta__updates=updates,
        ))
    return docs


def lines_of(docs, garbage=()):
    payloads = [json.dumps(d).encode() for d in docs] + list(garbage)
    return list(enumerate(payloads, 1))


def collect(records, settings_=SETTINGS):
    c = OutputCollector()
    c.add_all(run_reference(records, "t", settings_, now_ms=NOW_MS))
    return c


@given(valid_events(), st.lists(st.integers(0, 39), max_size=10),
       st.lists(st.binary(max_size=30), max_size=5), st.sampled_from(["last-writer-wins", "reject"]))
def test_read_equals_accepted_plus_duplicates_plus_dead_lettered(docs, dup_idx, garbage, policy):
    docs = docs + [docs[i % len(docs)] for i in dup_idx]
    s = SyncSettings(**{**SETTINGS.__dict__, "conflict_policy": policy})
    summary = collect(lines_of(docs, garbage), s).finish()
    assert summary.read == len(docs) + len(garbage)
    assert summary.read == summary.accepted + summary.duplicates + summary.dead_lettered
    assert summary.duplicates >= len(dup_idx) - 0  # every re-delivery of a valid event is a duplicate
    assert summary.duplicates == len(docs) - len({d["eventId"] for d in docs})


def final_values(collector):
    return {key: {a: v["value"] for a, v in json.loads(text)["attributes"].items()}
            for key, (_, text) in collector.views.items()}


@settings(max_examples=60)
@given(valid_events(), st.randoms(use_true_random=False))
def test_final_attribute_values_do_not_depend_on_arrival_order(docs, rnd):
    # Under last-writer-wins each attribute ends at its largest (timestamp, eventId) update.
    shuffled = list(docs)
    rnd.shuffle(shuffled)
    assert final_values(collect(lines_of(docs))) == final_values(collect(lines_of(shuffled)))


@given(valid_events())
def test_reject_policy_never_applies_a_conflicting_sub_event(docs):
    s = SyncSettings(**{**SETTINGS.__dict__, "conflict_policy": "reject"})
    c = collect(lines_of(docs), s)
    history = [json.loads(t) for _, t in c.history]
    conflicted = {json.loads(t)["eventId"] for _, t in c.violations if json.loads(t)["kind"] == "conflict"}
    for h in history:
        if h["eventId"] in conflicted and len(h["aggregates"]) == 1:
            assert h["applied"] == [] and h["stale"] == []


def test_random_garbage_between_valid_lines_does_not_disturb_them():
    rng = random.Random(3)
    docs = [event(eventId=f"e{i}", timestamp=f"2026-11-17T10:00:{i:02d}Z") for i in range(20)]
    mixed = []
    for d in docs:
        mixed.append(json.dumps(d).encode())
        mixed.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    c = collect(list(enumerate(mixed, 1)))
    s = c.finish()
    assert (s.accepted, s.dead_lettered) == (20, 20)

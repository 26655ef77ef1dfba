"""Per-aggregate semantics of contract v1 section 4: ordering, conflicts (both policies), apply, view."""
from transforms.aggregate import new_aggregate
from transforms.records import view_record
from transforms.sync import sync_step
from transforms.validate import parse_event
from tests.helpers import NOW_MS, SETTINGS, event, raw

REJECT = SETTINGS.__class__(**{**SETTINGS.__dict__, "conflict_policy": "reject"})


def run(docs, settings=SETTINGS):
    state, lines = None, []
    for i, doc in enumerate(docs, 1):
        parsed = parse_event(raw(doc), i, f"t:{i}", NOW_MS, settings)
        state, out = sync_step(state, parsed, settings)
        lines.extend(out)
    return state, lines


def kinds(lines):
    return [line[0] for line in lines]


def upd(attr, current, **extra):
    return {attr: {"current": current, "confidence": 0.8, **extra}}


def test_late_event_is_an_ordering_violation_with_lag_and_still_applies_new_attributes():
    state, lines = run([
        event(eventId="a", timestamp="2026-11-17T10:00:00Z", contextDelta__updates=upd("segment", "x")),
        event(eventId="b", timestamp="2026-11-17T09:59:59.750Z", contextDelta__updates=upd("lastAction", "y")),
        event(eventId="c", timestamp="2026-11-17T10:00:00Z", contextDelta__updates=upd("lastAction", "z")),
    ])
    assert kinds(lines) == ["V", "H", "O", "V", "H", "V", "H"]  # equal timestamps are in order
    assert '"lagMs":250' in lines[2]
    agg = state["aggs"]["behavioral"]
    assert agg[0] == 3 and agg[4]["lastAction"][0] == "z"


def test_older_update_of_an_attribute_is_stale_not_applied():
    state, lines = run([
        event(eventId="a", timestamp="2026-11-17T10:00:00Z"),
        event(eventId="b", timestamp="2026-11-17T09:00:00Z", contextDelta__updates=upd("segment", "old")),
    ])
    assert kinds(lines) == ["V", "H", "O", "H"]
    assert '"stale":["segment"]' in lines[-1] and '"applied":[]' in lines[-1]
    assert state["aggs"]["behavioral"][0] == 1


def test_same_timestamp_ties_break_on_event_id_by_code_point():
    state, _ = run([
        event(eventId="b", contextDelta__updates=upd("segment", "from-b")),
        event(eventId="a", contextDelta__updates=upd("segment", "from-a")),
        event(eventId="Z", contextDelta__updates=upd("segment", "from-Z")),
    ])
    assert state["aggs"]["behavioral"][4]["segment"][0] == "from-b"


def test_conflict_last_writer_wins_records_and_applies():
    state, lines = run([
        event(eventId="a", contextDelta__updates=upd("segment", 1)),
        event(eventId="b", timestamp="2026-11-17T10:00:01Z",
              contextDelta__updates=upd("segment", 2, previous="1")),  # "1" differs from 1
        event(eventId="c", timestamp="2026-11-17T10:00:02Z", contextDelta__expectedVersion=2,
              contextDelta__updates=upd("segment", 3, previous=2.0)),  # 2.0 equals 2
    ])
    assert kinds(lines) == ["V", "H", "C", "V", "H", "V", "H"]
    assert '"mismatches":[{"attribute":"segment","expected":"1","actual":1}]' in lines[2]
    assert state["aggs"]["behavioral"][0] == 3


def test_conflict_reject_applies_nothing_and_counts_no_stale():
    state, lines = run([
        event(eventId="a", contextDelta__updates=upd("segment", True)),
        event(eventId="b", timestamp="2026-11-17T10:00:01Z", contextDelta__expectedVersion=0,
              contextDelta__updates=upd("segment", False)),
        event(eventId="c", timestamp="2026-11-17T10:00:02Z",
              contextDelta__updates=upd("segment", False, previous=1)),  # true differs from 1
    ], REJECT)
    assert kinds(lines) == ["V", "H", "C", "H", "C", "H"]
    assert '"expectedVersion":0,"actualVersion":1' in lines[2] and '"policy":"reject"' in lines[2]
    assert '"applied":[],"stale":[]' in lines[-1] and '"conflict":true' in lines[-1]
    assert state["aggs"]["behavioral"][4]["segment"][0] is True


def test_previous_null_expects_absent_or_tombstoned_attribute():
    _, lines = run([
        event(eventId="a", contextDelta__updates=upd("segment", None, previous=None)),
        event(eventId="b", timestamp="2026-11-17T10:00:01Z", eventType="context.deleted",
              contextDelta__updates=upd("segment", None, previous=None)),
    ])
    assert "C" not in kinds(lines)


def test_tombstoned_aggregate_still_has_a_view_with_empty_attributes():
    state, lines = run([
        event(eventId="a"),
        event(eventId="b", timestamp="2026-11-17T10:00:01Z", eventType="context.deleted",
              contextDelta__updates=upd("segment", None)),
    ])
    view = view_record("behavioral", "u1", state["aggs"]["behavioral"])
    assert view["attributes"] == {} and view["version"] == 2
    assert view["updatedAt"] == "2026-11-17T10:00:01.000Z"


def test_view_holds_union_of_applied_targets_and_largest_applied_time():
    state, _ = run([
        event(eventId="a", timestamp="2026-11-17T10:00:05Z", propagationRules__targetModels=["m2"]),
        event(eventId="b", timestamp="2026-11-17T10:00:01Z", contextDelta__updates=upd("lastAction", "x"),
              propagationRules__targetModels=["m1", "m2"]),
        event(eventId="c", timestamp="2026-11-17T09:00:00Z", propagationRules__targetModels=["stale-only"]),
    ])
    view = view_record("behavioral", "u1", state["aggs"]["behavioral"])
    assert view["targetModels"] == ["m1", "m2"]
    assert view["updatedAt"] == "2026-11-17T10:00:05.000Z"
    assert set(view["attributes"]) == {"segment", "lastAction"}
    assert view["attributes"]["segment"] == {"value": "power", "confidence": 0.9,
        "updatedAt": "2026-11-17T10:00:05.000Z", "eventId": "a", "modelId": "risk-model"}


def test_new_aggregate_starts_at_version_zero():
    assert new_aggregate()[0] == 0

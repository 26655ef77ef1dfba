"""transforms/outcome.py: the answer to `publish(wait=True)`, from the event's own output lines."""
from __future__ import annotations

from dataclasses import replace

from tests.helpers import NOW_MS, SETTINGS, event, raw
from transforms.ingest import ingest
from transforms.outcome import ack_nonce, event_outcome
from transforms.sync import sync_step


def step(state, doc, settings=SETTINGS):
    _, parsed = ingest(raw(doc), 1, "t/0/1", NOW_MS, settings)
    state, lines = sync_step(state, parsed, settings)
    return state, event_outcome(doc["eventId"], lines)


def test_applied_then_duplicate_then_stale():
    state, first = step(None, event(eventId="a", timestamp="2026-11-17T10:00:00.000Z"))
    assert first == {"eventId": "a", "outcome": "applied", "applied": ["segment"], "stale": [],
                     "conflict": False, "violation": False, "versions": {"behavioral:u1": 1}}
    state, again = step(state, event(eventId="a"))
    assert again == {"eventId": "a", "outcome": "duplicate"}
    state, older = step(state, event(eventId="b", timestamp="2026-11-17T09:00:00.000Z"))
    assert (older["outcome"], older["stale"], older["violation"], older["versions"]) == ("stale", ["segment"], True, {})


def test_a_conflict_under_reject_is_rejected_and_under_last_writer_wins_applied():
    doc = event(eventId="c", timestamp="2026-11-17T11:00:00.000Z", contextDelta__expectedVersion=7)
    state, _ = step(None, event(eventId="a"))
    _, rejected = step(state, doc, replace(SETTINGS, conflict_policy="reject"))
    assert (rejected["outcome"], rejected["conflict"], rejected["versions"]) == ("rejected", True, {})
    state, _ = step(None, event(eventId="a"))
    _, applied = step(state, doc)
    assert (applied["outcome"], applied["conflict"], applied["versions"]) == ("applied", True, {"behavioral:u1": 2})


def test_only_a_short_string_asks_for_an_outcome():
    assert ack_nonce({"ack": "3f2a"}) == "3f2a"
    assert [ack_nonce({"ack": v}) for v in (True, 1, "", "x" * 65, None)] == [None] * 5
    assert ack_nonce({}) is None

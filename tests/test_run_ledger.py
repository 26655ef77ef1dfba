"""The run ledger: saved atomically, prunes superseded savepoints, refuses state that does not fit."""
from __future__ import annotations

from pathlib import Path

import pytest

from ctxsync import run_ledger
from ctxsync.config import ConfigError
from ctxsync.run_ledger import RunLedger
from transforms.state_layout import STATE_LAYOUT

SETTINGS = {"conflict_policy": "last-writer-wins", "dedup_retention": 86_400_000}


def ledger(savepoint: str | None, offsets: dict[int, int] | None = None, **changes) -> RunLedger:
    fields = dict(savepoint=savepoint, bootstrap="127.0.0.1:9092", input_topic="context.events",
                  offsets=offsets if offsets is not None else {0: 10, 1: 5}, settings=SETTINGS,
                  stopped_at="2026-11-25T00:00:00Z")
    return RunLedger(**{**fields, **changes})


def savepoint_dir(state: Path, name: str) -> str:
    path = state / "savepoints" / name
    path.mkdir(parents=True)
    (path / "_metadata").write_bytes(b"x")
    return path.as_uri()


def test_save_then_load_round_trips_and_keeps_only_the_named_savepoint(tmp_path: Path) -> None:
    state = run_ledger.state_path(tmp_path, "context-sync", "local", "group/with spaces")
    assert state.parent == tmp_path and "/" not in state.name and " " not in state.name
    run_ledger.save(state, ledger(savepoint_dir(state, "savepoint-aaa")))
    new = savepoint_dir(state, "savepoint-bbb")
    run_ledger.save(state, ledger(new, {0: 12, 1: 5}))
    assert run_ledger.load(state) == ledger(new, {0: 12, 1: 5})  # partition keys come back as ints
    assert [p.name for p in (state / "savepoints").iterdir()] == ["savepoint-bbb"]
    assert not list(state.glob("*.tmp"))


def test_a_ledger_without_savepoint_keeps_no_savepoints(tmp_path: Path) -> None:
    state = tmp_path / "s"
    savepoint_dir(state, "savepoint-stale")
    run_ledger.save(state, ledger(None, {}))
    assert run_ledger.load(state).savepoint is None and not list((state / "savepoints").iterdir())


def test_missing_ledger_loads_as_none(tmp_path: Path) -> None:
    assert run_ledger.load(tmp_path) is None


def test_state_that_fits_passes(tmp_path: Path) -> None:
    run_ledger.check_continuation(ledger("file:/x"), "127.0.0.1:9092", "context.events", dict(SETTINGS),
                                  {0: 10, 1: 9, 2: 3}, tmp_path)  # grown, and a new partition: fine


@pytest.mark.parametrize("high, topic, settings, words", [
    ({0: 3, 1: 5}, "context.events", SETTINGS, ["recreated or truncated", "partition 0 ends at 3", "stopped at 10"]),
    ({0: 10, 1: 5}, "other.events", SETTINGS, ["built from context.events", "not other.events"]),
    ({0: 10, 1: 5}, "context.events", {**SETTINGS, "conflict_policy": "reject"}, ["settings changed",
                                                                                   "conflict_policy"]),
])
def test_state_that_does_not_fit_is_refused_with_the_way_out(tmp_path: Path, high, topic, settings, words) -> None:
    with pytest.raises(ConfigError) as caught:
        run_ledger.check_continuation(ledger("file:/x"), "127.0.0.1:9092", topic, settings, high, tmp_path)
    message = str(caught.value)
    assert all(word in message for word in words) and "--fresh" in message and str(tmp_path) in message


def test_state_of_an_older_layout_is_refused(tmp_path: Path) -> None:
    """A ledger written before layouts were recorded names a savepoint of layout 1: refused, not misread."""
    state = tmp_path / "s"
    run_ledger.save(state, ledger(savepoint_dir(state, "savepoint-old")))
    file = state / run_ledger.LEDGER_FILE
    file.write_text(file.read_text().replace(f'  "state_layout": {STATE_LAYOUT},\n', ""))
    old = run_ledger.load(state)
    assert old.state_layout == 1
    with pytest.raises(ConfigError) as caught:
        run_ledger.check_continuation(old, "127.0.0.1:9092", "context.events", dict(SETTINGS), {0: 10, 1: 5}, state)
    assert "layout 1" in str(caught.value) and "--fresh" in str(caught.value)

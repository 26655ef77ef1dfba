from transforms.dedup import dedup_step, new_dedup_state

HOUR = 3_600_000


def test_second_delivery_is_a_duplicate_and_leaves_state_alone():
    state = new_dedup_state()
    _, dup = dedup_step(state, "e1", 10 * HOUR, 24 * HOUR)
    assert dup is False
    snapshot = {"seen": dict(state["seen"]), "clock": state["clock"]}
    _, dup = dedup_step(state, "e1", 10 * HOUR, 24 * HOUR)
    assert dup is True
    assert {"seen": state["seen"], "clock": state["clock"]} == snapshot


def test_ids_are_forgotten_after_retention_of_the_users_event_time():
    state = new_dedup_state()
    dedup_step(state, "old", 0, 24 * HOUR)
    dedup_step(state, "new", 24 * HOUR, 24 * HOUR)  # exactly at the edge: still remembered
    assert dedup_step(state, "old", 0, 24 * HOUR)[1] is True
    dedup_step(state, "newer", 24 * HOUR + 1, 24 * HOUR)
    assert dedup_step(state, "old", 0, 24 * HOUR)[1] is False


def test_purging_keeps_memory_bounded_without_changing_answers():
    state = new_dedup_state()
    for i in range(10_000):
        dedup_step(state, f"e{i}", i * 60_000, HOUR)  # one event a minute, 1 h retention
    assert len(state["seen"]) < 200
    assert dedup_step(state, "e9999", 9999 * 60_000, HOUR)[1] is True
    assert dedup_step(state, "e9950", 9950 * 60_000, HOUR)[1] is True
    assert dedup_step(state, "e9900", 9900 * 60_000, HOUR)[1] is False  # 99 min old: forgotten
    assert dedup_step(state, "e100", 100 * 60_000, HOUR)[1] is False

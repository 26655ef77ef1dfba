"""transforms/batching.py and the Java half that must agree with it (pipelines/flink/batches.py)."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from transforms.batching import Batching, bucket_of, frame, split_batch

USERS = ["user-00001", "user-09999", "José 🚀", "日本語", 'quote"and\\backslash', "x" * 300, "a\nb"]


def test_framed_items_split_back_exactly_even_with_newlines_and_spaces():
    items = [(1, 0, "plain"), (2, 3, ""), (17, 1, "with\nnewline and  spaces "), (10**12, 7, " 12 3 4 x")]
    batch = "".join(frame(payload, seq, part) for seq, part, payload in items)
    assert split_batch(batch) == items
    assert split_batch("") == []


def test_buckets_spread_users_evenly_and_stay_in_range():
    counts = Counter(bucket_of(f"user-{i:05d}", 32) for i in range(10_000))
    assert set(counts) == set(range(32))
    assert max(counts.values()) < 1.3 * min(counts.values())
    assert {bucket_of(u, 1) for u in USERS} == {0}


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_the_engine_puts_every_user_in_the_bucket_python_computes(ensure_ascii):
    """The Java half (JSON_VALUE on the UTF-8 text, MD5, 16 bits mod B) equals bucket_of for each userId,
    whether the id is written as UTF-8 or as \\u escapes; no payload is lost or altered on the way.
    (Arrival order within a batch is a streaming property, checked by the runner's parity tests.)"""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from pipelines.flink.batches import batches

    lines = [json.dumps({"contextDelta": {"userId": u}, "n": i}, ensure_ascii=ensure_ascii)
             for i, u in enumerate(USERS * 3)] + ["not json", '{"contextDelta": {"userId": 7}}']
    # the file source hands over ISO-8859-1 text: one char per byte of the UTF-8 line
    rows = ", ".join(f"({_sql_literal(line.encode('utf-8').decode('latin-1'))}, CAST({seq} AS BIGINT))"
                     for seq, line in enumerate(lines, 1))
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.execute_sql(f"CREATE TEMPORARY VIEW src AS SELECT line, seq, TIMESTAMP '2026-12-02 10:00:00.000' AS rt "
                      f"FROM (VALUES {rows}) AS t(line, seq)")
    table = batches(t_env, "src", "line", "DECODE(ENCODE(line, 'ISO-8859-1'), 'UTF-8')", "seq", "0",
                    Batching(window_ms=50, buckets=8), bounded=True)
    seen: list[int] = []
    with table.execute().collect() as results:
        for bucket, batch in results:
            for seq, _, payload in split_batch(batch):
                seen.append(seq)
                text = payload.encode("latin-1").decode("utf-8")
                assert text == lines[seq - 1]
                try:
                    user = json.loads(text)["contextDelta"]["userId"]
                except ValueError:
                    user = ""
                expected = bucket_of(user, 8) if isinstance(user, str) else bucket_of(str(user), 8)
                assert bucket == expected, (user, bucket, expected)
    assert sorted(seen) == list(range(1, len(lines) + 1))


@pytest.mark.parametrize("buckets", [1, 4, 8, 32])
def test_spread_keys_put_buckets_evenly_on_subtasks_by_flinks_own_assignment(buckets):
    """Keyed by their own number, buckets 0-3 all go to one subtask of two (Flink's key-group hash); keyed
    by their spread keys they split evenly, as Flink itself assigns them (asked through its JVM)."""
    from pyflink.java_gateway import get_gateway

    from pipelines.flink.sync import _key_group, spread_keys

    assign = get_gateway().jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment
    keys = spread_keys(buckets)
    groups = [assign.assignToKeyGroup(key, 128) for key in keys]
    assert groups == [_key_group(key, 128) for key in keys] and len(set(keys)) == buckets
    for parallelism in (1, 2, 4):
        if buckets % parallelism == 0:
            subtasks = Counter(assign.computeOperatorIndexForKeyGroup(128, parallelism, g) for g in groups)
            assert sorted(subtasks.values()) == [buckets // parallelism] * parallelism, (parallelism, subtasks)
    assert {assign.assignToKeyGroup(b, 128) * 2 // 128 for b in range(4)} == {1}  # why: unspread, all on one

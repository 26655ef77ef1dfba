"""transforms/tally.py: per-batch tallies of tagged output lines add up to the reference run's summary."""
from __future__ import annotations

from collections import Counter

import orjson

from pipelines.file_outputs import OutputCollector
from pipelines.reference import read_lines, run_reference
from tests.helpers import SAMPLE, SETTINGS
from transforms.records import VIEW, tagged
from transforms.tally import (
    BATCH_BOUNDS_MS, LAG_BOUNDS_MS, Tally, bucket_labels, histogram, lags_ms, tally_lines,
)


def add(total: Tally, part: Tally) -> None:
    for name in ("accepted", "duplicate", "dead_lettered", "ordering_violations", "conflicts", "stale_updates",
                 "views_emitted"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for reason, n in part.dead_letter_reasons.items():
        total.dead_letter_reasons[reason] = total.dead_letter_reasons.get(reason, 0) + n


def test_batch_tallies_of_sample_data_add_up_to_the_reference_summary():
    lines = list(run_reference(read_lines(SAMPLE), str(SAMPLE), SETTINGS))
    collector = OutputCollector()
    collector.add_all(lines)
    summary = collector.finish()
    total = Tally()
    for start in range(0, len(lines), 97):  # batches that cut events' lines apart too
        add(total, tally_lines(lines[start:start + 97]))

    assert total.outcomes() == {"accepted": summary.accepted, "duplicate": summary.duplicates,
                                "dead_lettered": summary.dead_lettered}
    assert sum(total.outcomes().values()) == summary.read
    assert (total.ordering_violations, total.conflicts, total.stale_updates) == (
        summary.ordering_violations, summary.conflicts, summary.stale_updates)
    assert total.stale_updates > 0 and total.dead_lettered > 0
    assert total.views_emitted == sum(line[0] == VIEW for line in lines) >= summary.views
    assert total.dead_letter_reasons == Counter(orjson.loads(text)["reason"] for _, text in collector.dead_letters)
    assert len(total.dead_letter_reasons) > 1


def test_stale_counts_of_more_than_one_digit_and_unknown_kinds():
    lines = [tagged("H", 1, {"a": 1}, "12"), tagged("H", 2, {"a": 1}, "0"), tagged("T", 3, {"control": 1})]
    got = tally_lines(lines)
    assert (got.accepted, got.stale_updates, sum(got.outcomes().values())) == (2, 12, 2)


def test_histogram_buckets_are_cumulative_with_inclusive_upper_bounds():
    bounds = (10, 100)
    got = histogram([0, 10, 11, 100, 101, 5_000], bounds)
    assert got.cumulative == [2, 4, 6]
    assert (got.total, got.count) == (5_222, 6)
    assert bucket_labels(bounds) == ("10", "100", "+Inf")
    assert histogram([], bounds).cumulative == [0, 0, 0]


def test_bounds_are_increasing_and_lags_never_negative():
    for bounds in (LAG_BOUNDS_MS, BATCH_BOUNDS_MS):
        assert list(bounds) == sorted(set(bounds))
    assert lags_ms([1_000, 2_500, 4_000], now_ms=3_000) == [2_000, 500, 0]

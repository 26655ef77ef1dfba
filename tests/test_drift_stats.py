"""Drift statistics and scores against values computed by hand."""
from __future__ import annotations

import math
import statistics

import pytest

from transforms.drift_stats import (
    OTHER, bin_shares, bucket_shares, js_divergence, psi, sketch_add, sketch_new, sketch_quantiles,
    top_k, welford_add, welford_new, welford_std, x_bar_z,
)


def test_psi_matches_hand_computation():
    # (0.5-0.25)*ln(0.5/0.25) + (0.5-0.75)*ln(0.5/0.75) = 0.25*0.693147 + 0.25*0.405465
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at 1e-4: (0.5-1e-4)*ln(0.5/1e-4) + (0.5-1)*ln(0.5/1)
    assert psi([0.5, 0.5], [0.0, 1.0]) == pytest.approx(0.4999 * math.log(5000) + 0.5 * math.log(2), abs=1e-9)


def test_jensen_shannon_matches_hand_computation():
    # m = (0.375, 0.625); 0.5*(0.5*log2(4/3) + 0.5*log2(0.8)) + 0.5*(0.25*log2(2/3) + 0.75*log2(1.2))
    assert js_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.048795, abs=1e-6)
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_welford_equals_two_pass_statistics():
    values = [3.0, 7.5, -1.25, 10.0, 4.0, 4.0]
    w = welford_new()
    for v in values:
        welford_add(w, v)
    assert w[0] == 6
    assert w[1] == pytest.approx(statistics.fmean(values))
    assert welford_std(w) == pytest.approx(statistics.stdev(values))
    assert welford_std([1, 5.0, 0.0]) == 0.0


def test_sketch_is_exact_below_capacity_and_close_above():
    s = sketch_new()
    for v in [5, 1, 4, 2, 3, 6, 8, 7, 9, 10]:
        sketch_add(s, v, cap=100)
    assert sketch_quantiles(s, 5) == [3, 5, 7, 9]
    big = sketch_new()
    for i in range(10_000):
        sketch_add(big, (i * 7919) % 10_000, cap=256)  # a permutation of 0..9999
    assert len(big["items"]) <= 256
    for got, want in zip(sketch_quantiles(big, 4), (2500, 5000, 7500)):
        assert abs(got - want) < 300


def test_bin_shares_use_right_closed_bins():
    assert bin_shares([1, 2, 2, 3, 9], [2, 5]) == [0.6, 0.2, 0.2]


def test_buckets_are_reference_top_k_plus_other():
    ref = {"a": 50, "b": 30, "c": 15, "rare": 3}
    cur = {"a": 10, "b": 10, "new": 20}
    p, q = bucket_shares(cur, ref, k=2)
    assert q == [50 / 98, 30 / 98, 18 / 98]  # c and the rare one are "other"
    assert p == [0.25, 0.25, 0.5]


def test_top_k_orders_by_count_then_name():
    assert top_k({"b": 2, "a": 2, "c": 5, "d": 1}, 2) == ([["c", 5], ["a", 2]], 3)
    assert OTHER == "__other__"


def test_x_bar_z_hand_example():
    history = [(10.0, 2.0, 100)] * 4
    # se = 2 * sqrt(1/100 + (4/100)/16) = 2 * sqrt(0.0125)
    assert x_bar_z(11.0, 100, history) == pytest.approx(1 / (2 * math.sqrt(0.0125)))
    assert x_bar_z(11.0, 100, history[:3]) is None  # too little history for a centre line

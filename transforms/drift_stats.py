"""Streaming statistics and drift scores as pure functions over small, picklable values.

Everything is deterministic for a given input order (no randomness, no hash-order dependence), so the
reference runner, Flink and Beam produce byte-identical drift records.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

# ---- Welford: running count, mean and sum of squared deviations, as [n, mean, m2] ----


def welford_new() -> list[float]:
    return [0, 0.0, 0.0]


def welford_add(w: list[float], x: float) -> None:
    w[0] += 1
    delta = x - w[1]
    w[1] += delta / w[0]
    w[2] += delta * (x - w[1])


def welford_std(w: list[float]) -> float:
    """Sample standard deviation (0 for fewer than two values)."""
    return math.sqrt(w[2] / (w[0] - 1)) if w[0] > 1 else 0.0


# ---- Quantile sketch: a deterministic compactor ----
# Values are kept exactly until `cap`; then the sorted buffer keeps every other item (alternating the
# offset, so no side is favoured) and each survivor stands for twice as many values. Simple, mergeless,
# bounded memory, rank error about n / cap per compaction level.


def sketch_new() -> dict[str, Any]:
    return {"items": [], "weight": 1, "flip": 0}


def sketch_add(sketch: dict[str, Any], x: float, cap: int) -> None:
    items = sketch["items"]
    items.append(x)
    if len(items) > cap:
        items.sort()
        sketch["items"] = items[sketch["flip"]::2]
        sketch["flip"] ^= 1
        sketch["weight"] *= 2


def sketch_quantiles(sketch: dict[str, Any], bins: int) -> list[float]:
    """The interior cut points at 1/bins, 2/bins, ... (bins - 1 values); empty for an empty sketch."""
    items = sorted(sketch["items"])
    if not items:
        return []
    n = len(items)
    return [items[min(n - 1, (i * n) // bins)] for i in range(1, bins)]


def bin_shares(values: list[float], edges: list[float]) -> list[float]:
    """Share of values per bin (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect_left(edges, v)] += 1
    total = len(values) or 1
    return [c / total for c in counts]


# ---- Divergences between two discrete distributions over the same bins ----

PSI_EPSILON = 1e-4  # an empty bin would make PSI infinite; this is the usual floor


def psi(actual: list[float], expected: list[float], eps: float = PSI_EPSILON) -> float:
    """Population Stability Index: sum (a - e) * ln(a / e), with empty bins floored at eps."""
    total = 0.0
    for a, e in zip(actual, expected):
        a, e = max(a, eps), max(e, eps)
        total += (a - e) * math.log(a / e)
    return total


def js_divergence(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon divergence in bits (0 = same, 1 = disjoint); needs no smoothing."""
    total = 0.0
    for a, b in zip(p, q):
        m = (a + b) / 2
        if a > 0:
            total += 0.5 * a * math.log2(a / m)
        if b > 0:
            total += 0.5 * b * math.log2(b / m)
    return max(0.0, total)


MIN_BUCKET_COUNT = 5  # the chi-square rule of thumb: rarer reference categories go to "other"


def bucket_shares(current: dict[str, int], reference: dict[str, int], k: int) -> tuple[list[float], list[float]]:
    """Both count maps as shares over the reference's top-k categories plus one "other" bucket.

    Bucketing keeps high-cardinality attributes (ids, timestamps) from scoring as total drift, while a
    category the reference never had still shows up: it lands in "other". Reference categories seen fewer
    than MIN_BUCKET_COUNT times are too noisy to be a bucket of their own.
    """
    buckets = [name for name, n in top_k(reference, k)[0] if name != OTHER and n >= MIN_BUCKET_COUNT]
    known = set(buckets)

    def shares(counts: dict[str, int]) -> list[float]:
        total = sum(counts.values()) or 1
        other = sum(n for name, n in counts.items() if name not in known)
        return [counts.get(name, 0) / total for name in buckets] + [other / total]

    return shares(current), shares(reference)


OTHER = "__other__"


def top_k(counts: dict[str, int], k: int) -> tuple[list[list[Any]], int]:
    """The k most frequent categories (ties by name) and the count of all the others."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[name, n] for name, n in ranked[:k]], sum(n for _, n in ranked[k:])


SPC_MIN_HISTORY = 4  # windows before the chart has a centre line worth trusting
Z_CAP = 1e6  # a constant history has sigma 0; any change is then "very far", but JSON has no infinity


def x_bar_z(mean: float, n: int, history: list[tuple[float, float, int]]) -> float | None:
    """SPC X-bar chart: how many standard errors the window mean lies from the centre line.

    `history` holds (mean, std, n) of the last N windows: the centre is the mean of their means, sigma is
    pooled from their stds, and the standard error counts both this window's noise (sigma^2 / n) and the
    centre's own (sigma^2 * sum(1/n_i) / N^2), so a short history does not inflate the false-alarm rate.
    """
    if len(history) < SPC_MIN_HISTORY or n < 2:
        return None
    count = len(history)
    centre = sum(m for m, _, _ in history) / count
    sigma = math.sqrt(sum(s * s for _, s, _ in history) / count)
    se = sigma * math.sqrt(1 / n + sum(1 / k for _, _, k in history) / count ** 2)
    if se == 0:
        return None if mean == centre else Z_CAP
    return min(abs(mean - centre) / se, Z_CAP)

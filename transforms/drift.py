"""The context-drift job's operators: event-time windowing and per-(category, attribute) drift scoring.

Two pure steps, so every engine computes identical records:
1. `stamp_step` (global, in source order, one instance): assigns each row its tumbling event-time window,
   tracks the watermark (max event time - out_of_orderness), marks rows of already-closed windows late,
   and emits a close message per (key, window) once the watermark passes the window's end. The watermark
   is computed from the data, not by the engine, so it does not depend on timing or parallelism.
2. `drift_step` (keyed by (category, attribute)): accumulates a window's statistics; on close it scores the
   window against its reference (previous window or a pinned baseline) and emits one drift record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from transforms.drift_stats import (
    OTHER, bin_shares, bucket_shares, js_divergence, psi, sketch_add, sketch_new, sketch_quantiles,
    top_k, welford_add, welford_new, welford_std, x_bar_z,
)
from transforms.json_values import dumps_compact
from transforms.model import Event
from transforms.records import tagged
from transforms.timestamps import format_iso_ms

SCORES = ("psi", "js", "spcValue", "spcConfidence")
THRESHOLD_OF = {"psi": "psi", "js": "js", "spcValue": "spc_sigma", "spcConfidence": "spc_sigma"}


@dataclass(frozen=True)
class DriftSettings:
    """Knobs of the context-drift job (built from jobs.yaml by ctxsync.config)."""

    window_ms: int = 900_000
    out_of_orderness_ms: int = 120_000
    top_k: int = 8
    quantile_bins: int = 5
    sketch_size: int = 512
    min_count: int = 200
    spc_windows: int = 8
    thresholds: dict[str, float] = field(default_factory=lambda: {"psi": 0.25, "js": 0.1, "spc_sigma": 3.0})
    baseline: dict[str, dict[str, Any]] | None = None  # "category/attribute" -> reference profile


class Row(NamedTuple):
    """One attribute update of a valid event, as the drift statistics see it."""

    category: str
    attribute: str
    value: Any
    confidence: float
    model_id: str


def event_rows(event: Event) -> list[Row]:
    return [
        Row(category, attribute, current, confidence, event.model_id)
        for category, updates in event.sub_events for attribute, current, confidence, _, _ in updates
    ]


def key_of(category: str, attribute: str) -> str:
    return f"{category}/{attribute}"


# ---- step 1: windows and watermark (global, source order) ----
# Messages to the keyed step: ("R", key, window_start, row) | ("L", key) | ("C", key, window_start)


def new_stamp_state() -> dict[str, Any]:
    return {"max_ts": None, "open": {}, "events": 0, "rows": 0, "late": 0}


def stamp_step(state: dict[str, Any], ts: int, rows: list[Row], s: DriftSettings) -> list[tuple]:
    """Window assignment, lateness and window closing for one valid event (all its rows share ts)."""
    out: list[tuple] = []
    state["events"] += 1
    state["rows"] += len(rows)
    start = ts - ts % s.window_ms
    max_ts = ts if state["max_ts"] is None or ts > state["max_ts"] else state["max_ts"]
    state["max_ts"] = max_ts
    watermark = max_ts - s.out_of_orderness_ms
    late = start + s.window_ms <= watermark
    state["late"] += len(rows) if late else 0
    open_keys = state["open"].setdefault(start, set()) if not late else None
    for row in rows:
        key = key_of(row.category, row.attribute)
        if late:
            out.append(("L", key))
        else:
            open_keys.add(key)
            out.append(("R", key, start, row))
    out.extend(close_until(state, watermark, s))
    return out


def close_until(state: dict[str, Any], watermark: float, s: DriftSettings) -> list[tuple]:
    """Close messages for every open window that ends at or before the watermark (ordered)."""
    out = []
    for start in sorted(w for w in state["open"] if w + s.window_ms <= watermark):
        out.extend(("C", key, start) for key in sorted(state["open"].pop(start)))
    return out


def flush(state: dict[str, Any], s: DriftSettings) -> list[tuple]:
    """End of a bounded input: the watermark goes to +infinity and every window closes."""
    return close_until(state, float("inf"), s)


# ---- step 2: per-key statistics and scores ----


def new_key_state() -> dict[str, Any]:
    return {"open": {}, "history": [], "previous": None, "late": 0}


def _new_window() -> dict[str, Any]:
    return {"n": 0, "nulls": 0, "conf": welford_new(), "cat": {}, "num": welford_new(),
            "min": None, "max": None, "sketch": sketch_new(), "models": {}}


def _category_label(value: Any) -> str:
    return value if isinstance(value, str) else dumps_compact(value)


def _add(w: dict[str, Any], row: Row, s: DriftSettings) -> None:
    w["n"] += 1
    welford_add(w["conf"], row.confidence)
    model = w["models"].setdefault(row.model_id, [0, 0.0])
    model[0] += 1
    model[1] += row.confidence
    v = row.value
    if v is None:
        w["nulls"] += 1
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        welford_add(w["num"], v)
        w["min"] = v if w["min"] is None or v < w["min"] else w["min"]
        w["max"] = v if w["max"] is None or v > w["max"] else w["max"]
        sketch_add(w["sketch"], v, s.sketch_size)
    else:
        label = _category_label(v)
        cat = w["cat"]
        # Free-text attributes would grow without bound: past the cap, new values count as "other".
        if label in cat or len(cat) < 4 * s.top_k + 64:
            cat[label] = cat.get(label, 0) + 1
        else:
            cat[OTHER] = cat.get(OTHER, 0) + 1


def _profile(w: dict[str, Any], s: DriftSettings) -> dict[str, Any]:
    """What a later window is compared with: category counts and numeric bin edges with their shares."""
    edges = sorted(set(sketch_quantiles(w["sketch"], s.quantile_bins)))
    return {"n": w["n"], "cat": dict(w["cat"]), "edges": edges,
            "shares": bin_shares(w["sketch"]["items"], edges) if edges else []}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _scores(w: dict[str, Any], ref: dict[str, Any] | None, history: list[dict[str, Any]],
            s: DriftSettings) -> dict[str, float | None]:
    scores: dict[str, float | None] = dict.fromkeys(SCORES)
    if w["n"] >= s.min_count:
        if ref is not None and ref["n"] >= s.min_count:
            if w["cat"] and ref["cat"]:
                p, q = bucket_shares(w["cat"], ref["cat"], s.top_k)
                scores["js"] = js_divergence(p, q)
                scores["psi"] = psi(p, q)
            elif w["num"][0] and ref["edges"]:
                scores["psi"] = psi(bin_shares(w["sketch"]["items"], ref["edges"]), ref["shares"])
        if w["num"][0] >= 2:
            scores["spcValue"] = x_bar_z(w["num"][1], int(w["num"][0]),
                                         [(h["mean"], h["std"], h["numN"]) for h in history if h["mean"] is not None])
        scores["spcConfidence"] = x_bar_z(w["conf"][1], int(w["conf"][0]),
                                          [(h["confMean"], h["confStd"], h["n"]) for h in history])
    return {k: _r(v) for k, v in scores.items()}


def drift_step(state: dict[str, Any], message: tuple, s: DriftSettings) -> list[dict[str, Any]]:
    """Apply one message of the stamp step to this key's state; a close returns the drift record."""
    kind, key = message[0], message[1]
    if kind == "R":
        w = state["open"].get(message[2])
        if w is None:
            w = state["open"][message[2]] = _new_window()
        _add(w, message[3], s)
        return []
    if kind == "L":
        state["late"] += 1
        return []
    start = message[2]
    w = state["open"].pop(start)
    pinned = s.baseline is not None
    ref = s.baseline.get(key) if pinned else state["previous"]
    history = state["history"][-s.spc_windows:]
    scores = _scores(w, ref, history, s)
    record = _record(key, start, w, scores, "baseline" if pinned else "previous", ref is not None, state["late"], s)
    state["late"] = 0
    if w["n"] >= s.min_count:  # thin windows neither judge nor serve as the yardstick
        state["previous"] = _profile(w, s)
        state["history"] = history[-(s.spc_windows - 1):] + [{
            "mean": w["num"][1] if w["num"][0] else None, "std": welford_std(w["num"]), "numN": int(w["num"][0]),
            "n": w["n"],
            "confMean": w["conf"][1], "confStd": welford_std(w["conf"]),
        }]
    return [record]


def _record(key: str, start: int, w: dict[str, Any], scores: dict[str, float | None], reference: str,
            has_ref: bool, late: int, s: DriftSettings) -> dict[str, Any]:
    category, attribute = key.split("/", 1)
    top, other = top_k(w["cat"], s.top_k)
    numeric = None
    if w["num"][0]:
        numeric = {
            "count": int(w["num"][0]), "mean": _r(w["num"][1]), "std": _r(welford_std(w["num"])),
            "min": w["min"], "max": w["max"],
            "quantiles": [_r(q) for q in sketch_quantiles(w["sketch"], s.quantile_bins)],
        }
    alerts = [name for name in SCORES
              if scores[name] is not None and scores[name] >= s.thresholds[THRESHOLD_OF[name]]]
    return {
        "windowStart": format_iso_ms(start), "windowEnd": format_iso_ms(start + s.window_ms),
        "category": category, "attribute": attribute, "count": w["n"], "nulls": w["nulls"],
        "nullRate": _r(w["nulls"] / w["n"]), "late": late, "meanConfidence": _r(w["conf"][1]),
        "categorical": {"top": top, "other": other, "distinct": len(w["cat"])} if w["cat"] else None,
        "numeric": numeric,
        "byModel": {m: {"count": c, "meanConfidence": _r(total / c)} for m, (c, total) in sorted(w["models"].items())},
        "reference": reference if has_ref else None,
        "scores": scores,
        "thresholds": {name: s.thresholds[THRESHOLD_OF[name]] for name in SCORES},
        "alerts": alerts,
    }


def record_sort_key(record: dict[str, Any]) -> tuple[str, str, str]:
    """drift.jsonl order: by window, then category, then attribute."""
    return record["windowStart"], record["category"], record["attribute"]


def baseline_profiles(records: list[dict[str, Any]], s: DriftSettings) -> dict[str, dict[str, Any]]:
    """A pinned reference per key from a known-good drift.jsonl: summed category counts (top-k + other)
    and numeric bin edges averaged over its windows (each bin then holds 1/bins of the values)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["count"] < s.min_count:
            continue  # thin windows (the ragged first and last ones) are not a yardstick
        key = key_of(record["category"], record["attribute"])
        p = out.setdefault(key, {"n": 0, "cat": {}, "quantiles": []})
        p["n"] += record["count"]
        if record["categorical"]:
            for name, n in record["categorical"]["top"]:
                p["cat"][name] = p["cat"].get(name, 0) + n
            if record["categorical"]["other"]:
                p["cat"][OTHER] = p["cat"].get(OTHER, 0) + record["categorical"]["other"]
        if record["numeric"] and len(record["numeric"]["quantiles"]) == s.quantile_bins - 1:
            p["quantiles"].append(record["numeric"]["quantiles"])
    for p in out.values():
        qs = p.pop("quantiles")
        edges = [sum(col) / len(qs) for col in zip(*qs)] if qs else []
        p["edges"] = sorted(set(edges))
        p["shares"] = [1 / (len(p["edges"]) + 1)] * (len(p["edges"]) + 1) if p["edges"] else []
    return out


# ---- tagged output lines (the form engines move; see transforms/records.py) ----
DRIFT_RECORD, DRIFT_STATS = "W", "S"


def drift_line(record: dict[str, Any]) -> str:
    return tagged(DRIFT_RECORD, 0, record)


def stats_line(state: dict[str, Any]) -> str:
    """The stamp step's counts, emitted once at the end of a bounded input."""
    return tagged(DRIFT_STATS, 0, {"accepted": state["events"], "rows": state["rows"], "late_rows": state["late"]})


def stamp_event(stamp: dict[str, Any], event: Event, s: DriftSettings) -> list[tuple]:
    return stamp_step(stamp, event.ts, event_rows(event), s)

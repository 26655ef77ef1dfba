"""drift.jsonl -> one self-contained HTML page: a card per attribute with its drift scores over time.

Inline SVG only (no scripts, no CDN: the page must open anywhere, offline). Every score is drawn as a
fraction of its own threshold, so one dashed line at 1.0 is the alert line for all of them; alert windows
are shaded red, and every point has a tooltip with the raw value.
"""
from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

SERIES = (  # score name, label, colour
    ("psi", "PSI", "#2563eb"),
    ("js", "Jensen-Shannon", "#7c3aed"),
    ("spcValue", "SPC value mean (σ)", "#059669"),
    ("spcConfidence", "SPC confidence mean (σ)", "#d97706"),
)
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16", "#94a3b8")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 190, 44, 12, 12, 26
MINI_H = 64


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _x(i: int, n: int) -> float:
    return PAD_L + (W - PAD_L - PAD_R) * (i + 0.5) / max(n, 1)


def _score_chart(records: list[dict[str, Any]]) -> str:
    n = len(records)
    ratios = [
        {name: (r["scores"][name] / r["thresholds"][name]) if r["scores"][name] is not None and r["thresholds"][name] else None
         for name, _, _ in SERIES}
        for r in records
    ]
    top = max([1.5] + [v for row in ratios for v in row.values() if v is not None])
    top = min(top, 12.0) * 1.1
    plot_h = H - PAD_T - PAD_B

    def y(v: float) -> float:
        return PAD_T + plot_h * (1 - min(v, top) / top)

    band = (W - PAD_L - PAD_R) / max(n, 1)
    parts = [f'<svg viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="drift scores over time">']
    for i, r in enumerate(records):
        if r["alerts"]:
            parts.append(f'<rect x="{_x(i, n) - band / 2:.1f}" y="{PAD_T}" width="{band:.1f}" height="{plot_h}" '
                         f'fill="#fee2e2"><title>ALERT {_e(r["windowStart"])}: {_e(", ".join(r["alerts"]))}</title></rect>')
    drawn: list[float] = []
    for frac in (1.0, 0.5, 2.0, 4.0, 8.0):  # the alert line first; others only where labels do not collide
        if frac < top and all(abs(y(frac) - d) >= 14 for d in drawn):
            drawn.append(y(frac))
            style = 'stroke="#dc2626" stroke-width="1.5" stroke-dasharray="6 4"' if frac == 1.0 else 'stroke="#e5e7eb"'
            parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(frac):.1f}" y2="{y(frac):.1f}" {style}/>')
            parts.append(f'<text x="{PAD_L - 6}" y="{y(frac) + 4:.1f}" class="tick" text-anchor="end">{frac:g}×</text>')
    parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#9ca3af"/>')
    for name, label, colour in SERIES:
        points = [(i, row[name]) for i, row in enumerate(ratios) if row[name] is not None]
        if not points:
            continue
        path = " ".join(f"{'M' if k == 0 else 'L'}{_x(i, n):.1f},{y(v):.1f}" for k, (i, v) in enumerate(points))
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, v in points:
            r = records[i]
            alert = name in r["alerts"]
            parts.append(
                f'<circle cx="{_x(i, n):.1f}" cy="{y(v):.1f}" r="{5 if alert else 2.5}" fill="{"#dc2626" if alert else colour}" '
                f'stroke="white" stroke-width="1"><title>{_e(label)} {_e(r["windowStart"])}: {r["scores"][name]} '
                f'(threshold {r["thresholds"][name]}){" ALERT" if alert else ""}</title></circle>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        parts.append(f'<text x="{_x(i, n):.1f}" y="{H - 8}" class="tick" text-anchor="middle">'
                     f'{_e(records[i]["windowStart"][11:16])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _mini_chart(records: list[dict[str, Any]]) -> str:
    """Categorical: stacked shares of the top categories per window. Numeric: mean with a ±1 std band."""
    n = len(records)
    band = (W - PAD_L - PAD_R) / max(n, 1)
    parts = [f'<svg viewBox="0 0 {W} {MINI_H}" class="mini" role="img" aria-label="distribution per window">']
    cats = [r for r in records if r["categorical"]]
    if len(cats) >= len(records) / 2:
        totals: dict[str, int] = defaultdict(int)
        for r in cats:
            for name, count in r["categorical"]["top"]:
                totals[name] += count
        names = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))][:len(PALETTE) - 1]
        colour = {name: PALETTE[i] for i, name in enumerate(names)}
        for i, r in enumerate(records):
            if not r["categorical"]:
                continue
            top = dict(r["categorical"]["top"])
            total = sum(top.values()) + r["categorical"]["other"] or 1
            y = 2.0
            for name in names + ["other"]:
                share = (top.get(name, 0) if name != "other" else total - sum(top.get(k, 0) for k in names)) / total
                h = (MINI_H - 4) * share
                if h > 0:
                    parts.append(f'<rect x="{_x(i, n) - band * 0.4:.1f}" y="{y:.1f}" width="{band * 0.8:.1f}" '
                                 f'height="{h:.1f}" fill="{colour.get(name, PALETTE[-1])}"><title>{_e(r["windowStart"])} '
                                 f'{_e(name)}: {share:.1%}</title></rect>')
                y += h
        legend = "".join(f'<span class="key"><i style="background:{colour[k]}"></i>{_e(k)}</span>' for k in names)
        return "".join(parts) + "</svg>" + f'<div class="legend">{legend}</div>'
    nums = [(i, r["numeric"]) for i, r in enumerate(records) if r["numeric"]]
    if nums:
        lo = min(m["mean"] - m["std"] for _, m in nums)
        hi = max(m["mean"] + m["std"] for _, m in nums)
        span = (hi - lo) or 1.0

        def y(v: float) -> float:
            return 4 + (MINI_H - 8) * (1 - (v - lo) / span)

        upper = [f"{_x(i, n):.1f},{y(m['mean'] + m['std']):.1f}" for i, m in nums]
        lower = [f"{_x(i, n):.1f},{y(m['mean'] - m['std']):.1f}" for i, m in reversed(nums)]
        parts.append(f'<polygon points="{" ".join(upper + lower)}" fill="#bfdbfe" opacity="0.7"/>')
        means = " ".join(f"{_x(i, n):.1f},{y(m['mean']):.1f}" for i, m in nums)
        parts.append(f'<polyline points="{means}" fill="none" stroke="#1d4ed8" stroke-width="2"/>')
        for i, m in nums:
            parts.append(f'<circle cx="{_x(i, n):.1f}" cy="{y(m["mean"]):.1f}" r="2" fill="#1d4ed8"><title>'
                         f'{_e(records[i]["windowStart"])} mean {m["mean"]} ± {m["std"]} (n={m["count"]})</title></circle>')
        parts.append("</svg>")
        return "".join(parts) + f'<div class="legend">mean ± 1 std per window, range {lo:.4g} … {hi:.4g}</div>'
    return ""


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#f9fafb;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;color:#d1d5db}
.stats{display:flex;gap:14px;padding:16px 28px;flex-wrap:wrap}
.stat{background:white;border-radius:10px;padding:10px 16px;box-shadow:0 1px 2px #0000001a;min-width:120px}
.stat b{display:block;font-size:22px} .stat.bad b{color:#dc2626} .stat.good b{color:#059669}
.legendbar{padding:0 28px 6px;color:#374151} .legendbar span{margin-right:16px;white-space:nowrap}
.legendbar i{display:inline-block;width:18px;height:4px;vertical-align:middle;margin-right:6px;border-radius:2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px;padding:12px 28px 28px}
.card{background:white;border-radius:12px;padding:12px 16px;box-shadow:0 1px 3px #0000001f;border-top:4px solid #10b981}
.card.alert{border-top-color:#dc2626}
.card h2{font-size:16px;margin:0;display:flex;justify-content:space-between;align-items:center}
.card h2 small{color:#6b7280;font-weight:normal}
.badge{font-size:12px;padding:2px 8px;border-radius:999px;background:#d1fae5;color:#065f46}
.alert .badge{background:#fee2e2;color:#991b1b}
.meta{color:#6b7280;font-size:12px;margin:2px 0 6px}
svg{width:100%;height:auto;display:block} .tick{font-size:10px;fill:#6b7280}
.legend{font-size:11px;color:#4b5563;margin-top:2px} .key{margin-right:10px;white-space:nowrap}
.key i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse;margin:0 28px 8px;background:white;border-radius:8px;overflow:hidden}
td,th{padding:4px 12px;border-bottom:1px solid #e5e7eb;text-align:left;font-size:13px} th{background:#f9fafb}
"""


def render_report(records: list[dict[str, Any]], title: str) -> str:
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_key[(r["category"], r["attribute"])].append(r)
    for rows in by_key.values():
        rows.sort(key=lambda r: r["windowStart"])
    keys = sorted(by_key, key=lambda k: (not any(r["alerts"] for r in by_key[k]), k))
    alerts = [r for r in records if r["alerts"]]
    starts = sorted({r["windowStart"] for r in records})
    span = f"{starts[0]} → {max(r['windowEnd'] for r in records)}" if starts else "no windows"
    stats = [
        ("windows", len(starts), ""), ("attributes", len(by_key), ""),
        ("alerts", len(alerts), "bad" if alerts else "good"),
        ("rows", sum(r["count"] for r in records), ""), ("late rows", sum(r["late"] for r in records), ""),
    ]
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
           f"<style>{CSS}</style></head><body>",
           f"<header><h1>{_e(title)}</h1><p>{_e(span)} · scores are drawn as a multiple of their threshold: "
           f"above the dashed red line (1×) is an alert</p></header>",
           '<div class="stats">' + "".join(f'<div class="stat {c}"><b>{v:,}</b>{_e(k)}</div>' for k, v, c in stats) + "</div>",
           '<div class="legendbar">' + "".join(f'<span><i style="background:{c}"></i>{_e(label)}</span>' for _, label, c in SERIES)
           + '<span><i style="background:#fee2e2;height:10px"></i>alert window</span></div>']
    if alerts:
        out.append("<table><tr><th>window</th><th>attribute</th><th>alerts</th><th>scores</th></tr>")
        for r in alerts[:50]:
            scores = ", ".join(f"{k} {v}" for k, v in r["scores"].items() if v is not None)
            out.append(f"<tr><td>{_e(r['windowStart'])}</td><td>{_e(r['category'])} / {_e(r['attribute'])}</td>"
                       f"<td>{_e(', '.join(r['alerts']))}</td><td>{_e(scores)}</td></tr>")
        out.append("</table>")
    out.append('<div class="grid">')
    for category, attribute in keys:
        rows = by_key[(category, attribute)]
        n_alerts = sum(1 for r in rows if r["alerts"])
        last = rows[-1]
        badge = f"{n_alerts} alert window{'s' if n_alerts != 1 else ''}" if n_alerts else "stable"
        out.append(
            f'<section class="card{" alert" if n_alerts else ""}"><h2><span>{_e(attribute)} <small>{_e(category)}</small></span>'
            f'<span class="badge">{badge}</span></h2>'
            f'<div class="meta">{len(rows)} windows · last: {last["count"]:,} rows, null rate {last["nullRate"]:.1%}, '
            f'mean confidence {last["meanConfidence"]}, reference {_e(last["reference"] or "none yet")}</div>'
            + _score_chart(rows) + _mini_chart(rows) + "</section>")
    out.append("</div></body></html>\n")
    return "".join(out)

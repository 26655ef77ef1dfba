"""The HTML page of `ctxsync validate`: GE's verdict per expectation, with failing values and lines."""
from __future__ import annotations

import html
from collections import Counter
from typing import Any

from ctxsync.quality import ExpectationResult

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}
header{background:#111827;color:#f9fafb;padding:18px 28px} header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#d1d5db} header code{background:#374151;color:#f9fafb} main{padding:16px 28px}
.stats{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:16px}
.stat{background:white;border-radius:10px;padding:10px 16px;box-shadow:0 1px 2px #0000001a;min-width:130px}
.stat b{display:block;font-size:22px} .bad b{color:#dc2626} .good b{color:#059669}
table{border-collapse:collapse;width:100%;background:white;border-radius:10px;overflow:hidden;box-shadow:0 1px 2px #0000001a}
th,td{padding:7px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top;font-size:13px}
th{background:#f9fafb} tr.fail td:first-child{border-left:4px solid #dc2626} tr.pass td:first-child{border-left:4px solid #10b981}
code{background:#f3f4f6;padding:1px 4px;border-radius:4px;font-size:12px}
.bar{height:8px;background:#e5e7eb;border-radius:4px;width:120px;display:inline-block;vertical-align:middle}
.bar i{display:block;height:8px;background:#dc2626;border-radius:4px}
.ok{color:#059669;font-weight:600} .ko{color:#dc2626;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_validation(
    source: str, suite_name: str, results: list[ExpectationResult], rows: int, lines: int,
    unparseable: list[str], origins: list[str], fast_agrees: bool,
) -> str:
    failed = [r for r in results if not r.success]
    bad_lines = sorted({origins[i] for r in failed for i in r.unexpected_rows}, key=lambda o: int(o.rsplit(":", 1)[1]))
    stats = [
        ("lines read", lines, ""), ("rows (event × attribute)", rows, ""),
        ("expectations failed", f"{len(failed)} / {len(results)}", "bad" if failed else "good"),
        ("events failing", len(bad_lines), "bad" if bad_lines else "good"),
        ("lines not a JSON object", len(unparseable), "bad" if unparseable else "good"),
    ]
    out = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Validation – {_e(source)}</title>'
           f"<style>{CSS}</style></head><body>",
           f"<header><h1>Validation of {_e(source)}</h1><p>suite <code>{_e(suite_name)}</code>, run with Great "
           f"Expectations · compiled fast path agrees with GE on every row: "
           f'<b class="{"ok" if fast_agrees else "ko"}">{"yes" if fast_agrees else "NO"}</b></p></header><main>',
           '<div class="stats">' + "".join(f'<div class="stat {c}"><b>{_e(v)}</b>{_e(k)}</div>' for k, v, c in stats) + "</div>",
           "<table><tr><th>expectation (dead-letter reason)</th><th>arguments</th><th>unexpected</th>"
           "<th>sample values</th><th>where</th></tr>"]
    for r in sorted(results, key=lambda r: (r.success, -len(r.unexpected_rows), r.name)):
        share = len(r.unexpected_rows) / r.element_count if r.element_count else 0.0
        args = ", ".join(f"{k}={v!r}" for k, v in r.kwargs.items() if k != "column")
        counts = Counter(repr(v) for v in r.unexpected_values)
        values = ", ".join(f"{v} ×{n}" if n > 1 else v for v, n in counts.most_common(8))
        lines_hit = list(dict.fromkeys(origins[i] for i in r.unexpected_rows))
        where = ", ".join(lines_hit[:6]) + (f" … ({len(lines_hit)} lines)" if len(lines_hit) > 6 else "")
        status = "" if r.success else f'<span class="bar"><i style="width:{max(share, 0.02):.0%}"></i></span> '
        out.append(
            f'<tr class="{"pass" if r.success else "fail"}"><td><code>{_e(r.name)}</code></td><td>{_e(args)}</td>'
            f"<td>{status}{len(r.unexpected_rows):,} ({share:.2%})</td><td>{_e(values)}</td><td>{_e(where)}</td></tr>")
    out.append("</table>")
    if unparseable:
        out.append(f"<h3>Lines that are not a JSON object ({len(unparseable)}; the stream dead-letters them before "
                   f"expectations run)</h3><p>{_e(', '.join(unparseable[:50]))}</p>")
    out.append("</main></body></html>\n")
    return "".join(out)

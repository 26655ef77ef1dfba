"""`ctxsync drift-report`: draw a drift.jsonl as one self-contained HTML page."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ctxsync.drift_report import render_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift-report", help="draw drift.jsonl (from the context-drift job) as an HTML page",
        description="Write one self-contained HTML page (inline SVG, works offline) with a chart per "
                    "attribute: drift scores over time as multiples of their thresholds, alert windows "
                    "shaded, and the distribution per window. Example:\n"
                    "  ctxsync run context-drift --input events.jsonl --out out/drift\n"
                    "  ctxsync drift-report out/drift/drift.jsonl --html out/drift.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("drift", type=Path, metavar="DRIFT.jsonl", help="drift records written by context-drift")
    p.add_argument("--html", type=Path, required=True, help="output HTML file (parent directories are created)")
    p.add_argument("--title", default=None, help="page title (default: Context drift – <input file>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        lines = args.drift.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        print(f"ctxsync drift-report: cannot read {args.drift}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        records = [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        print(f"ctxsync drift-report: {args.drift} is not JSON Lines: {exc}", file=sys.stderr)
        return 2
    if records and "scores" not in records[0]:
        print(f"ctxsync drift-report: {args.drift} does not hold drift records (no 'scores')", file=sys.stderr)
        return 2
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(render_report(records, args.title or f"Context drift – {args.drift}"), encoding="utf-8")
    alerts = sum(1 for r in records if r["alerts"])
    print(f"{len(records)} window records, {alerts} with alerts -> {args.html}")
    return 0

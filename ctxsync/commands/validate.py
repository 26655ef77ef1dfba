"""`ctxsync validate`: run an expectation suite with Great Expectations over a file, as one batch."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from ctxsync.errors import RuntimeFailure, UsageError, check_input_file, check_writable_file
from ctxsync.progress import Progress
from ctxsync.quality import run_ge
from ctxsync.validation_report import render_validation
from pipelines.reference import read_lines
from transforms.expectations import compile_suite, failures, flatten, load_suite_dict

DESCRIPTION = """\
Validate a JSON Lines file of context events against a Great Expectations suite (the same suite the
stream enforces when the job sets `expectations: <suite>`). Each event becomes one row per attribute
update; GE validates all rows as one pandas batch and the report lists every failing expectation with
its unexpected values and file:line. Suites: schemas/expectations/<name>.json (GE 1.x suite JSON).

example:
  ctxsync validate sample_data/context_events.jsonl --report out/validation.html
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="run a GE expectation suite over a file and write an HTML report",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, metavar="FILE.jsonl")
    p.add_argument("--suite", default="context_events", help="suite name or path (default: context_events)")
    p.add_argument("--report", type=Path, required=True, help="HTML report to write, e.g. out/validation.html")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any expectation fails, or when no line holds a JSON object to validate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_input_file(args.input)
    try:
        suite_dict = load_suite_dict(args.suite)
        compiled = compile_suite(suite_dict)
    except ValueError as exc:
        raise UsageError(str(exc), "name a suite in schemas/expectations/ or give a suite file") from exc
    check_writable_file(args.report, "report")
    progress = Progress("validate")
    now = int(time.time() * 1000)
    rows, origins, unparseable, lines = [], [], [], 0
    for number, raw in read_lines(args.input):
        lines += 1
        origin = f"{args.input}:{number}"
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            unparseable.append(origin)
            continue
        if not isinstance(doc, dict):
            unparseable.append(origin)
            continue
        for row in flatten(doc, now, compiled):
            rows.append(row)
            origins.append(origin)
    progress.note(f"{len(rows):,} rows from {lines:,} lines; running Great Expectations (import takes a few s)")
    results = run_ge(suite_dict, compiled, rows)
    fast = {c.name: [] for c in compiled.checks}
    for index, row in enumerate(rows):
        for check in failures(row, compiled):
            fast[check.name].append(index)
    agrees = all(r.unexpected_rows == fast[r.name] for r in results)
    args.report.write_text(render_validation(
        str(args.input), compiled.name, results, len(rows), lines, unparseable, origins, agrees), encoding="utf-8")
    failed = [r for r in results if not r.success]
    progress.done(f"{len(failed)} of {len(results)} expectations failed -> {args.report}")
    for r in failed:
        print(f"  {r.name}: {len(r.unexpected_rows)} unexpected")
    if not agrees:
        raise RuntimeFailure("the compiled fast path disagrees with GE on this file", "a bug: please report it")
    if args.strict and not rows:
        raise RuntimeFailure(f"nothing was validated: none of the {lines:,} lines of {args.input} holds a JSON "
                             f"object with updates", "is it a JSON Lines file of context events?")
    return 1 if failed and args.strict else 0

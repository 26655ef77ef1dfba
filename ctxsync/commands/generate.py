"""`ctxsync generate`: write a realistic synthetic context-event stream."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctxsync.errors import check_writable_file
from ctxsync.generate import GeneratorOptions, generate_lines, parse_drift
from ctxsync.progress import Progress


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    d = GeneratorOptions()
    p = sub.add_parser(
        "generate", help="write a synthetic context-event stream (JSON Lines)",
        description="Write a realistic synthetic stream: several models and users, with duplicates, late "
                    "events, conflicts and invalid records at the rates given. Same seed, same bytes.\n"
                    "Rates are shares of the lines, 0..1.\n\nexamples:\n"
                    "  ctxsync generate events.jsonl                                # 10,000 events, 200 users\n"
                    "  ctxsync generate --events 1000000 --users 10000 --seed 7 big.jsonl\n"
                    "  ctxsync generate --invalid-rate 0.2 --duplicate-rate 0 dirty.jsonl\n"
                    "  ctxsync generate --events 50000 --drift segment@+2h drifted.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, metavar="OUT.jsonl")
    p.add_argument("--events", type=int, default=d.events, help=f"number of lines (default {d.events})")
    p.add_argument("--users", type=int, default=d.users, help=f"distinct userIds (default {d.users})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--duplicate-rate", type=_rate, default=d.duplicate_rate, help=f"re-delivered events (default {d.duplicate_rate})")
    p.add_argument("--late-rate", type=_rate, default=d.late_rate, help=f"events older than their user's latest (default {d.late_rate})")
    p.add_argument("--conflict-rate", type=_rate, default=d.conflict_rate, help=f"wrong previous/expectedVersion (default {d.conflict_rate})")
    p.add_argument("--invalid-rate", type=_rate, default=d.invalid_rate, help=f"records that break a contract rule (default {d.invalid_rate})")
    p.add_argument("--delete-rate", type=_rate, default=d.delete_rate, help=f"context.deleted events (default {d.delete_rate})")
    p.add_argument("--drift", action="append", default=[], metavar="ATTR@T",
                   help="shift ATTR's distribution from event time T (ISO-8601 or an offset like +2h from "
                        "the stream start); repeatable. E.g. --drift segment@+2h --drift creditScore@+3h")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.events < 0 or args.users < 1:
        print("ctxsync generate: --events must be >= 0 and --users >= 1", file=sys.stderr)
        return 2
    try:
        drift = tuple(parse_drift(spec) for spec in args.drift)
    except ValueError as exc:
        print(f"ctxsync generate: {exc}", file=sys.stderr)
        return 2
    options = GeneratorOptions(
        events=args.events, users=args.users, seed=args.seed, duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate, conflict_rate=args.conflict_rate, invalid_rate=args.invalid_rate,
        delete_rate=args.delete_rate, drift=drift,
    )
    check_writable_file(args.out)
    progress = Progress("generate", total=args.events)
    with args.out.open("wb") as handle:
        for n, line in enumerate(generate_lines(options), start=1):
            handle.write(line + b"\n")
            if n % 10_000 == 0:
                progress.update(n)
    progress.done(f"{args.events} events -> {args.out}")
    return 0

"""A long fuzz run of the context-sync logic: hostile streams (tests/fuzz_events.py) through the reference
runner, every promise of tests/test_fuzz.py checked on each. Not a test: the suite runs a fixed few hundred
examples; this searches further, with a new seed each run unless you give one.

    .venv/bin/python bench/fuzz.py                        # 2,000 streams, a random seed (printed)
    .venv/bin/python bench/fuzz.py --minutes 30           # as many streams as 30 minutes allow
    .venv/bin/python bench/fuzz.py --seed 1234 -n 500     # repeat a run exactly (same hypothesis version)
    .venv/bin/python bench/fuzz.py --mutated              # payloads that are mutated bytes only

What it checks per stream: nothing raises; each record ends as exactly one of accepted, duplicate or
dead letter; every output line is JSON that round-trips; each dead letter holds the input's exact bytes,
its origin, a short reason code and a bounded detail; every accepted event has an Avro form that reads back
unchanged; output timestamps read back.

On a failure, hypothesis shrinks the stream to a minimal one; it is printed (each payload's bytes), written
to --out as a JSON Lines file you can feed to `ctxsync run context-sync --input`, and the run exits 1.
Turn the minimal payload into a named case in tests/fuzz_events.py (hand_cases) when you fix it.

Prints: streams and records run, accepted / duplicates / dead letters, the dead-letter reasons, the
largest output record (a Kafka record the job would write: brokers refuse more than message.max.bytes,
1 MiB by default), the rate.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed as with_seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipelines.reference import run_reference  # noqa: E402
from tests import fuzz_events as fz  # noqa: E402
from tests.helpers import NOW_MS, SETTINGS  # noqa: E402
from tests.test_fuzz import ORIGIN, check_outputs  # noqa: E402

CHUNK = 100  # streams per hypothesis run: the time limit is checked between runs


class Totals:
    """What the run has seen so far."""

    def __init__(self) -> None:
        self.streams = self.records = 0
        self.outcomes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.largest = (0, "")
        self.failing: list[bytes] | None = None


def check(records: list[bytes], totals: Totals) -> None:
    """Run one stream and check it; remembers the stream if it fails (the last one kept is hypothesis'
    minimal example: it replays that one last)."""
    try:
        lines = list(run_reference(list(enumerate(records, 1)), ORIGIN, SETTINGS, NOW_MS))
        counts = check_outputs(records, lines)
    except BaseException:
        totals.failing = records
        raise
    totals.streams += 1
    totals.records += len(records)
    totals.outcomes.update(counts)
    for line in lines:
        text = line.split("\t", 2)[2]
        if len(text) > totals.largest[0]:
            totals.largest = (len(text.encode()), line[0])
        if line[0] == "D":
            totals.reasons[text[text.index('"reason":"') + 10:].split('"', 1)[0]] += 1


def run(strategy: st.SearchStrategy[list[bytes]], examples: int, seconds: float | None, seed: int,
        totals: Totals) -> BaseException | None:
    """Up to `examples` streams in chunks, stopping when `seconds` have passed; the failure, if any."""
    started = time.monotonic()
    chunk = 0
    while totals.streams < examples and (seconds is None or time.monotonic() - started < seconds):
        @settings(max_examples=min(CHUNK, examples - totals.streams), database=None, deadline=None,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(records: list[bytes]) -> None:
            check(records, totals)

        try:
            # a seed per chunk: chunks draw different streams, the run as a whole repeats with --seed
            with_seed(seed * 1_000_003 + chunk)(one)()
        except BaseException as exc:  # noqa: BLE001 (a failure of any kind is the finding)
            if isinstance(exc, KeyboardInterrupt):
                print("interrupted", file=sys.stderr)
                return None
            return exc
        chunk += 1
    return None


def report(totals: Totals, seconds: float) -> None:
    print(f"streams: {totals.streams:,}  records: {totals.records:,}  in {seconds:.1f} s "
          f"({totals.records / max(seconds, 1e-9):,.0f} records/s)")
    print("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(totals.outcomes.items())))
    print("dead-letter reasons: " + ", ".join(f"{k} {v:,}" for k, v in totals.reasons.most_common()))
    size, kind = totals.largest
    print(f"largest output record: {size:,} bytes (kind {kind})"
          + ("  <- over 1 MiB, Kafka's default message.max.bytes" if size > 1 << 20 else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--examples", type=int, default=2000, help="streams to run at most (default 2000)")
    parser.add_argument("--minutes", type=float, help="stop after this long (checked every 100 streams)")
    parser.add_argument("--seed", type=int, help="repeat a run: the seed a previous run printed")
    parser.add_argument("--max-records", type=int, default=12, help="payloads per stream at most (default 12)")
    parser.add_argument("--mutated", action="store_true", help="mutated bytes of valid events only")
    parser.add_argument("--out", type=Path, default=Path("fuzz-failure.jsonl"),
                        help="where a failing stream's payloads are written, one per line")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed} (repeat with --seed {seed})")
    if args.mutated:
        strategy = st.lists(fz.event_lines().flatmap(fz.mutated), min_size=1, max_size=args.max_records)
    else:
        strategy = fz.record_streams(max_records=args.max_records)
    totals = Totals()
    started = time.monotonic()
    failure = run(strategy, args.examples, args.minutes * 60 if args.minutes else None, seed, totals)
    report(totals, time.monotonic() - started)
    if failure is None:
        print("no failure")
        return 0
    print(f"\nFAILED: {type(failure).__name__}: {str(failure).splitlines()[0][:300] if str(failure) else ''}")
    if totals.failing is not None:
        print(f"minimal failing stream ({len(totals.failing)} payloads):")
        for n, payload in enumerate(totals.failing, 1):
            text = repr(payload)
            print(f"  {n}: {text[:500]}{'...' if len(text) > 500 else ''} ({len(payload):,} bytes)")
        args.out.write_bytes(b"".join(fz.as_file_lines([p])[0] + b"\n" for p in totals.failing))
        print(f"written to {args.out} (CR/LF inside a payload became spaces)")
    return 1


if __name__ == "__main__":
    sys.exit(main())

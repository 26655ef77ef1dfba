"""What the compiled expectation suite costs on the hot path: ingest() with and without it.

    python bench/expectations_overhead.py --events 50000
"""
from __future__ import annotations

import argparse
import time

from ctxsync.generate import GeneratorOptions, generate_lines
from transforms.expectations import load_compiled
from transforms.ingest import ingest
from transforms.settings import SyncSettings

NOW = 1_795_600_000_000


def rate(lines: list[bytes], settings: SyncSettings) -> float:
    start = time.perf_counter()
    for seq, raw in enumerate(lines, 1):
        ingest(raw, seq, "bench", NOW, settings)
    return len(lines) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--suite", default="context_events")
    args = parser.parse_args()
    lines = list(generate_lines(GeneratorOptions(events=args.events)))
    off, on = SyncSettings(), SyncSettings(expectations=load_compiled(args.suite))
    rate(lines[:2000], on)  # warm caches
    base, checked = max(rate(lines, off) for _ in range(3)), max(rate(lines, on) for _ in range(3))
    print(f"ingest without suite: {base:,.0f} ev/s   with {args.suite}: {checked:,.0f} ev/s   "
          f"cost {1e6 / checked - 1e6 / base:.1f} us/event")


if __name__ == "__main__":
    main()

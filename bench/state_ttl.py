"""State size under a state TTL on a stream of ever-new users (issue 22 item 6), on the reference runner.

Every event comes from a user never seen before, one event a second of event time. Without `state_ttl`
every user stays in state for good, so the state grows with the stream; with it, a user leaves between 2
and 2.25 TTLs after their last event (transforms/state_ttl.py), so the state levels off. Prints the users
held (and their marshalled size) at ten points of the stream, with and without the TTL, and the run time.

    python -m bench.state_ttl [--events 60000] [--ttl 1h]

Why the reference runner: it keeps state in a dict that the bench can watch; the Flink operator runs the
same rule and sweep per bucket (pipelines/flink/sync.py), and its `state_users` metric counts its cache,
which is bounded anyway, not its MapState.
"""
from __future__ import annotations

import argparse
import json
import marshal
import time
from collections.abc import Iterator
from dataclasses import replace

from ctxsync.config import duration_ms
from pipelines.reference import run_reference
from transforms.settings import SyncSettings
from transforms.sync import UserState
from transforms.timestamps import format_iso_ms, parse_iso_ms

BASE_MS = parse_iso_ms("2026-11-01T00:00:00.000Z")


def new_users(count: int) -> Iterator[tuple[int, bytes]]:
    """(seq, raw) of `count` events, each of a new user, one second apart."""
    for n in range(count):
        yield n + 1, json.dumps({
            "eventId": f"e{n}", "timestamp": format_iso_ms(BASE_MS + n * 1000), "eventType": "context.updated",
            "source": {"modelId": "bench", "instanceId": "bench-0"},
            "contextDelta": {"userId": f"user-{n}", "updates": {"segment": {"current": "a", "confidence": 1}}},
        }).encode()


def state_bytes(states: dict[str, UserState]) -> int:
    return sum(len(marshal.dumps((s["aggs"], s["dedup"]["seen"]))) for s in states.values())


def run(events: int, settings: SyncSettings) -> tuple[list[tuple[int, int, int]], float]:
    """(events processed, users held, state bytes) at every tenth of the stream, and the seconds taken."""
    states: dict[str, UserState] = {}
    points, every, processed = [], max(events // 10, 1), 0
    now_ms = BASE_MS + events * 1000 + 3_600_000
    started = time.perf_counter()
    for line in run_reference(new_users(events), "bench", settings, now_ms, states):
        if line[0] == "H":
            processed += 1
            if processed % every == 0:
                points.append((processed, len(states), state_bytes(states)))
    return points, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--ttl", default="1h", help="state_ttl, a duration (default 1h; events are 1 s apart)")
    args = parser.parse_args()
    ttl_ms = duration_ms(args.ttl)
    without, seconds_without = run(args.events, SyncSettings())
    with_ttl, seconds_with = run(args.events, replace(SyncSettings(), state_ttl_ms=ttl_ms))
    print(f"state_ttl bench: {args.events:,} events, each of a new user, 1 s apart; reference runner")
    print(f"{'events':>8} {'event time':>11} | {'users (no TTL)':>14} {'KiB':>7} | "
          f"{'users (TTL ' + args.ttl + ')':>14} {'KiB':>7}")
    for (n, users, size), (_, users_ttl, size_ttl) in zip(without, with_ttl):
        print(f"{n:>8,} {n / 3600:>10.2f}h | {users:>14,} {size / 1024:>7,.0f} | {users_ttl:>14,} {size_ttl / 1024:>7,.0f}")
    print(f"time: {seconds_without:.1f} s without, {seconds_with:.1f} s with the TTL "
          f"(bound: users of the last {2.25 * ttl_ms / 1000:,.0f} s of event time)")


if __name__ == "__main__":
    main()

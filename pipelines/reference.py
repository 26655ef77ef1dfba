"""The plain-Python runner: transforms/ in a loop. It is the parity oracle for the engine runners and
the `limit` baseline of the benchmark (what the logic costs without any engine)."""
from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.file_outputs import OutputCollector, Summary
from transforms.ingest import ingest, is_blank
from transforms.model import Event
from transforms.records import HISTORY
from transforms.settings import SyncSettings
from transforms.state_ttl import Sweeper, reclaimable, user_clock
from transforms.sync import UserState, sync_step

if TYPE_CHECKING:
    from pipelines.runners import RunRequest


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) per non-blank line, split like Java's readLine (\\n, \\r, \\r\\n)."""
    data = path.read_bytes()
    for number, raw in enumerate(data.splitlines(), start=1):
        if not is_blank(raw):
            yield number, raw


def ingest_all(
    records: Iterable[tuple[int, bytes]], origin_prefix: str, settings: SyncSettings,
    now_ms: int | None = None,
) -> Iterator[tuple[str, Event | str]]:
    """ingest() over (seq, raw) records in order, with the wall clock unless `now_ms` pins it."""
    for seq, raw in records:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        yield ingest(raw, seq, f"{origin_prefix}:{seq}", now, settings)


def run_reference(
    records: Iterable[tuple[int, bytes]], origin_prefix: str, settings: SyncSettings,
    now_ms: int | None = None, states: dict[str, UserState] | None = None,
) -> Iterator[str]:
    """Tagged output lines for (seq, raw) records processed in order, exactly as an engine would.

    `states` (userId -> state) is the runner's memory; pass a dict to watch it (bench/state_ttl.py)."""
    states = {} if states is None else states
    sweeper = None if settings.state_ttl_ms is None else Sweeper(settings.state_ttl_ms)
    for key, value in ingest_all(records, origin_prefix, settings, now_ms):
        if isinstance(value, str):
            yield value
            continue
        state, outputs = sync_step(states.get(key), value, settings)
        states[key] = state
        yield from outputs
        if sweeper is not None and outputs[-1][0] == HISTORY:
            sweeper.advance(value.ts)
            horizon = sweeper.due(0)
            if horizon is not None:
                for user in [u for u, s in states.items() if reclaimable(user_clock(s), horizon)]:
                    del states[user]


def run_embedded(request: "RunRequest") -> Summary:
    """Embedded profile on the reference runner: the contract's files from one plain-Python pass."""
    settings = request.job.settings.to_settings()
    collector = OutputCollector()
    gc.freeze()  # setup done: the garbage collector need not walk the loaded modules again and again
    for n, line in enumerate(run_reference(read_lines(request.input_path), str(request.input_path), settings), 1):
        collector.add(line)
        if n % 10_000 == 0:
            request.progress.update(n, "output records")
    return collector.write(request.out_dir)

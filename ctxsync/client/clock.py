"""Stamps that keep one process's writes in publish order.

The job settles writes to one attribute by the larger `(timestamp, eventId)` (contract section 4.3). With
millisecond timestamps and random eventIds, two writes of one client in the same millisecond (an
`update()` then a `publish()`) were ordered by chance: the later one could lose as stale. So events are
stamped here, under a lock, with a timestamp that never goes back (a wall clock stepped back holds still
instead) and an eventId that sorts after every earlier one of the same millisecond: a UUIDv7 (RFC 9562)
whose 12 bits after the version are a per-millisecond counter (method 1), rendered as 32 hex digits.
Timestamps never run ahead of the wall clock except past 4,096 events in one millisecond (the next one
takes the next millisecond) or to put an explicit eventId after an earlier write of the same millisecond.
The order holds within one process (every client of it shares `PROCESS_CLOCK`); writes of different
processes in one millisecond are still settled by their ids, as the contract says.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable

_COUNTER_MAX = 0xFFF


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def uuid7_hex(ms: int, counter: int, random62: int) -> str:
    """48-bit unix ms | version 7 | 12-bit counter | variant 10 | 62 random bits, as 32 hex digits: ids of
    one millisecond sort by their counter."""
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (counter & _COUNTER_MAX) << 64 | 0b10 << 62 | random62
    return uuid.UUID(int=value).hex


class EventClock:
    """Hands out `(timestamp ms, eventId)` pairs, each greater than the one before (thread-safe)."""

    def __init__(self, wall: Callable[[], int] = wall_ms,
                 random62: Callable[[], int] = lambda: secrets.randbits(62)) -> None:
        self._wall, self._random62 = wall, random62
        self._lock = threading.Lock()
        self._last: tuple[int, str] = (-1, "")
        self._counter = 0

    def stamp(self, event_id: str | None = None) -> tuple[int, str]:
        """The next stamp; `event_id` keeps a caller's id (its timestamp then moves on if the id would sort
        before the previous one of the same millisecond)."""
        with self._lock:
            last_ms, last_id = self._last
            ms = max(self._wall(), last_ms)
            counter = self._counter + 1 if ms == last_ms else 0
            if counter > _COUNTER_MAX:
                ms, counter = ms + 1, 0
            stamped = (ms, event_id or uuid7_hex(ms, counter, self._random62()))
            if stamped <= self._last:  # an explicit id that sorts first: the next millisecond
                ms, counter = last_ms + 1, 0
                stamped = (ms, event_id or uuid7_hex(ms, counter, self._random62()))
            self._last, self._counter = stamped, counter
            return stamped


PROCESS_CLOCK = EventClock()

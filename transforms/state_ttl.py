"""State lifecycle (`settings.state_ttl`): a user idle longer than the TTL, in event time, leaves state.

Why event time on the user's own clock: the contract wants the same outputs from every engine for the same
input, and the only clock all engines share for one user is that user's own event stream (arrival order per
user is fixed; batches, buckets, watermarks and wall clocks are not). So what outputs depend on is decided
on the user's events alone (`expired`, called by transforms/sync.py): an event more than the TTL after the
user's latest event time (its dedup clock) finds the user's state gone and starts the user afresh (version
1, no remembered eventIds). No timer and no wall clock take part.

A user who never comes back cannot be judged by their own events; engines reclaim their memory with a sweep
(`Sweeper`) once the newest event time the operator has accepted is more than twice the TTL past the user's
clock. Until then a late event still finds the user's state, so the sweep changes no output unless an event
comes more than the TTL behind the newest event time already processed and within the TTL of its user's
clock: that event may find its user kept or reclaimed, depending on the engine's progress.
"""
from __future__ import annotations

from typing import Any

UserState = dict[str, Any]
SWEEPS_PER_TTL = 4  # an operator sweeps each part of its state every TTL/4 of event time


def user_clock(state: UserState) -> int | None:
    """The user's latest accepted event time (epoch ms), the clock both dedup and the TTL run on."""
    clock: int | None = state["dedup"]["clock"]
    return clock


def expired(state: UserState, ts: int, ttl_ms: int) -> bool:
    """Whether an event at `ts` comes after its user was idle longer than the TTL (equal is not longer)."""
    clock = user_clock(state)
    return clock is not None and ts - clock > ttl_ms


def reclaimable(clock: int | None, horizon: int) -> bool:
    """Whether a user with this clock may leave memory at a sweep with this horizon (`Sweeper.due`)."""
    return clock is not None and clock < horizon


class Sweeper:
    """When an operator sweeps idle users out of a part of its state (a Flink bucket, a runner's dict).

    The operator's clock is the newest event time it accepted; a part is due once that clock has moved
    TTL/SWEEPS_PER_TTL past the part's last sweep (its first sight counts as one), so a user leaves memory
    between 2 and 2.25 TTLs after their clock. Kept in memory only: after a restore each part's first sweep
    comes one interval later, which delays reclaiming and changes no output.
    """

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.interval = max(ttl_ms // SWEEPS_PER_TTL, 1)
        self.clock: int | None = None
        self.last: dict[int, int] = {}

    def advance(self, ts: int) -> None:
        if self.clock is None or ts > self.clock:
            self.clock = ts

    def due(self, part: int) -> int | None:
        """The horizon to sweep `part` with (users whose clock is older leave), or None if not due yet."""
        clock = self.clock
        if clock is None:
            return None
        last = self.last.get(part)
        if last is None or clock - last < self.interval:
            if last is None:
                self.last[part] = clock
            return None
        self.last[part] = clock
        return clock - 2 * self.ttl_ms

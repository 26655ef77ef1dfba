"""The context-sync graph on PyFlink: two Python crossings per event, state read only on a cache miss,
two small state writes per accepted event.

    source -> IngestLines (parse+validate+key, chained with the source, parallelism 1: keeps line order)
           -> key_by(userId) -> SyncByUser (dedup, split, ordering, conflicts, views)
           -> tagged output lines (one string per event)

Events cross the shuffle in their marshal wire form (transforms.model.event_to_wire).
"""
from __future__ import annotations

import gc
import marshal
import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, FlatMapFunction, KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from transforms.ingest import ingest, is_blank
from transforms.model import Event, event_from_wire, event_to_wire
from transforms.settings import SyncSettings
from transforms.sync import UserState, sync_step


class IngestLines(FlatMapFunction):
    """Numbers the lines of one file (line numbers order the outputs) and parses each into (key, value).

    Lines arrive decoded as ISO-8859-1, which maps bytes 1:1, so `.encode('latin-1')` gives back the
    original bytes and non-UTF-8 input reaches the dead-letter output intact.
    """

    def __init__(self, settings: SyncSettings, origin: str) -> None:
        self.settings = settings
        self.origin = origin
        self.line = 0

    def flat_map(self, value: str):
        self.line += 1
        raw = value.encode("latin-1")
        if not is_blank(raw):
            yield to_keyed_record(
                ingest(raw, self.line, f"{self.origin}:{self.line}", int(time.time() * 1000), self.settings))


def to_keyed_record(record: tuple[str, Event | str]) -> tuple[str, bytes | str]:
    """(userId, event wire bytes) or (dead-letter key, dead-letter line): what SyncByUser receives."""
    key, value = record
    return (key, value) if isinstance(value, str) else (key, event_to_wire(value))


class SyncByUser(KeyedProcessFunction):
    """Holds transforms.sync state per user in Flink keyed state and runs `sync_step`.

    The state is split by how it changes: the dedup id set grows by one id per accepted event, so it
    lives in a MapState (one put, instead of re-serializing every remembered id); everything else is
    small and is one marshalled ValueState blob. A Python-side read cache skips state reads for recent
    users: only this operator instance touches its keys and a restore creates a fresh instance, so the
    cache cannot go stale.
    """

    def __init__(self, settings: SyncSettings, cache_size: int = 10_000) -> None:
        self.settings = settings
        self.cache_size = cache_size
        self.cache: dict[str, UserState] = {}
        self.blob: Any = None
        self.seen: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.blob = runtime_context.get_state(ValueStateDescriptor("user", Types.PICKLED_BYTE_ARRAY()))
        self.seen = runtime_context.get_map_state(MapStateDescriptor("seen", Types.STRING(), Types.LONG()))
        self.cache = {}
        gc.freeze()  # setup done: full collections need not walk the worker's modules (PyFlink, Beam)

    def _load(self) -> UserState | None:
        blob = self.blob.value()
        if blob is None:
            return None
        aggs, clock, limit = marshal.loads(blob)
        return {"dedup": {"seen": dict(self.seen.items()), "clock": clock, "limit": limit}, "aggs": aggs}

    def _store(self, state: UserState, event: Event, seen_before: dict[str, int]) -> None:
        dedup = state["dedup"]
        seen = dedup["seen"]
        if seen is not seen_before:  # dedup purged expired ids into a new dict
            for event_id in seen_before.keys() - seen.keys():
                self.seen.remove(event_id)
        self.seen.put(event.event_id, event.ts)
        self.blob.update(marshal.dumps((state["aggs"], dedup["clock"], dedup["limit"])))

    def process_element(self, value: tuple[str, bytes | str], ctx: KeyedProcessFunction.Context):
        key, payload = value
        if isinstance(payload, str):  # a dead-letter line: no state involved
            yield payload
            return
        event = event_from_wire(payload)
        cache = self.cache
        user_state = cache.pop(key, None)
        if user_state is None:
            user_state = self._load()
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
        seen_before = user_state["dedup"]["seen"] if user_state is not None else {}
        user_state, outputs = sync_step(user_state, event, self.settings)
        cache[key] = user_state
        if len(outputs) > 1 or outputs[0][0] != "U":  # a duplicate changes nothing
            self._store(user_state, event, seen_before)
        yield "\n".join(outputs)


def sync_stream(lines: DataStream, settings: SyncSettings, origin: str, parallelism: int,
                cache_size: int = 10_000) -> DataStream:
    """Tagged output lines (transforms.records) of context-sync over a stream of latin-1 text lines."""
    keyed = (
        lines.flat_map(IngestLines(settings, origin), output_type=Types.PICKLED_BYTE_ARRAY())
        .set_parallelism(1)
        .name("parse+validate")
        .key_by(lambda record: record[0], key_type=Types.STRING())
    )
    return (
        keyed.process(SyncByUser(settings, cache_size), output_type=Types.STRING())
        .set_parallelism(parallelism)
        .name("sync by user")
    )

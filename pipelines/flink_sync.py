"""The context-sync graph on PyFlink: two Python crossings per event, one state read (on a cache miss)
and at most one state write.

    source -> IngestLines (parse+validate+key, chained with the source, parallelism 1: keeps line order)
           -> key_by(userId) -> SyncByUser (dedup, split, ordering, conflicts, views; one ValueState blob)
           -> tagged output lines (one string per event)
"""
from __future__ import annotations

import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import DataStream, FlatMapFunction, KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from transforms.ingest import ingest, is_blank
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
            yield ingest(raw, self.line, f"{self.origin}:{self.line}", int(time.time() * 1000), self.settings)


class SyncByUser(KeyedProcessFunction):
    """Holds transforms.sync state per user in one pickled ValueState and runs `sync_step`.

    A Python-side read cache skips the state read for recently seen users: only this operator
    instance touches its keys and a restore creates a fresh instance, so the cache cannot go stale.
    """

    def __init__(self, settings: SyncSettings, cache_size: int = 10_000) -> None:
        self.settings = settings
        self.cache_size = cache_size
        self.cache: dict[str, UserState] = {}
        self.state: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor("user", Types.PICKLED_BYTE_ARRAY()))
        self.cache = {}

    def process_element(self, value: tuple[str, Any], ctx: KeyedProcessFunction.Context):
        key, payload = value
        if isinstance(payload, str):  # a dead-letter line: no state involved
            yield payload
            return
        cache = self.cache
        user_state = cache.pop(key, None)
        if user_state is None:
            user_state = self.state.value()
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
        user_state, outputs = sync_step(user_state, payload, self.settings)
        cache[key] = user_state
        if len(outputs) > 1 or outputs[0][0] != "U":  # a duplicate changes nothing
            self.state.update(user_state)
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

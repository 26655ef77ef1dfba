"""The context-sync operator on PyFlink: Python is called once per batch (one bucket of users, one window),
not once per event; the batches come from pipelines/flink/batches.py.

    batches (bucket, framed payloads) -> key_by(bucket) -> SyncBuckets (ingest + sync_step per event)
      -> one string of output lines per batch: tagged lines (embedded profile) or the Kafka form of them,
         split into Kafka records in SQL (pipelines/flink/kafka.py)

State: one MapState per bucket, userId -> marshalled (aggregates, dedup clock, purge limit, seen ids).
Each user touched by a batch is written once at the end of the batch; a read cache skips state reads
for recent users (only this operator instance touches its keys and a restore creates a fresh instance,
so the cache cannot go stale). With a state TTL, a batch's bucket is swept of idle users every TTL/4 of
event time (transforms/state_ttl.py): one pass over that bucket's MapState, no timers.
"""
from __future__ import annotations

import gc
import marshal
import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from ctxsync.io.erase_record import EraseRecord, ErasedUsers
from ctxsync.io.view_writer import JobViewWriter, Refused, ViewChanges
from pipelines.flink.batches import line_batches
from pipelines.flink.metrics import FlinkJobMetrics
from transforms.batching import Batching, bucket_of, split_batch
from transforms.control import CONTROL_PREFIX, parse_control
from transforms.erasure import erased_dead_letter, scrub_dead_letter, state_predates
from transforms.ingest import dead_letter_line, ingest, is_blank
from transforms.model import Event
from transforms.outcome import ack_nonce, event_outcome
from transforms.records import DUPLICATE, TOMBSTONE, VIEW, aggregate_key, tombstone_line, untag
from transforms.settings import SyncSettings
from transforms.state_ttl import Sweeper, reclaimable
from transforms.sync import UserState, sync_step
from transforms.tally import lags_ms, tally_lines
from transforms.validate import dead_letter

Parsed = tuple[str, Event | str]
CONTROL_TEXT = CONTROL_PREFIX.decode("latin-1")


def _state_from_blob(blob: bytes) -> UserState:
    aggs, clock, limit, seen = marshal.loads(blob)
    return {"dedup": {"seen": seen, "clock": clock, "limit": limit}, "aggs": aggs}


def _blob(state: UserState) -> bytes:
    dedup = state["dedup"]
    return marshal.dumps((state["aggs"], dedup["clock"], dedup["limit"], dedup["seen"]))


def _blob_clock(blob: bytes) -> int | None:
    clock: int | None = marshal.loads(blob)[1]
    return clock


class SyncBuckets(KeyedProcessFunction):
    """Runs `sync_step` over each batch in arrival order, keeping users' state in the bucket's MapState.

    Subclasses say how a framed payload is parsed (`parse`) and how a batch's outputs leave (`emit`), and
    whether the input may carry control records (`controls`: erase commands on the Kafka input).
    With PII protection on (settings.privacy), every output but views is protected before it leaves.
    Events of erased users from before their erase are dead-lettered without their payload, and a user's
    state from before their erase (an older savepoint) is dropped: the erase record (Redis, read again
    before each batch when it changed) and, with privacy on, the key store's marker say who
    (transforms/erasure.py).
    """

    controls = False

    def __init__(self, settings: SyncSettings, batching: Batching, cache_size: int = 10_000,
                 views: JobViewWriter | None = None) -> None:
        self.settings = settings
        self.batching = batching
        self.cache_size = cache_size
        self.views = views  # the job writes each batch's views to Redis itself (ctxsync/io/view_writer.py)
        self.cache: dict[str, UserState] = {}
        self.users: Any = None
        self.metrics: Any = None
        self.protector: Any = None
        self.sweeper: Sweeper | None = None
        self.erasures: ErasedUsers | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.users = runtime_context.get_map_state(
            MapStateDescriptor("users", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.cache = {}
        self.metrics = FlinkJobMetrics(runtime_context.get_metrics_group())
        ttl_ms = self.settings.state_ttl_ms
        self.sweeper = None if ttl_ms is None else Sweeper(ttl_ms)
        if self.settings.privacy is not None:
            from ctxsync.io.keystore import open_protector  # the key store's clients: only with privacy on

            self.protector = open_protector(self.settings.privacy)
        if self.views is not None:
            self.views.open()
            sink = self.views.sink
            self.erasures = ErasedUsers(EraseRecord(sink.client, sink.prefix))  # type: ignore[union-attr]
        gc.freeze()  # setup done: full collections need not walk the worker's modules (PyFlink, Beam)

    def parse(self, seq: int, part: int, payload: str, now_ms: int) -> Parsed | None:
        raise NotImplementedError

    def route(self, lines: list[str], ttl: int | None) -> list[str]:
        """One event's tagged output lines in the form this operator's sink takes (`ttl`: the event's)."""
        return lines

    def emit(self, outputs: list[list[str]]) -> Iterable[Any]:
        raise NotImplementedError

    def origin(self, seq: int, part: int) -> str:
        raise NotImplementedError

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        bucket, buckets = value[0], self.batching.buckets
        settings, cache, users = self.settings, self.cache, self.users
        now_ms, started = int(time.time() * 1000), time.perf_counter()
        outputs: list[list[str]] = []
        dirty: dict[str, UserState] = {}
        tallied: list[str] = []  # the batch's tagged lines, counted once at its end (transforms/tally.py)
        accepted_ms: list[int] = []  # event times of accepted events, for the lag histogram
        protector = self.protector
        changes = ViewChanges() if self.views is not None else None
        erased = self.erasures.refresh() if self.erasures is not None else None
        for seq, part, payload in split_batch(value[1]):
            if self.controls and payload.startswith(CONTROL_TEXT):
                lines = self._control(seq, part, payload, dirty)
                if changes is not None:
                    collect_views(changes, lines, None, self.origin(seq, part))
                outputs.append(self.route(lines, None))
                continue
            parsed = self.parse(seq, part, payload, now_ms)
            if parsed is None:
                continue
            key, event = parsed
            if isinstance(event, str):  # a dead-letter line: no state involved
                if erased and (scrubbed := scrub_dead_letter(event, erased.at)) is not event:
                    tallied.append(scrubbed)  # it names an erased user: kept without payload, names no one
                    outputs.append(self.route([scrubbed], None))
                    continue
                tallied.append(event)
                outputs.append(self.route(self._protect([event], None), None))
                continue
            if bucket_of(key, buckets) != bucket:
                misrouted = self._misrouted(event, payload, part)
                tallied.append(misrouted)
                outputs.append(self.route(self._protect([misrouted], None), None))
                continue
            erased_ms = self._erased_at(key, erased) if erased or protector is not None else None
            if erased_ms is not None and event.ts <= erased_ms:  # erased after it happened: not processed
                line = erased_dead_letter(event.seq, event.origin, event.ts, erased_ms)
                tallied.append(line)
                outputs.append(self.route([line], None))
                continue
            state = cache.pop(key, None)
            if state is None:
                blob = users.get(key)
                state = None if blob is None else _state_from_blob(blob)
                if len(cache) >= self.cache_size:
                    del cache[next(iter(cache))]
            if erased_ms is not None and state is not None and state_predates(state, erased_ms):
                state = None  # restored from before the erase: the user starts afresh
            state, lines = sync_step(state, event, settings)
            cache[key] = state
            tallied.extend(lines)
            if len(lines) > 1 or lines[0][0] != DUPLICATE:  # a duplicate changes nothing
                dirty[key] = state
                accepted_ms.append(event.ts)
                if changes is not None:
                    collect_views(changes, lines, event.ttl, event.origin)
            if changes is not None and (nonce := ack_nonce(event.doc)):
                changes.ack(event.model_id, nonce, event_outcome(event.event_id, lines))
            outputs.append(self.route(self._protect(lines, key), event.ttl))
            if len(outputs) >= self.batching.max_events:
                yield from self.emit(outputs)
                outputs = []
        # what a model waits for goes first; Redis runs it while the state is written, and the batch
        # ends only once Redis has it (a checkpoint after this batch covers its views)
        pending = self.views.send(changes) if changes else None
        for key, state in dirty.items():
            users.put(key, _blob(state))
        if pending is not None:
            outputs.extend(self._refused(refused) for refused in pending.wait())
        sweeper = self.sweeper
        if sweeper is not None and accepted_ms:
            sweeper.advance(max(accepted_ms))
            horizon = sweeper.due(bucket)
            if horizon is not None:
                self._reclaim(horizon)
        self.metrics.record(tally_lines(tallied), lags_ms(accepted_ms, now_ms),
                            int((time.perf_counter() - started) * 1000), len(cache))
        if outputs:
            yield from self.emit(outputs)

    def _erased_at(self, user: str, erased: ErasedUsers | None) -> int | None:
        """When the user was erased (epoch ms), by the erase record or the key store's marker; None if never."""
        at = erased.at(user) if erased else None
        if at is None and self.protector is not None:
            at = self.protector.keys.erased_at(self.protector.token(user))
        return at

    def _reclaim(self, horizon: int) -> None:
        """State TTL: the current bucket's users whose clock is behind `horizon` leave its MapState and the
        cache (transforms/state_ttl.py: no output depends on it)."""
        for user in [u for u, blob in self.users.items() if reclaimable(_blob_clock(blob), horizon)]:
            self.users.remove(user)
            self.cache.pop(user, None)

    def _refused(self, refused: Refused) -> list[str]:
        """A view Redis would not take, as a dead letter (stage redis) on the job's dead-letter output. Not
        counted among the job's dead-lettered events: its event was accepted (history has it)."""
        return self.route(self._protect([dead_letter_line(dead_letter(
            refused.view.encode(), 0, refused.origin, "redis_refused", f"Redis refused the view: {refused.reason}",
            "redis"))], None), None)

    def _protect(self, lines: list[str], user_id: str | None) -> list[str]:
        return lines if self.protector is None else self.protector.lines(lines, user_id)

    def _control(self, seq: int, part: int, payload: str, dirty: dict[str, UserState]) -> list[str]:
        """An erase command: the user's state goes (a tombstone per view they had), and the key store's
        erase marker is read again, so their earlier events are dropped if they come by once more.
        A command that is malformed or not signed with the job's key is dead-lettered."""
        raw = payload.encode("latin-1")
        command = parse_control(raw, None if self.protector is None else self.protector.control_key)
        if isinstance(command, str):
            return self._protect([dead_letter_line(dead_letter(
                raw, seq, self.origin(seq, part), "refused_control", command, "control"))], None)
        user = command.user_id
        state = self.cache.pop(user, None)
        blob = self.users.get(user)
        if state is None and blob is not None:
            state = _state_from_blob(blob)
        self.users.remove(user)
        dirty.pop(user, None)
        if self.protector is not None:
            self.protector.keys.forget(self.protector.token(user))
        categories = sorted(state["aggs"]) if state else []
        return [tombstone_line(seq, aggregate_key(category, user)) for category in categories]

    def _misrouted(self, event: Event, payload: str, part: int) -> str:
        """The engine's JSON reading of userId differed from ours (never seen; guarded, not assumed)."""
        return dead_letter_line(dead_letter(
            payload.encode("latin-1"), event.seq, self.origin(event.seq, part), "unroutable",
            "contextDelta.userId reads differently in the engine's key extraction than in validation "
            "(a duplicated key?)", "route"))


class SyncFileBuckets(SyncBuckets):
    """Batches of one file's lines: seq is the line number; blank lines are skipped; tagged lines out."""

    def __init__(self, settings: SyncSettings, batching: Batching, path: str, cache_size: int = 10_000) -> None:
        super().__init__(settings, batching, cache_size)
        self.path = path

    def origin(self, seq: int, part: int) -> str:
        return f"{self.path}:{seq}"

    def parse(self, seq: int, part: int, payload: str, now_ms: int) -> Parsed | None:
        raw = payload.encode("latin-1")  # ISO-8859-1 maps bytes 1:1: the line's original bytes
        if is_blank(raw):
            return None
        return ingest(raw, seq, self.origin(seq, part), now_ms, self.settings)

    def emit(self, outputs: list[list[str]]) -> Iterable[str]:
        yield join_batch(outputs)


def collect_views(changes: ViewChanges, lines: list[str], ttl: int | None, origin: str) -> None:
    """The views and tombstones among one event's (or erase command's) tagged lines, for the job's Redis
    write; a tombstone comes from an erase, or before a fresh aggregate under a state TTL (transforms/sync.py)."""
    for line in lines:
        if line[0] == VIEW:
            _, aux, text = line.split("\t", 2)
            changes.view(orjson.loads(aux), text, ttl, origin)
        elif line[0] == TOMBSTONE:
            changes.tombstone(orjson.loads(untag(line)[3])["key"], origin)


def join_batch(outputs: list[list[str]]) -> str:
    """A batch's output lines as the one string that crosses back to Java (split there into records)."""
    return "\n".join([line for lines in outputs for line in lines])


def keyed_batches(t_env: Any, table: Any, buckets: int) -> Any:
    """The batches table as a DataStream keyed by bucket (one Python key call per batch), each bucket under
    its spread key (`spread_keys`), so that a few buckets still land on every subtask."""
    keys = spread_keys(buckets)
    return t_env.to_data_stream(table).key_by(lambda row: keys[row[0]], key_type=Types.INT())


def spread_keys(buckets: int, max_parallelism: int = 128) -> list[int]:
    """The Flink key of each bucket: the smallest int whose key group is the bucket's share of the key-group
    range. Buckets keyed by their own number would land where Flink's hash puts them: buckets 0-3 all fall
    in key groups 86-127, one subtask of two. Spread, B buckets split evenly over any parallelism dividing B
    (Flink's default max parallelism, 128, assumed; with more buckets than key groups, they share)."""
    keys: list[int] = []
    candidate = 0
    for bucket in range(buckets):
        target = (2 * bucket + 1) * max_parallelism // (2 * buckets)
        while _key_group(candidate, max_parallelism) != target:
            candidate += 1
        keys.append(candidate)
        candidate += 1
    return keys


def _key_group(key: int, max_parallelism: int) -> int:
    """Flink's KeyGroupRangeAssignment for an Integer key: MathUtils.murmurHash(hashCode) % max parallelism."""
    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    h = rotl((key * 0xCC9E2D51) & 0xFFFFFFFF, 15)
    h = rotl((h * 0x1B873593) & 0xFFFFFFFF, 13)
    h = ((h * 5 + 0xE6546B64) & 0xFFFFFFFF) ^ 4
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    signed = h - (1 << 32) if h >= 1 << 31 else h
    code = signed if signed >= 0 else (-signed if signed != -(1 << 31) else 0)
    return code % max_parallelism


def sync_stream(env: Any, lines: Any, settings: SyncSettings, origin: str, parallelism: int,
                batching: Batching, cache_size: int = 10_000) -> Any:
    """Tagged output lines (transforms.records) of context-sync over a stream of latin-1 text lines."""
    from pyflink.table import StreamTableEnvironment

    t_env = StreamTableEnvironment.create(env)
    keyed = keyed_batches(t_env, line_batches(t_env, lines, batching), batching.buckets)
    return (keyed.process(SyncFileBuckets(settings, batching, origin, cache_size), output_type=Types.STRING())
            .set_parallelism(parallelism).name("sync by bucket"))

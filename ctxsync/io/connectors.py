"""Idempotent sink connectors: Kafka topics written by the Flink job -> Redis views / Elasticsearch.

A connector consumes with read_committed (it sees only what the job committed at a checkpoint), writes a
batch, and commits its consumer offsets only after the batch is durably written (Redis pipeline executed,
ES bulk acknowledged, dead letters flushed). A failure before the commit means the batch is consumed again:
Redis' version compare-and-set and ES' `create` with `_id` = what identifies the accepted event (see
es_history.record_id) make the rewrite a no-op, so the end state is exact (effectively once) even across
crashes and server restarts.

Copies of a connector with one group id split the partitions (a consumer group, cooperative-sticky
assignment: a rebalance moves only the partitions that change owner). A copy gives a partition up only after
committing what it wrote of it; a copy killed without leaving keeps its partitions until its session expires
(SESSION_TIMEOUT_MS), and their next owner re-reads its uncommitted last batch, which is a no-op rewrite.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ctxsync.errors import RuntimeFailure
from ctxsync.io.erase_record import EraseRecord, erased_docs
from ctxsync.io.es_history import EsBulkWriter, history_doc, violation_doc
from ctxsync.io.kafka_io import DLQ, HISTORY, VIEWS, VIOLATIONS
from ctxsync.io.redis_views import RedisViewSink, ViewWrite, view_problem

if TYPE_CHECKING:
    from ctxsync.io.connector_metrics import ConnectorMetrics

log = logging.getLogger(__name__)
REDIS_GROUP = "ctxsync-redis-views"  # consumer group of the Redis connector (verify reads its position)
ES_GROUP = "ctxsync-elasticsearch"   # consumer group of the Elasticsearch connector (likewise)
ES_POLL_S = 1.0
# A copy killed without leaving its group (kill -9, a lost node) keeps its partitions until its session
# expires: this bounds that pause. librdkafka heartbeats from its own thread, so a busy Python loop or a
# long sink write does not end the session (max.poll.interval.ms, 5 min, bounds those).
SESSION_TIMEOUT_MS = 10_000
GROUP_SETTINGS: dict[str, Any] = {
    "enable.auto.commit": False, "auto.offset.reset": "earliest", "isolation.level": "read_committed",
    "enable.partition.eof": True, "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 2_000,
}
NOT_A_MEMBER = (22, 25, 82)  # ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: the group moved on


@dataclass
class ConnectorStats:
    consumed: int = 0
    written: int = 0      # applied views / created documents (incl. ones already present)
    skipped: int = 0      # views not newer than what Redis holds
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0  # the last batch's sink write (the successful attempt)

    def rate(self) -> float:
        return self.consumed / self.seconds if self.seconds > 0 else 0.0


def origin_of(message: Any) -> str:
    return f"{message.topic()}/{message.partition()}/{message.offset()}"


def dead_letter(reason: str, detail: str, stage: str, raw: bytes, origin: str) -> dict[str, Any]:
    """A dead-letter record in the contract's shape (raw as text, or base64 when not UTF-8)."""
    import base64

    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {"reason": reason, "detail": detail, "stage": stage, "raw": text, "rawEncoding": encoding,
            "origin": origin}


def dlq_headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [(name, str(record[name]).encode()) for name in ("reason", "stage", "origin")]


class Handler:
    """Writes one batch of messages to a sink; returns dead-letter records for what the sink refused."""

    stage = "sink"
    transient: tuple[type[BaseException], ...] = ()

    def write(self, messages: list[Any], stats: ConnectorStats) -> list[dict[str, Any]]:
        raise NotImplementedError

    def settle(self) -> None:
        """Make everything written so far visible to readers; called when a bounded run has caught up."""


class RedisViewsHandler(Handler):
    """context.views -> Redis hashes (CAS on version) + change streams."""

    stage = "redis"

    def __init__(self, sink: RedisViewSink) -> None:
        import redis

        self.sink = sink
        self.transient = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)

    def write(self, messages: list[Any], stats: ConnectorStats) -> list[dict[str, Any]]:
        writes: list[ViewWrite] = []
        dead: list[dict[str, Any]] = []
        sources: dict[int, tuple[bytes, str]] = {}  # id(view write) -> its record (bytes, origin), for dead letters
        for message in messages:
            value = message.value()
            if value is None and message.key():  # a tombstone (erase): the views written so far, then the delete
                dead += self._flush(writes, stats, sources)
                writes = []
                stats.written += self.sink.delete(message.key().decode())
                continue
            try:
                view = orjson.loads(value)
                problem = view_problem(view)
                if problem:
                    raise TypeError(problem)
                ttl = view.pop("ttl", None)
                writes.append(ViewWrite(view, ttl))
            except (orjson.JSONDecodeError, TypeError) as exc:
                dead.append(dead_letter("bad_view_record", f"not a view record: {exc}",
                                        self.stage, value or b"", origin_of(message)))
                continue
            sources[id(writes[-1])] = (value, origin_of(message))
        dead += self._flush(writes, stats, sources)
        return dead

    def _flush(self, writes: list[ViewWrite], stats: ConnectorStats,
               sources: dict[int, tuple[bytes, str]]) -> list[dict[str, Any]]:
        """Write the coalesced views; a view Redis refuses is dead-lettered with its reason, never retried
        forever (it would refuse it again after every restart)."""
        latest = coalesce(writes)
        result = self.sink.write(latest)
        stats.written += result.applied
        stats.skipped += result.skipped + result.erased + len(writes) - len(latest)  # erased: never written
        return [dead_letter("redis_refused", f"Redis refused the view: {reason}", self.stage,
                            *sources[id(item)]) for item, reason in result.refused]


def coalesce(writes: list[ViewWrite]) -> list[ViewWrite]:
    """Only the highest version of each aggregate in a batch: the older ones would lose the CAS anyway.

    The change stream then gets one entry per aggregate and batch (the newest view), which is what a
    model catching up needs; Redis does a fraction of the work on bursty keys.
    """
    best: dict[str, ViewWrite] = {}
    for item in writes:
        key = item.view.get("key")
        current = best.get(key)
        if current is None or item.view.get("version", 0) >= current.view.get("version", 0):
            best[key] = item
    return list(best.values())


class ElasticsearchHandler(Handler):
    """context.history and context.violations -> Elasticsearch (create, _id = es_history.record_id)."""

    stage = "elasticsearch"

    def __init__(self, writer: EsBulkWriter, violations_topic: str = VIOLATIONS) -> None:
        import redis

        self.writer = writer
        self.violations_topic = violations_topic  # by name: a profile may call its topics anything
        # the writer asks the erase record in Redis before each bulk: while Redis is away the batch is retried
        self.transient = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)

    def settle(self) -> None:
        """Refresh the indices, so `ctxsync history` finds the run's events as soon as the run returns
        (Elasticsearch makes new documents searchable only at its next refresh, ~1 s later)."""
        self.writer.refresh()

    def write(self, messages: list[Any], stats: ConnectorStats) -> list[dict[str, Any]]:
        docs, dead = [], []
        for message in messages:
            value = message.value() or b""
            origin = origin_of(message)
            try:
                record = orjson.loads(value)
                doc = violation_doc(record, origin) if message.topic() == self.violations_topic \
                    else history_doc(record, origin)
                docs.append(doc)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                dead.append(dead_letter("bad_record", f"not a history/violation record: {exc!r}",
                                        self.stage, value, origin))
        before = self.writer.retries
        written, rejected = self.writer.write(docs)
        stats.retries += self.writer.retries - before
        stats.written += written
        for item in rejected:
            dead.append(dead_letter("es_rejected", f"Elasticsearch rejected the document (HTTP {item.status}, "
                                    f"{item.error_type}): {item.reason}", self.stage,
                                    orjson.dumps(item.doc.source), item.doc.origin))
        return dead


Partition = tuple[str, int]


def _names(partitions: Any) -> str:
    """`context.views[0,2] context.history[1]`: partitions grouped by topic, for the log."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return " ".join(f"{t}[{','.join(map(str, ps))}]" for t, ps in by_topic.items()) or "nothing"


def _keys(partitions: list[Any]) -> set[Partition]:
    return {(tp.topic, tp.partition) for tp in partitions}


class Ownership:
    """The partitions this copy owns in its consumer group, and the offsets it wrote but has not committed.

    librdkafka calls `assigned`/`revoked`/`lost` from inside consume() and close(). With cooperative-sticky
    assignment a rebalance moves only the partitions that change owner; the others are written meanwhile.
    A partition is given up only after what was written of it is committed, so its next owner starts right
    after the last write (a handover re-reads nothing). A partition *lost* (this copy's session expired) is
    already someone else's: its uncommitted tail is re-read by the new owner, an idempotent rewrite.
    """

    def __init__(self, connector: SinkConnector) -> None:
        self.connector = connector
        self.partitions: set[Partition] = set()
        self.joined = False  # a first assignment arrived (possibly empty: more copies than partitions)
        self._written: dict[Partition, int] = {}  # next offset after the last written record, not committed

    def assigned(self, consumer: Any, partitions: list[Any]) -> None:
        self.partitions |= _keys(partitions)
        self.joined = True
        log.info("connector %s: assigned %s; owns %s", self.connector.group_id, _names(_keys(partitions)),
                 _names(self.partitions))

    def revoked(self, consumer: Any, partitions: list[Any]) -> None:
        gone = _keys(partitions)
        self.connector._commit(consumer, self, gone)  # every batch is written before consume() runs this
        self._drop(gone)
        log.info("connector %s: revoked %s (committed); owns %s", self.connector.group_id, _names(gone),
                 _names(self.partitions))

    def lost(self, consumer: Any, partitions: list[Any]) -> None:
        gone = _keys(partitions)
        self._drop(gone)
        log.warning("connector %s: lost %s (session expired); their next owner re-reads what was not "
                    "committed", self.connector.group_id, _names(gone))

    def written(self, batch: list[Any]) -> None:
        first: dict[Partition, int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            first.setdefault(key, message.offset())
            self._written[key] = max(self._written.get(key, 0), message.offset() + 1)
        if log.isEnabledFor(logging.DEBUG):  # which copy wrote what (tests/test_connector_groups.py reads it)
            log.debug("connector %s: wrote %s", self.connector.group_id,
                      " ".join(f"{t}/{p}:{first[(t, p)]}-{self._written[(t, p)] - 1}" for t, p in sorted(first)))

    def uncommitted(self, only: set[Partition] | None = None) -> dict[Partition, int]:
        return {key: offset for key, offset in self._written.items()
                if key in self.partitions and (only is None or key in only)}

    def committed(self, offsets: dict[Partition, int]) -> None:
        for key, offset in offsets.items():
            if self._written.get(key) == offset:
                del self._written[key]

    def _drop(self, gone: set[Partition]) -> None:
        self.partitions -= gone
        for key in gone:
            self._written.pop(key, None)


@dataclass
class SinkConnector:
    """Consume -> write batch (retrying transient sink errors) -> flush dead letters -> commit offsets."""

    kafka_config: dict[str, Any]
    topics: list[str]
    group_id: str
    handler: Handler
    dlq_topic: str = DLQ
    batch_size: int = 5000
    poll_timeout_s: float = 0.05  # consume() waits this long for a full batch: it bounds added latency
    backoff_s: tuple[float, float] = (0.1, 5.0)
    stats: ConnectorStats = field(default_factory=ConnectorStats)
    on_batch: Callable[[ConnectorStats], None] | None = None
    metrics: ConnectorMetrics | None = None  # observed per batch (ctxsync.io.connector_metrics)

    def run(self, until_caught_up: bool = False, stop: threading.Event | None = None,
            idle_timeout_s: float = 60.0) -> ConnectorStats:
        """Run until `stop` is set, or (bounded) until every partition this copy owns is read to its end."""
        from confluent_kafka import Consumer, KafkaError

        from ctxsync.io.kafka_io import producer

        consumer = Consumer({**self.kafka_config, "group.id": self.group_id, **GROUP_SETTINGS})
        dlq = producer(self.kafka_config)
        at_end: set[tuple[str, int]] = set()
        owned = Ownership(self)
        self._check_topics(consumer)
        consumer.subscribe(self.topics, on_assign=owned.assigned, on_revoke=owned.revoked, on_lost=owned.lost)
        start = time.monotonic()
        last_progress = start
        try:
            while not (stop is not None and stop.is_set()):
                messages = consumer.consume(self.batch_size, timeout=self.poll_timeout_s)
                batch = []
                for message in messages:
                    error = message.error()
                    if error is None:
                        # a partition revoked while this batch was fetched is its new owner's (from our commit)
                        if (message.topic(), message.partition()) in owned.partitions:
                            batch.append(message)
                            at_end.discard((message.topic(), message.partition()))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        at_end.add((message.topic(), message.partition()))
                    elif not error.retriable() and error.fatal():
                        raise RuntimeFailure(f"kafka consumer: {error}")
                at_end &= owned.partitions
                if batch:
                    self._write(batch, dlq)
                    owned.written(batch)
                    self._commit(consumer, owned)
                    last_progress = time.monotonic()
                    self.stats.seconds = last_progress - start
                    if self.on_batch is not None:
                        self.on_batch(self.stats)
                    if self.metrics is not None:
                        self.metrics.after_batch(batch, self.stats)
                if self.metrics is not None:
                    self.metrics.refresh(consumer, set(owned.partitions), self.dlq_topic)
                if until_caught_up and not batch and owned.joined and \
                        self._caught_up(consumer, owned.partitions, at_end):
                    self.handler.settle()
                    if self.metrics is not None:
                        self.metrics.refresh(consumer, set(owned.partitions), self.dlq_topic, force=True)
                    break
                if until_caught_up and time.monotonic() - last_progress > idle_timeout_s:
                    raise RuntimeFailure(f"connector {self.group_id}: no progress for {idle_timeout_s:.0f}s")
        finally:
            self.stats.seconds = time.monotonic() - start
            consumer.close()  # revokes (committing what is written) and leaves the group: no session to expire
        return self.stats

    def _commit(self, consumer: Any, owned: Ownership, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the written offsets, retrying while the broker is unreachable (the batch is written).

        Not retried when the group refuses this copy's generation (a rebalance moved on while the batch was
        written, or the copy's session expired): the offsets stay pending and go with the next commit or the
        revocation, which librdkafka reaches at the next poll; a partition lost meanwhile is re-read by its
        new owner (an idempotent rewrite)."""
        from confluent_kafka import KafkaException, TopicPartition

        pending = owned.uncommitted(only)
        if not pending:
            return
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in sorted(pending.items())]
        delay = self.backoff_s[0]
        for _ in range(30):
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                owned.committed(pending)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if error is not None and error.code() in NOT_A_MEMBER:
                    log.warning("connector %s: offsets of %s not committed yet (%s: the group is rebalancing "
                                "or has dropped this copy): kept for the next commit; a partition that moved "
                                "meanwhile is re-read by its new owner", self.group_id, _names(pending),
                                error.name())
                    return
                self.stats.retries += 1
                log.warning("commit failed: %s; retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
        raise RuntimeFailure(f"connector {self.group_id}: could not commit offsets; the batch will be re-read")

    def _check_topics(self, consumer: Any) -> None:
        """Fail with a hint when a topic is missing (a subscription would wait for it silently)."""
        metadata = consumer.list_topics(timeout=10).topics
        missing = [t for t in self.topics if t not in metadata or metadata[t].error is not None]
        if missing:
            raise RuntimeFailure(f"connector {self.group_id}: topic(s) {', '.join(missing)} do not exist",
                                 "the job creates them: run it first, e.g. `ctxsync run context-sync --profile local`")

    def _caught_up(self, consumer: Any, assigned: set[tuple[str, int]], at_end: set[tuple[str, int]]) -> bool:
        """Every partition of the topics is read to its end."""
        from confluent_kafka import TopicPartition

        if not assigned <= at_end:
            # a partition with nothing to read never sends EOF if we start at its end; check positions
            for topic, partition in assigned - at_end:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                committed = consumer.committed([TopicPartition(topic, partition)], timeout=5)[0].offset
                if high > low and committed < high:
                    return False
        return True

    def _write(self, batch: list[Any], dlq: Any) -> None:
        delay = self.backoff_s[0]
        while True:
            try:
                started = time.perf_counter()
                dead = self.handler.write(batch, self.stats)
                self.stats.write_seconds = time.perf_counter() - started
                break
            except self.handler.transient as exc:  # sink down or restarting: keep the batch, retry
                self.stats.retries += 1
                log.warning("%s: %s; retrying batch of %d in %.1fs", self.handler.stage, exc, len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_s[1])
        self.stats.consumed += len(batch)
        self.stats.batches += 1
        if dead:
            for record in dead:
                dlq.produce(self.dlq_topic, key=record["origin"].encode(), value=orjson.dumps(record),
                            headers=dlq_headers(record))
            if dlq.flush(30) != 0:
                raise RuntimeFailure("dead letters could not be delivered to Kafka; offsets not committed")
            self.stats.dead_lettered += len(dead)


def redis_connector(kafka_config: dict[str, Any], redis_client: Any, prefix: str = "ctx",
                    stream_maxlen: int = 10_000, topic: str = VIEWS, dlq_topic: str = DLQ,
                    group_id: str = REDIS_GROUP) -> SinkConnector:
    sink = RedisViewSink(redis_client, prefix, stream_maxlen)
    return SinkConnector(kafka_config, [topic], group_id, RedisViewsHandler(sink), dlq_topic)


def elasticsearch_connector(kafka_config: dict[str, Any], es_client: Any, topics: tuple[str, str] = (HISTORY, VIOLATIONS),
                            dlq_topic: str = DLQ, group_id: str = ES_GROUP,
                            give_up_after_s: float = 600.0, erase: EraseRecord | None = None) -> SinkConnector:
    """`erase`: the erase record the writer asks before each bulk request (documents of users erased after
    them are never written)."""
    from ctxsync.io.es_history import install_templates

    install_templates(es_client)
    # history is for analysts, not latency-bound: wait up to ES_POLL_S for a fuller bulk request. Bulks of
    # ~100 documents (the 50 ms poll at 2,000 events/s) cost the search engine half a core here, on the
    # cores the view path needs
    return SinkConnector(kafka_config, list(topics), group_id,
                         ElasticsearchHandler(EsBulkWriter(es_client, give_up_after_s, erased=None if erase is None
                                                           else partial(erased_docs, erase)), topics[1]), dlq_topic,
                         poll_timeout_s=ES_POLL_S)


def profile_connectors(profile: Any, which: tuple[str, ...] = ("redis", "elasticsearch")) -> dict[str, SinkConnector]:
    """The connectors of a resolved profile (ctxsync.config.resolve_profile), by name."""
    from ctxsync.io.clients import kafka_config, kafka_sink, redis_client, search_client

    config, topics = kafka_config(profile), kafka_sink(profile).topics
    connectors: dict[str, SinkConnector] = {}
    if "redis" in which:
        endpoint = profile.redis
        connectors["redis"] = redis_connector(config, redis_client(endpoint), endpoint.prefix,
                                              endpoint.stream_maxlen, topics.views, topics.dlq)
    if "elasticsearch" in which:
        erase = EraseRecord(redis_client(profile.redis), profile.redis.prefix) if profile.redis else None
        connectors["elasticsearch"] = elasticsearch_connector(config, search_client(profile),
                                                              (topics.history, topics.violations), topics.dlq,
                                                              erase=erase)
    return connectors


def run_all(connectors: dict[str, SinkConnector], until_caught_up: bool, stop: threading.Event | None = None,
            idle_timeout_s: float = 120.0) -> dict[str, ConnectorStats]:
    """Run connectors side by side (one thread each); re-raises the first failure."""
    errors: list[BaseException] = []

    def target(connector: SinkConnector) -> None:
        try:
            connector.run(until_caught_up, stop, idle_timeout_s)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)
            if stop is not None:
                stop.set()

    threads = [threading.Thread(target=target, args=(c,), name=f"connector-{n}", daemon=True)
               for n, c in connectors.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    if errors:
        raise errors[0]
    return {name: c.stats for name, c in connectors.items()}

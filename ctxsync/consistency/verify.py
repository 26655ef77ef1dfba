"""Compare the views the history implies with what the stores hold: the compacted views topic, Redis
hashes and each target model's change stream.

Positions are taken before anything is read, so a running job or connector never makes a finding up:
- the views topic's ends are taken first and the history topic's after them; the job commits a view and
  its history record in one transaction, so the history read holds at least every view read. A view the
  history has but the views topic lacks (or has older) is *in flight* if the views topic grew since;
- a views-topic record at or after the Redis connector's committed offset is *in flight* to Redis; where the
  job writes Redis itself (no connector), Redis is written before the Kafka commit: a Redis version ahead
  of the committed history is in flight;
- a Redis hash gone after its view's TTL (from the views record's `ttl` and its Kafka timestamp) is
  *expired*, not missing;
- a history record at or after the Elasticsearch connector's committed offset is in flight to ES.
- the keys of a user erased after their history (ctxsync/io/erase_record.py) are *erased*: their history
  is not rebuilt; a view of theirs from before the erase still in Redis is a mismatch.
In-flight, expired and erased keys are counted, never reported as mismatches, and left out of the ratio.
With an Elasticsearch client, every history record the ES connector has committed must have its document
(by its deterministic id): the check that would have caught the eventId-id loss of issue 13.
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ctxsync.consistency.rebuild import rebuild_views
from ctxsync.io.erase_record import EraseRecord, ErasedUsers
from ctxsync.io.es_history import missing_documents
from ctxsync.io.history_topic import HistoryRecord, read_history, topic_ends
from ctxsync.io.kafka_io import partition_for, read_topic
from ctxsync.io.kafka_positions import Offsets, committed_offsets
from ctxsync.io.redis_views import grant_allows, read_grants, stream_key, view_from_hash, view_key
from ctxsync.privacy_lookup import Opened, PrivacyLookup
from transforms.erasure import oldest_ms, payload_erased
from transforms.settings import SyncSettings
from transforms.timestamps import format_iso_ms

MISSING, STALE, WRONG, EXTRA, BEHIND = "missing", "stale version", "wrong value", "extra", "stream behind"
REDIS, TOPIC = "redis", "views-topic"
UNREADABLE = "_unreadable"


@dataclass
class TopicView:
    """The newest view of a key in the views topic and where it was read."""

    view: dict[str, Any]
    partition: int
    offset: int
    timestamp_ms: int
    ttl_s: int | None


@dataclass
class Finding:
    store: str          # redis, views-topic or stream:<modelId>
    key: str
    kind: str           # MISSING, STALE, WRONG, EXTRA, BEHIND
    expected_version: int | None
    actual_version: int | None
    detail: str = ""


@dataclass
class StreamLag:
    """How far one target model's change stream is behind the views that target it."""

    model: str
    views: int = 0          # checked views that list this model in targetModels
    behind: int = 0         # of which the stream lacks the current version
    lag_ms: int = 0         # age of the oldest view version the stream lacks (0 = none lacking)
    length: int = 0
    trimmed: bool = False   # the stream reached its MAXLEN: an absent old key may have been trimmed
    unknown: int = 0        # views absent from a trimmed stream (not judged)


@dataclass
class VerifyReport:
    history_records: int = 0
    history_complete: bool = True       # the history topic still starts at offset 0 on every partition
    unreadable_history: list[str] = field(default_factory=list)
    history_shredded: int = 0           # privacy on: records of erased users (data key gone), not rebuilt
    keys_checked: int = 0
    consistent: int = 0
    in_flight: int = 0
    expired: int = 0
    erased: int = 0                     # keys of users erased since their history: empty as the erase left them
    erased_history: int = 0             # history records of users erased after them: not rebuilt
    sampled: bool = False
    es_checked: int = 0                 # history records whose ES document was looked up
    es_in_flight: int = 0               # history records the ES connector has not committed yet
    findings: list[Finding] = field(default_factory=list)
    streams: list[StreamLag] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def judged(self) -> int:
        return self.keys_checked - self.in_flight - self.expired - self.erased

    @property
    def ratio(self) -> float:
        return self.consistent / self.judged if self.judged else 1.0

    def counts(self) -> dict[str, dict[str, int]]:
        """store -> mismatch kind -> count."""
        out: dict[str, dict[str, int]] = {}
        for f in self.findings:
            store = out.setdefault(f.store, {})
            store[f.kind] = store.get(f.kind, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(ratio=self.ratio, judged=self.judged, counts=self.counts())
        return doc


@dataclass
class Sources:
    """Where to read: Kafka client settings, topic names, the Redis connector's group, Redis itself."""

    kafka_config: dict[str, Any]
    history_topic: str
    views_topic: str
    redis_group: str | None             # None: the job writes Redis itself (ctxsync/io/view_writer.py)
    redis: Any
    prefix: str = "ctx"
    stream_maxlen: int = 10_000
    es: Any = None                      # an Elasticsearch client: also check the history documents
    es_group: str = ""
    privacy: PrivacyLookup | None = None  # privacy on: the history names users by token, values encrypted
    erase: EraseRecord | None = None    # who was erased when: their history is not rebuilt, their keys not judged


def verify(src: Sources, settings: SyncSettings, user: str | None = None, sample: int | None = None,
           seed: int | None = None) -> VerifyReport:
    """Rebuild the views from the history topic and compare them with the views topic, Redis and streams."""
    started = time.monotonic()
    report = VerifyReport(sampled=sample is not None)
    views_high = topic_ends(src.kafka_config, src.views_topic)[1]
    history_low, history_high = topic_ends(src.kafka_config, src.history_topic)
    report.history_complete = all(v == 0 for v in history_low.values())
    kept: list[HistoryRecord] = []
    records: Iterable[HistoryRecord] = read_history(src.kafka_config, src.history_topic, history_high)
    erased = ErasedUsers(src.erase).refresh() if src.erase is not None else None
    if erased:
        records = _not_erased(records, erased, report)
    records = _kept(records, kept) if src.es is not None else records
    shredded = Opened()
    if src.privacy is not None:  # compare like with like: decrypted values, users by token until renamed below
        src.privacy.forget()
        records = src.privacy.open_history(records, shredded)
    rebuilt = rebuild_views(records, settings, src.privacy.token(user) if src.privacy and user else user)
    report.history_records, report.unreadable_history = rebuilt.records + shredded.shredded, rebuilt.unreadable
    report.history_shredded = shredded.shredded
    topic = latest_views(src.kafka_config, src.views_topic, views_high, user)
    redis_done = committed_offsets(src.kafka_config, src.redis_group, src.views_topic, list(views_high)) \
        if src.redis_group else None
    _, views_now = topic_ends(src.kafka_config, src.views_topic)
    grown = {p for p, h in views_now.items() if h > views_high.get(p, 0)}

    expected = rebuilt.views
    redis_only = None
    if src.privacy is not None:  # rebuilt views name users by token; Redis and the views topic by clear id
        redis_only = set() if sample is not None else _redis_only_keys(src, set(topic), user)
        names = {v.view.get("userId") for v in topic.values()} | {k.partition(":")[2] for k in redis_only} | {user}
        expected = src.privacy.clear_views(expected, names)
    keys = sorted(set(expected) | set(topic))
    if sample is not None and sample < len(keys):
        keys = sorted(random.Random(seed).sample(keys, sample))
    else:
        keys += sorted(redis_only - set(keys) if redis_only is not None else _redis_only_keys(src, set(keys), user))
    now_ms = int(time.time() * 1000)
    redis_views = _read_redis(src, keys)
    in_stores: list[tuple[str, dict[str, Any]]] = []  # (key, view in Redis) of keys right in both stores
    for key in keys:
        want, have, stored = expected.get(key), topic.get(key), redis_views.get(key)
        report.keys_checked += 1
        erased_ms = erased.at(key.partition(":")[2]) if erased and want is None else None
        if erased_ms is not None:  # the views topic's record awaits compaction behind the erase's tombstone
            if stored is None or (UNREADABLE not in stored and oldest_ms(stored) > erased_ms):
                report.erased += 1
            else:
                report.findings.append(Finding(REDIS, key, EXTRA, None, stored["version"], "its user was erased "
                                               f"at {format_iso_ms(erased_ms)}: a view from before"))
            continue
        in_flight_topic = want is not None and (have is None or have.view["version"] < want["version"]) and \
            partition_for(key.encode(), len(views_high)) in grown
        if redis_done is None:  # the job writes Redis before its Kafka commit: Redis may be ahead, never behind
            in_flight_redis = stored is not None and want is not None and stored["version"] > want["version"]
        else:
            in_flight_redis = have is not None and have.offset >= redis_done.get(have.partition, -1) and \
                (stored is None or stored["version"] < have.view["version"])
        if in_flight_topic or in_flight_redis:
            report.in_flight += 1
            continue
        if want is not None and stored is None and have is not None and _expired(have, now_ms):
            report.expired += 1
            continue
        found = _compare(TOPIC, key, want, have.view if have else None) + _compare(REDIS, key, want, stored)
        report.findings.extend(found)
        if not found and stored is not None:
            in_stores.append((key, stored))
    report.streams, behind = _stream_lags(src, in_stores, topic, now_ms)
    report.findings.extend(behind)
    if src.es is not None:
        _check_es(src, kept, list(history_high), report)
    report.consistent = len(in_stores) - len({f.key for f in behind})
    report.seconds = time.monotonic() - started
    return report


def _not_erased(records: Iterable[HistoryRecord], erased: ErasedUsers, report: VerifyReport) -> Iterator[HistoryRecord]:
    """The history without the records of users erased after them (counted): the erase removed their
    views and documents, so nothing is expected of them."""
    for record in records:
        try:
            gone = payload_erased(orjson.loads(record.raw), erased.at) is not None
        except orjson.JSONDecodeError:
            gone = False
        if gone:
            report.erased_history += 1
        else:
            yield record


def _kept(records: Iterable[HistoryRecord], kept: list[HistoryRecord]) -> Iterator[HistoryRecord]:
    for record in records:
        kept.append(record)
        yield record


def _check_es(src: Sources, records: list[HistoryRecord], partitions: list[int], report: VerifyReport) -> None:
    """Every history record the ES connector has committed has its document in Elasticsearch."""
    done = committed_offsets(src.kafka_config, src.es_group, src.history_topic, partitions)
    due = []
    for record in records:
        _, partition, offset = record.origin.rsplit("/", 2)
        if int(offset) >= done.get(int(partition), -1):
            report.es_in_flight += 1
            continue
        try:
            due.append((record.origin, orjson.loads(record.raw)))
        except orjson.JSONDecodeError:
            continue  # the ES connector dead-lettered it (bad_record)
    report.es_checked = len(due)
    report.findings.extend(Finding("elasticsearch", origin, MISSING, None, None, "history document not found")
                           for origin in missing_documents(src.es, due))


def latest_views(config: dict[str, Any], topic: str, high: Offsets, user: str | None) -> dict[str, TopicView]:
    """The highest version of each key in the compacted views topic (up to the positions taken)."""
    latest: dict[str, TopicView] = {}
    for message in read_topic(config, topic):
        if message.offset() >= high.get(message.partition(), 0):
            continue
        try:
            view = orjson.loads(message.value())
            key, version = view["key"], view["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # the Redis connector dead-letters such records; nothing to compare
        if user is not None and view.get("userId") != user:
            continue
        current = latest.get(key)
        if current is None or version >= current.view["version"]:
            ttl = view.pop("ttl", None)
            latest[key] = TopicView(view, message.partition(), message.offset(), message.timestamp()[1], ttl)
    return latest


def _redis_only_keys(src: Sources, known: set[str], user: str | None) -> set[str]:
    """Aggregate keys of view hashes in Redis that neither the history nor the views topic has."""
    who = "*" if user is None else "".join("\\" + c if c in "*?[]\\" else c for c in user)  # glob-escaped
    pattern = f"{src.prefix}:*:{{{who}}}"
    extra = set()
    for name in src.redis.scan_iter(match=pattern, count=1000, _type="hash"):
        text = name.decode() if isinstance(name, bytes) else name
        category, _, rest = text[len(src.prefix) + 1:].partition(":")
        key = f"{category}:{rest[1:-1]}"
        if key not in known:
            extra.add(key)
    return extra


def _redis_name(src: Sources, key: str) -> str:
    category, _, user_id = key.partition(":")
    return view_key(src.prefix, category, user_id)


def _read_redis(src: Sources, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The views Redis holds for `keys` (pipelined HGETALL, 1,000 per round trip)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        pipe = src.redis.pipeline(transaction=False)
        for key in chunk:
            pipe.hgetall(_redis_name(src, key))
        for key, fields in zip(chunk, pipe.execute()):
            if fields:
                text = _decoded(fields)
                try:
                    found[key] = view_from_hash(text)
                except (KeyError, ValueError) as exc:  # a hash someone damaged: compared as unreadable
                    found[key] = {"version": _int_or(text.get("version"), 0), UNREADABLE: f"{type(exc).__name__}: {exc}"}
    return found


def _decoded(fields: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _expired(have: TopicView, now_ms: int) -> bool:
    return have.ttl_s is not None and have.timestamp_ms + have.ttl_s * 1000 <= now_ms


def _compare(store: str, key: str, want: dict[str, Any] | None, got: dict[str, Any] | None) -> list[Finding]:
    if want is None and got is None:
        return []
    if want is None:
        return [Finding(store, key, EXTRA, None, got["version"], "no accepted event in the history makes this view")]
    if got is None:
        return [Finding(store, key, MISSING, want["version"], None)]
    if UNREADABLE in got:
        return [Finding(store, key, WRONG, want["version"], got["version"], f"hash unreadable: {got[UNREADABLE]}")]
    if got["version"] < want["version"]:
        return [Finding(store, key, STALE, want["version"], got["version"])]
    if got["version"] > want["version"]:
        return [Finding(store, key, EXTRA, want["version"], got["version"], "a version the history does not reach")]
    difference = _first_difference(want, got)
    return [Finding(store, key, WRONG, want["version"], got["version"], difference)] if difference else []


def _first_difference(want: dict[str, Any], got: dict[str, Any], path: str = "") -> str:
    """'' when equal as JSON (true != 1, "1" != 1), else the first differing field and both values."""
    for name in sorted(set(want) | set(got)):
        a, b = want.get(name, ...), got.get(name, ...)
        where = f"{path}{name}"
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _first_difference(a, b, where + ".")
            if inner:
                return inner
        elif orjson.dumps(a, default=str) != orjson.dumps(b, default=str):
            shown = [("(absent)" if v is ... else orjson.dumps(v).decode()) for v in (a, b)]
            return f"{where}: expected {shown[0]}, found {shown[1]}"
    return ""


def _stream_lags(src: Sources, in_stores: list[tuple[str, dict[str, Any]]], topic: dict[str, TopicView],
                 now_ms: int) -> tuple[list[StreamLag], list[Finding]]:
    """Per target model: does its change stream hold the current version of every view aimed at it that its
    grant lets it read (a change of another category is never appended: docs/security.md)?"""
    grants = read_grants(src.redis, src.prefix)
    by_model: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, view in in_stores:
        for model in view["targetModels"]:
            if grant_allows(grants, stream_key(src.prefix, model), view["category"]):
                by_model.setdefault(model, []).append((key, view))
    lags, findings = [], []
    for model in sorted(by_model):
        name = stream_key(src.prefix, model)
        newest: dict[str, int] = {}
        for _, fields in src.redis.xrange(name):
            text = _decoded(fields)
            hash_name, version = text.get("key", ""), _int_or(text.get("version"), -1)
            newest[hash_name] = max(version, newest.get(hash_name, -1))
        lag = StreamLag(model, length=src.redis.xlen(name))
        lag.trimmed = lag.length >= src.stream_maxlen
        for key, view in by_model[model]:
            lag.views += 1
            seen = newest.get(_redis_name(src, key))
            if seen is None and lag.trimmed:
                lag.unknown += 1
            elif seen is None or seen < view["version"]:
                lag.behind += 1
                written = topic[key].timestamp_ms if key in topic else now_ms
                lag.lag_ms = max(lag.lag_ms, now_ms - written)
                findings.append(Finding(f"stream:{model}", key, BEHIND, view["version"], seen))
        lags.append(lag)
    return lags, findings

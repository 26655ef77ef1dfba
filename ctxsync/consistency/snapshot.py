"""Snapshots of every view: a zstd-compressed JSON Lines file, its SHA-256 and the views topic's offsets.

Why offsets: a snapshot is a starting point, not the whole truth. Restore writes the snapshot's views into
an empty Redis, then the Redis connector replays `context.views` from the snapshot's offsets: every view
written after the snapshot is applied again (the version compare-and-set makes the views already in the
snapshot no-ops), so Redis ends equal to one that was never lost.

Which offsets: taken from Redis, the snapshot holds at least what the Redis connector had committed when it
started (its committed offsets are read first, Redis after); taken from the topic, exactly the topic up to
its ends. Either way, replaying from the recorded offsets misses nothing.

Files: `<dir>/<name>.views.zst` (line 1: header, then one view per line with `expireAtMs` when the
hash had a TTL) and `<dir>/<name>.json` (the manifest: header, sha256 and size of the data file).
"""
from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ctxsync.consistency.verify import latest_views
from ctxsync.errors import RuntimeFailure
from ctxsync.io.kafka_positions import Offsets, commit_offsets, committed_offsets, partition_ends
from ctxsync.io.redis_views import grant_allows, hash_fields, read_grants, stream_key, view_from_hash, view_key
from transforms.timestamps import format_iso_ms

FORMAT = "ctxsync-snapshot/1"
BATCH = 2000  # Redis commands per pipeline round trip


@dataclass
class Manifest:
    name: str
    created: str
    source: str                 # redis or views-topic
    topic: str
    offsets: dict[str, int]     # partition (as text, JSON keys) -> first offset not in the snapshot
    views: int
    sha256: str = ""
    bytes: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def partition_offsets(self) -> Offsets:
        return {int(p): o for p, o in self.offsets.items()}


def data_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.views.zst"


def manifest_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.json"


def create_from_redis(redis: Any, prefix: str, kafka_config: dict[str, Any], topic: str, group: str,
                      directory: Path, name: str | None = None) -> Manifest:
    """Snapshot the view hashes in Redis, with the Redis connector's committed offsets (read first)."""
    _, high = partition_ends(kafka_config, topic)
    committed = committed_offsets(kafka_config, group, topic, list(high))
    offsets = {p: max(o, 0) for p, o in committed.items()}
    return _write(directory, name, "redis", topic, offsets, _redis_views(redis, prefix))


def create_from_topic(kafka_config: dict[str, Any], topic: str, directory: Path, name: str | None = None,
                      erased: Callable[[dict[str, Any]], bool] | None = None) -> Manifest:
    """Snapshot the newest view of each key in the views topic, up to its ends; views `erased` refuses
    (of users erased since, still in the topic until compaction) are left out."""
    _, high = partition_ends(kafka_config, topic)
    latest = latest_views(kafka_config, topic, high, None)

    def views() -> Iterator[dict[str, Any]]:
        for key in sorted(latest):
            found = latest[key]
            if erased is not None and erased(found.view):
                continue
            if found.ttl_s is not None:  # the connector set EXPIRE ttl when it wrote the view, about then
                yield {**found.view, "expireAtMs": found.timestamp_ms + found.ttl_s * 1000}
            else:
                yield found.view

    return _write(directory, name, "views-topic", topic, high, views())


def list_snapshots(directory: Path) -> list[Manifest]:
    """Manifests in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [_read_manifest(p) for p in directory.glob("*.json")]
    return sorted((m for m in found if m is not None), key=lambda m: (m.created, m.name))


def read_views(directory: Path, name: str) -> tuple[Manifest, Iterator[dict[str, Any]]]:
    """The manifest and the snapshot's views, after checking the data file's size and SHA-256."""
    import zstandard

    manifest = _read_manifest(manifest_path(directory, name))
    if manifest is None:
        raise RuntimeFailure(f"no snapshot {name!r} in {directory}", "`ctxsync snapshot list` shows them")
    try:
        data = data_path(directory, name).read_bytes()
    except OSError as exc:
        raise RuntimeFailure(f"snapshot {name!r}: cannot read its data file: {exc.strerror}: {exc.filename}") from exc
    if len(data) != manifest.bytes or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise RuntimeFailure(f"snapshot {name!r} is damaged: its checksum does not match the manifest",
                             "restore another snapshot, or rebuild Redis by replaying context.views from the start")
    text = zstandard.ZstdDecompressor().decompressobj().decompress(data)  # streamed: no size in the header
    lines = text.split(b"\n")
    header = orjson.loads(lines[0])
    if header.get("format") != FORMAT:
        raise RuntimeFailure(f"snapshot {name!r} has format {header.get('format')!r}, expected {FORMAT}")
    return manifest, (orjson.loads(line) for line in lines[1:] if line)


def restore(redis: Any, prefix: str, directory: Path, name: str, force: bool = False,
            stream_maxlen: int = 10_000, erased: Callable[[dict[str, Any]], bool] | None = None
            ) -> tuple[Manifest, int, int]:
    """Write the snapshot's views into an empty Redis; returns (manifest, views written, views expired).

    The change streams were lost with Redis: each target model's stream gets the newest (by updatedAt)
    `stream_maxlen` views aimed at it, oldest first, which is what its MAXLEN would have kept; a model
    reading its feed from the start finds them, as in a never-lost Redis. (Adding every view would make
    Redis write and trim away millions of entries for a large snapshot.)

    Refuses a Redis that already holds views under `prefix`, unless `force`: then the snapshot's views
    overwrite the hashes of the same keys. A view `erased` refuses (it holds data from before its user's
    erase: ctxsync/io/erase_record.py) is not written: a snapshot older than an erase brings nobody back."""
    if not force and next(iter(redis.scan_iter(match=f"{prefix}:*:{{*}}", count=1000, _type="hash")), None):
        raise RuntimeFailure("Redis already holds views", "restore rebuilds an empty Redis; pass --force to write over them")
    manifest, views = read_views(directory, name)
    now_ms = int(time.time() * 1000)
    written = expired = 0
    newest: dict[str, list[tuple[str, int, str, dict[str, Any]]]] = {}  # model -> heap (updatedAt, n, hash, view)
    grants = read_grants(redis, prefix)  # a model's stream gets only what its grant allows (docs/security.md)
    pipe = redis.pipeline(transaction=False)
    for view in views:
        expire_at = view.pop("expireAtMs", None)
        if expire_at is not None and expire_at <= now_ms:
            expired += 1
            continue
        if erased is not None and erased(view):
            continue
        hash_name = view_key(prefix, view["category"], view["userId"])
        if force:
            pipe.delete(hash_name)
        pipe.hset(hash_name, mapping=hash_fields(view))
        if expire_at is not None:
            pipe.pexpireat(hash_name, expire_at)
        for model in view["targetModels"]:
            if not grant_allows(grants, stream_key(prefix, model), view["category"]):
                continue
            heap = newest.setdefault(model, [])
            item = (view["updatedAt"], written, hash_name, view)
            if len(heap) < stream_maxlen:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
        written += 1
        if written % BATCH == 0:
            pipe.execute()
    for model, heap in newest.items():
        for n, (_, _, hash_name, view) in enumerate(sorted(heap), 1):
            pipe.xadd(stream_key(prefix, model), {"key": hash_name, "version": view["version"],
                                                  "view": orjson.dumps(view)})
            if n % BATCH == 0:
                pipe.execute()
    pipe.execute()
    return manifest, written, expired


def rewind_connector(kafka_config: dict[str, Any], group: str, manifest: Manifest) -> None:
    """Point the Redis connector's group at the snapshot's offsets, so its next run replays from there."""
    commit_offsets(kafka_config, group, manifest.topic, manifest.partition_offsets())


def _redis_views(redis: Any, prefix: str) -> Iterator[dict[str, Any]]:
    """Every view hash under `prefix` with its absolute expiry (PEXPIRETIME), read in pipelined batches."""
    names = list(redis.scan_iter(match=f"{prefix}:*:{{*}}", count=5000, _type="hash"))
    for start in range(0, len(names), BATCH):
        chunk = names[start:start + BATCH]
        pipe = redis.pipeline(transaction=False)
        for name in chunk:
            pipe.hgetall(name)
            pipe.pexpiretime(name)
        replies = pipe.execute()
        for fields, expire_at in zip(replies[0::2], replies[1::2]):
            if not fields:
                continue  # expired or deleted since the SCAN
            view = view_from_hash({k.decode(): v.decode() for k, v in fields.items()})
            if expire_at > 0:
                view["expireAtMs"] = expire_at
            yield view


def _write(directory: Path, name: str | None, source: str, topic: str, offsets: Offsets,
           views: Iterator[dict[str, Any]]) -> Manifest:
    import zstandard

    started = time.monotonic()
    created = format_iso_ms(int(time.time() * 1000))
    name = name or "snapshot-" + created.replace(":", "").replace("-", "").replace(".", "")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(name, created, source, topic, {str(p): o for p, o in sorted(offsets.items())}, 0)
    target = data_path(directory, name)
    temporary = target.with_suffix(".tmp")
    with temporary.open("wb") as out, zstandard.ZstdCompressor(level=3).stream_writer(out) as packed:
        packed.write(orjson.dumps({"format": FORMAT, "name": name, "created": created, "topic": topic,
                                   "offsets": manifest.offsets}) + b"\n")
        for view in views:
            packed.write(orjson.dumps(view) + b"\n")
            manifest.views += 1
    data = temporary.read_bytes()
    manifest.sha256, manifest.bytes = hashlib.sha256(data).hexdigest(), len(data)
    temporary.replace(target)
    manifest.seconds = round(time.monotonic() - started, 3)
    manifest_path(directory, name).write_bytes(orjson.dumps(asdict(manifest), option=orjson.OPT_INDENT_2))
    return manifest


def _read_manifest(path: Path) -> Manifest | None:
    try:
        return Manifest(**orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None

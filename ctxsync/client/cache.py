"""A client-side cache of view hashes, kept correct by Redis' server-assisted invalidation.

Redis remembers which keys a tracked connection read (CLIENT TRACKING ON) and, when one of them is
modified (the connector's compare-and-set script, an expiry, FLUSHALL), publishes the key on
`__redis__:invalidate` to the connection named by REDIRECT. The cache drains that connection before it
answers any read, so a value is never served after the invalidation for it reached this process.

Why not redis-py's own `CacheConfig`: redis-py 5.3 refuses client-side caching on servers older than
7.4 (Debian ships 7.0), so the two connections are driven here directly (RESP2 + REDIRECT works on 6.0+).
Reads are pipelined on the tracked connection itself: a redis-py Pipeline would take another, untracked
connection from the pool.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis

INVALIDATE_CHANNEL = "__redis__:invalidate"
Fields = dict[str, str]
V = TypeVar("V")
_MISSING: Any = object()


def _fields(reply: Any) -> Fields:
    """HGETALL's RESP2 reply (a flat field/value list) as text."""
    items = [item.decode() if isinstance(item, bytes) else item for item in reply or ()]
    return dict(zip(items[::2], items[1::2]))


class CacheNotPermitted(PermissionError):
    """The Redis user may not track keys (model users of `ctxsync acl apply` may not): no cached reads."""


class TrackedCache(Generic[V]):
    """Hash reads (HGETALL) through an LRU cache invalidated by the server. Entries are kept decoded
    (`decode` of the fields, {} for a missing key), so a hit costs a dict lookup. Thread-safe (one lock)."""

    def __init__(self, pool: redis.ConnectionPool, decode: Callable[[Fields], V], max_entries: int = 100_000) -> None:
        self.decode = decode
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._listener = pool.make_connection()
        self._reader = pool.make_connection()
        self._listener_id: int | None = None
        self._reader.register_connect_callback(self._track)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def read(self, keys: list[str]) -> list[V]:
        """The decoded hashes at `keys`, fresh as of the invalidations received so far."""
        with self._lock:
            self._check_reader()
            self._connect()
            self._drain()
            entries = self._entries
            found = [entries.get(key, _MISSING) for key in keys]
            missing = [key for key, value in zip(keys, found) if value is _MISSING]
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            if missing:
                fetched = {key: self.decode(fields) for key, fields in zip(missing, self._fetch(missing))}
                for key, value in fetched.items():
                    self._store(key, value)
                found = [fetched[key] if value is _MISSING else value for key, value in zip(keys, found)]
            for key in keys:
                if key in entries:
                    entries.move_to_end(key)
            return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._reader.disconnect()
            self._listener.disconnect()
            self._listener_id = None

    def _connect(self) -> None:
        """(Re)connect the listener first: the reader's REDIRECT names the listener's client id."""
        if self._listener_id is None:
            self._entries.clear()
            self._reader.disconnect()  # its tracking pointed at a listener that is gone
            self._listener.disconnect()
            self._listener.send_command("CLIENT", "ID")
            try:
                self._listener_id = int(self._listener.read_response())
            except redis.exceptions.NoPermissionError:
                raise CacheNotPermitted(
                    "cache=True needs CLIENT TRACKING, which a model's own Redis user is not granted (Redis 7.0 "
                    "cannot limit tracking to granted keys: docs/security.md); use cache=False") from None
            self._listener.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            self._listener.read_response()  # the subscribe confirmation
        self._reader.connect()  # no-op when connected; a (re)connect runs _track

    def _check_reader(self) -> None:
        """A closed reader means the server stopped tracking for it (and, on RESP2, nothing tells the
        listener): the cache goes. The reader never receives unsolicited data, so anything readable on
        its socket is the server's close."""
        try:
            if self._reader._sock is not None and self._reader.can_read(timeout=0):
                self._reader.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        else:
            return
        self._reader.disconnect()
        self._entries.clear()

    def _track(self, connection: Any) -> None:
        """Connect callback of the reader: tracking is per connection, so a reconnect starts it again,
        and whatever was cached before is no longer covered by invalidations."""
        connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", self._listener_id)
        reply = connection.read_response()
        if reply not in (b"OK", "OK"):
            raise redis.ConnectionError(f"CLIENT TRACKING refused: {reply!r}")
        self._entries.clear()

    def _drain(self) -> None:
        """Apply every invalidation already received. A lost listener means lost invalidations: the
        whole cache goes, and the next read reconnects both connections."""
        try:
            while self._listener.can_read(timeout=0):
                message = self._listener.read_response()
                if isinstance(message, list) and len(message) == 3 and message[0] in (b"message", "message"):
                    self._invalidate(message[2])
        except (redis.ConnectionError, redis.TimeoutError):
            self._listener_id = None
            self._entries.clear()
            self._connect()

    def _invalidate(self, keys: Any) -> None:
        if keys is None:  # FLUSHALL/FLUSHDB, or the server dropped its tracking table
            self.invalidations += len(self._entries)
            self._entries.clear()
            return
        for key in keys:
            if self._entries.pop(key.decode() if isinstance(key, bytes) else key, _MISSING) is not _MISSING:
                self.invalidations += 1

    def _fetch(self, keys: list[str]) -> list[Fields]:
        """HGETALL of each key, pipelined on the tracked connection (one round trip)."""
        reader = self._reader
        try:
            reader.send_packed_command(reader.pack_commands([("HGETALL", key) for key in keys]))
            return [_fields(reader.read_response()) for _ in keys]
        except (redis.ConnectionError, redis.TimeoutError):
            reader.disconnect()
            self._entries.clear()
            raise

    def _store(self, key: str, value: V) -> None:
        self._entries[key] = value
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

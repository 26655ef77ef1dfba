"""The erase record: which users were erased, and when (transforms/erasure.py says what that means).

Why a record and not only an event: an erase command reaches the job once, but the user's data can come
by again afterwards (events still queued behind it, `dlq redrive`, `replay`, `run --fresh`, a restore from
an older savepoint or snapshot). Every writer consults the record before it writes: the Redis view script
(atomically, in the same script run as the write: redis_views.CAS_SCRIPT), the Elasticsearch writer, the
job before it processes an event, redrive, replay, snapshot restore and verify.

Layout: one Redis hash `<prefix>:erased`, field = `name_field(name)`, value = the erase time as ISO text
(UTC, milliseconds: the form of the views' times, which the Redis script compares it with);
a counter `<prefix>:erased:serial`, raised by every erase, tells a reader holding a copy (the job) when to
read the hash again. Names are the forms the stores hold a user under: the clear userId and, with privacy
on, the token. A field is a SHA-256 of the name, so the record does not list erased users' ids; it is not
a secret either (anyone who guesses an id can test it), which is what lets every writer check it. It is
kept with privacy on and off alike; with privacy on, the key store's erase marker is kept too.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from transforms.erasure import oldest_ms, payload_erased
from transforms.timestamps import format_iso_ms, parse_iso_ms

if TYPE_CHECKING:
    from ctxsync.io.es_history import EsDoc


def erased_key(prefix: str) -> str:
    return f"{prefix}:erased"


def serial_key(prefix: str) -> str:
    return f"{prefix}:erased:serial"


@lru_cache(maxsize=65_536)  # asked for every view written: users repeat
def name_field(name: str) -> str:
    """The hash field that stands for one name of a user."""
    return hashlib.sha256(b"ctxsync-erased\0" + name.encode()).hexdigest()[:32]


def _ms(stamp: bytes | str) -> int:
    """An erase time as stored (ISO text) in epoch ms; unreadable counts as the end of time (all is older)."""
    text = stamp.decode() if isinstance(stamp, bytes) else stamp
    return parse_iso_ms(text) or 2**62


class EraseRecord:
    """Read and write the record in one Redis."""

    def __init__(self, client: Any, prefix: str = "ctx") -> None:
        self.client = client
        self.prefix = prefix
        self.key = erased_key(prefix)

    def add(self, names: Iterable[str], at_ms: int) -> None:
        """Record an erase of the user known by `names` at `at_ms` (a later erase of the same user wins)."""
        pipe = self.client.pipeline(transaction=True)
        for name in names:
            pipe.hset(self.key, name_field(name), format_iso_ms(at_ms))
        pipe.incr(serial_key(self.prefix))
        pipe.execute()

    def erased_at(self, names: Iterable[str]) -> dict[str, int]:
        """name -> erase time of the given names that were erased (one round trip)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        found = self.client.hmget(self.key, [name_field(n) for n in wanted])
        return {name: _ms(at) for name, at in zip(wanted, found) if at is not None}

    def fields(self) -> dict[str, int]:
        """Every field -> erase time (for readers that check many users: the job, verify)."""
        return {(f.decode() if isinstance(f, bytes) else f): _ms(at) for f, at in self.client.hgetall(self.key).items()}

    def serial(self) -> int:
        return int(self.client.get(serial_key(self.prefix)) or 0)


class ErasedUsers:
    """A reader's copy of the record, read again when the serial moved (one GET per `refresh`): the job
    refreshes before each batch, so an erase recorded before a batch starts applies to all of it."""

    def __init__(self, record: EraseRecord) -> None:
        self.record = record
        self.serial = -1
        self.by_field: dict[str, int] = {}

    def refresh(self) -> "ErasedUsers":
        serial = self.record.serial()
        if serial != self.serial:
            self.by_field, self.serial = self.record.fields(), serial
        return self

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def at(self, name: str) -> int | None:
        """The erase time of the user this name (userId or token) stands for, or None."""
        return self.by_field.get(name_field(name)) if self.by_field else None


def erased_docs(record: EraseRecord, docs: list[EsDoc]) -> list[EsDoc]:
    """The Elasticsearch documents that belong to an erased user and predate the erase (history by
    contextDelta.userId, violations by their aggregate key's user; either may be a token)."""
    names = {id(doc): _doc_user(doc) for doc in docs}
    erased = record.erased_at(n for n in names.values() if n)
    if not erased:
        return []
    out = []
    for doc in docs:
        at = erased.get(names[id(doc)] or "")
        if at is not None:
            ts = parse_iso_ms(str(doc.source.get("timestamp", "")))
            if ts is None or ts <= at:
                out.append(doc)
    return out


def _doc_user(doc: EsDoc) -> str | None:
    source = doc.source
    if "kind" in source:
        key = source.get("key")
        return key.partition(":")[2] if isinstance(key, str) else None
    user = (source.get("contextDelta") or {}).get("userId")
    return user if isinstance(user, str) else None


def erased_events(record: EraseRecord) -> Callable[[Any], bool]:
    """A test for parsed events (`replay`, `dlq redrive`): does this one belong to a user erased after it
    happened? The record is read once, when the test is made."""
    users = ErasedUsers(record).refresh()

    def erased(doc: Any) -> bool:
        return bool(users) and payload_erased(doc, users.at) is not None

    return erased


class ErasedViews:
    """A test for view records (`snapshot restore`): does this one hold data from before its user's erase?
    Counts what it refused. The record is read once, when the test is made."""

    def __init__(self, record: EraseRecord) -> None:
        self.users = ErasedUsers(record).refresh()
        self.refused = 0

    def __call__(self, view: dict[str, Any]) -> bool:
        at = self.users.at(view["userId"]) if self.users else None
        if at is None or oldest_ms(view) > at:
            return False
        self.refused += 1
        return True

"""User ids as the protected stores name them, and protected records opened for an authorized reader.

With privacy on (a profile's `privacy:`, docs/security.md), the job writes the history, the violations and
the dead letters with users named by token (`pt:...`, a keyed HMAC) and protected values encrypted under
each user's data key; the views (Redis, the views topic) keep clear ids, because models read them. So a
command that takes a user id must search the history by the user's *token*, and a command that rebuilds or
shows values from the history must decrypt them, or it finds nothing, compares tokens with clear ids, or
shows ciphertext. Every such command goes through one `PrivacyLookup`.

Opening one needs the profile's master key and key store: that is what makes a caller an authorized reader
(the rule of `ctxsync pii reveal`). A caller who cannot open them is refused with one line, never served
ciphertext or empty results. Records of an erased user cannot be opened (the data key is deleted: the
point of crypto-shredding); callers leave them out and say how many.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ctxsync.errors import CtxsyncError, RuntimeFailure
from ctxsync.io.history_topic import HistoryRecord
from ctxsync.io.keystore import KeyStore, open_protector, open_store
from transforms.privacy import CIPHER_PREFIX, Protector, reveal


@dataclass
class Opened:
    """How many protected records a command could not open (their user's data key is gone)."""

    shredded: int = 0


@dataclass
class PrivacyLookup:
    """A profile's privacy as its readers need it: user id -> token, protected records -> clear records."""

    protector: Protector
    store: KeyStore
    _keys: dict[str, bytes | None] = field(default_factory=dict, repr=False)

    def token(self, user: str) -> str:
        """The token the history, violations and dead letters name `user` by."""
        return self.protector.token(user)

    def _key(self, token: str) -> bytes | None:
        """The user's data key, read once per token (never created: a reader makes no keys)."""
        if token not in self._keys:
            self._keys[token] = self.store.existing_key(token)
        return self._keys[token]

    def forget(self) -> None:
        """Drop the keys read so far, so a long-lived reader (`verify --every`) holds no erased user's key."""
        self._keys.clear()

    def open(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """A history or dead-letter record with its encrypted values decrypted (tokens stay tokens), or
        None if it cannot be: the user was erased (no key), or a key that does not fit."""
        token = record.get("keyId") or (record.get("contextDelta") or {}).get("userId")
        key = self._key(token) if isinstance(token, str) else None
        if key is None:
            return None
        try:
            return reveal(record, key)
        except ValueError:
            return None

    def open_history(self, records: Iterable[HistoryRecord], opened: Opened, user: str | None = None
                     ) -> Iterator[HistoryRecord]:
        """History records (only those naming `user`'s token, if given) with their values decrypted; those of
        erased users are left out (counted in `opened`). A record that is not protected (not JSON, nothing
        encrypted) passes as it is, for the caller's own checks."""
        needle = self.token(user).encode() if user is not None else None
        for record in records:
            if needle is not None and needle not in record.raw:
                continue
            if CIPHER_PREFIX.encode() not in record.raw:
                yield record
                continue
            try:
                doc = orjson.loads(record.raw)
            except orjson.JSONDecodeError:
                yield record
                continue
            clear = self.open(doc) if isinstance(doc, dict) else None
            if clear is None:
                opened.shredded += 1
                continue
            yield record._replace(raw=orjson.dumps(clear))

    def readable(self, record: dict[str, Any]) -> dict[str, Any]:
        """A history record or dead letter decrypted where its user's key allows, else as it is (a dead letter
        of an erased user keeps its ciphertext: `DeadLetter.has_payload` is then False)."""
        if CIPHER_PREFIX.encode() not in orjson.dumps(record):
            return record
        return self.open(record) or record

    def clear_views(self, views: dict[str, dict[str, Any]], users: Iterable[str | None]) -> dict[str, dict[str, Any]]:
        """Views rebuilt from the history (keyed `<category>:<token>`) renamed to the clear ids among
        `users` (those the views topic, Redis or the caller name), as Redis and the views topic hold them;
        a view of a user not among them keeps its token."""
        names = {self.token(user): user for user in users if user}
        out: dict[str, dict[str, Any]] = {}
        for key, view in views.items():
            user = names.get(view.get("userId", ""))
            if user is not None:
                view = {**view, "key": f"{view['category']}:{user}", "userId": user}
            out[view["key"]] = view
        return out


def privacy_lookup(job: Any, profile: Any) -> PrivacyLookup | None:
    """The lookup of a resolved profile, or None where privacy is off. A caller without the master key or
    the key store is refused with one line (exit 1): the history is protected and cannot be read in clear."""
    from ctxsync.config import privacy_policy

    policy = privacy_policy(job, profile)
    if policy is None:
        return None
    try:
        store = open_store(policy.keys)
        return PrivacyLookup(open_protector(policy, store), store)
    except CtxsyncError as exc:
        raise RuntimeFailure(f"privacy is on in this profile and its key store cannot be opened: {exc.args[0]}",
                             exc.hint or "only a reader with the profile's master key can read the protected "
                             "history") from None

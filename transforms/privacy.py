"""PII protection of what leaves the job: pseudonyms (keyed HMAC) and per-user encryption (AES-GCM).

Pure: keys come in as bytes and a callable, so every engine and the reference runner share this code and
the key store stays in ctxsync.io. What is protected (jobs.yaml `privacy:`):

- `fields`: dotted paths of the event (`contextDelta.userId`, `contextDelta.sessionId`, ...), each
  `pseudonymize` -> `pt:<token>`, a keyed HMAC-SHA256 of the value: stable, so history still joins and
  searches by user, and without the key nobody can test a guess; or `encrypt` -> `enc:v1:<base64>`.
- `attributes`: names whose `current`/`previous` values (history) and expected/actual values (conflict
  violations) are encrypted.

Encryption uses the *user's* data key (`data_key(token)`, random per user, kept wrapped in the key store),
with the user's token as associated data: deleting that one key makes all of the user's ciphertexts in the
append-only topics unreadable (crypto-shredding). `data_key` returns None for an erased user: their values
are then dropped (`null`), never written in clear. Views are not touched: they go to Redis, where only
models granted the category may read them (docs/security.md).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from transforms.json_values import dumps_compact
from transforms.records import CONFLICT, DEAD_LETTER, DUPLICATE, HISTORY, ORDERING
from transforms.settings import USER_FIELD, Mode, PrivacyPolicy
from transforms.timestamps import parse_iso_ms

TOKEN_PREFIX = "pt:"
CIPHER_PREFIX = "enc:v1:"
UNATTRIBUTED = "~unattributed"  # key id of dead letters whose payload names no user
_NONCE = 12


def pseudonym(token_key: bytes, value: str) -> str:
    """The stable token of a value: `pt:` + base64url of the first 18 bytes of HMAC-SHA256 (144 bits)."""
    digest = hmac.new(token_key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:18]
    return TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode()


def encrypt_value(data_key: bytes, value: Any, context: str) -> str:
    """`enc:v1:` + base64 of nonce + AES-GCM(JSON of value); `context` (the user's token) is authenticated."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(data_key).encrypt(nonce, orjson.dumps(value), context.encode())
    return CIPHER_PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt_value(data_key: bytes, text: str, context: str) -> Any:
    """The value `encrypt_value` sealed; ValueError if the text, key or context does not fit."""
    if not is_encrypted(text):
        raise ValueError("not an encrypted value")
    try:
        blob = base64.b64decode(text[len(CIPHER_PREFIX):], validate=True)
        return orjson.loads(AESGCM(data_key).decrypt(blob[:_NONCE], blob[_NONCE:], context.encode()))
    except (InvalidTag, ValueError) as exc:
        raise ValueError("cannot decrypt: wrong key or user, or the value was altered") from exc


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CIPHER_PREFIX)


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any] | None, str]:
    """(the dict that holds the path's last part, that part), or (None, _) if the path is absent."""
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None, path[-1]
    return (node if isinstance(node, dict) and path[-1] in node else None), path[-1]


def _user_of(doc: Any) -> str | None:
    delta = doc.get("contextDelta") if isinstance(doc, dict) else None
    user = delta.get("userId") if isinstance(delta, dict) else None
    return user if isinstance(user, str) and user else None


class KeyRing(Protocol):
    """The operator's view of the key store (ctxsync.io.keystore), by user token."""

    def data_key(self, token: str) -> bytes | None:
        """The user's data key, created on first use; None if it cannot be had."""

    def erased_at(self, token: str) -> int | None:
        """When the user was erased (epoch ms), or None."""


class Protector:
    """Protects the records of one job with the pseudonym key and the users' data keys."""

    def __init__(self, policy: PrivacyPolicy, token_key: bytes, keys: KeyRing, control_key: bytes | None = None) -> None:
        self.policy = policy
        self.token_key = token_key
        self.keys = keys
        self.control_key = control_key
        self.paths = [(tuple(p.split(".")), mode) for p, mode in policy.fields.items() if p != USER_FIELD]
        self.attributes = policy.attributes

    def token(self, value: str) -> str:
        return pseudonym(self.token_key, value)

    def _seal(self, token: str, value: Any) -> str | None:
        key = self.keys.data_key(token)
        return None if key is None else encrypt_value(key, value, token)

    def _apply(self, mode: Mode, token: str, value: Any) -> Any:
        if value is None:
            return None
        if mode == "pseudonymize":
            return self.token(value if isinstance(value, str) else dumps_compact(value))
        return self._seal(token, value)

    def history(self, record: dict[str, Any], user_id: str) -> dict[str, Any]:
        """A history record (or any event-shaped dict) with its PII protected; the input is not changed."""
        token = self.token(user_id)
        out = orjson.loads(orjson.dumps(record))  # a deep copy of plain JSON
        delta = out.get("contextDelta")
        if isinstance(delta, dict):
            delta["userId"] = token
            updates = delta.get("updates")
            if isinstance(updates, dict):
                for name, mode in self.attributes.items():
                    update = updates.get(name)
                    if isinstance(update, dict):
                        for part in ("current", "previous"):
                            if part in update:
                                update[part] = self._apply(mode, token, update[part])
        for path, mode in self.paths:
            holder, last = _get(out, path)
            if holder is not None:
                holder[last] = self._apply(mode, token, holder[last])
        if "aggregates" in out:
            out["aggregates"] = [self.key(k, user_id, token) for k in out["aggregates"]]
        return out

    def suppressed(self, user_id: str, ts: int) -> bool:
        """An event of an erased user from before the erase (a replay from an older savepoint, or a late
        copy): it must not bring the user back, so the job drops it without a trace."""
        erased = self.keys.erased_at(self.token(user_id))
        return erased is not None and ts <= erased

    def key(self, aggregate_key: str, user_id: str, token: str | None = None) -> str:
        """`<category>:<userId>` -> `<category>:<token>`."""
        category = aggregate_key[:len(aggregate_key) - len(user_id) - 1]
        return f"{category}:{token or self.token(user_id)}"

    def violation(self, record: dict[str, Any], user_id: str) -> dict[str, Any]:
        token = self.token(user_id)
        out = dict(record)
        out["key"] = self.key(record["key"], user_id, token)
        mismatches = record.get("mismatches")
        if mismatches:
            out["mismatches"] = [
                {**m, **{k: self._apply(self.attributes[m["attribute"]], token, m[k]) for k in ("expected", "actual")}}
                if m.get("attribute") in self.attributes else m
                for m in mismatches]
        return out

    def duplicate(self, record: dict[str, Any], user_id: str) -> dict[str, Any]:
        return {**record, "userId": self.token(user_id)}

    def dead_letter(self, record: dict[str, Any]) -> dict[str, Any]:
        """`raw` and `detail` (which may quote a value) encrypted under the data key of the user the payload
        names, if it names one (so erasing the user shreds them), else under a shared key. The payload of
        an erased user from before the erase (or of unknown time) is not kept at all: `erased: true`."""
        try:
            doc = orjson.loads(record["raw"]) if record.get("rawEncoding") == "utf-8" else None
        except orjson.JSONDecodeError:
            doc = None
        user = _user_of(doc)
        token = self.token(user) if user else UNATTRIBUTED
        out = dict(record)
        out["keyId"] = token
        if user and self._erased_before(token, doc):
            out["raw"] = out["detail"] = None
            out["erased"] = True
            return out
        out["raw"] = self._seal(token, record["raw"])
        out["detail"] = self._seal(token, record["detail"])
        return out

    def _erased_before(self, token: str, doc: dict[str, Any]) -> bool:
        erased = self.keys.erased_at(token)
        if erased is None:
            return False
        try:
            return parse_iso_ms(doc["timestamp"]) <= erased
        except (KeyError, TypeError, ValueError):
            return True

    def lines(self, lines: list[str], user_id: str | None) -> list[str]:
        """Tagged output lines (transforms.records) with every record that leaves the job protected; views
        pass unchanged. `user_id`: the user of an event's lines (None for a dead letter)."""
        out: list[str] = []
        for line in lines:
            kind = line[0]
            if kind == DEAD_LETTER or (user_id is not None and kind in (HISTORY, ORDERING, CONFLICT, DUPLICATE)):
                head, aux, text = line.split("\t", 2)
                record = orjson.loads(text)
                if kind == DEAD_LETTER:
                    record = self.dead_letter(record)
                elif kind == HISTORY:
                    record = self.history(record, user_id)
                elif kind == DUPLICATE:
                    record = self.duplicate(record, user_id)
                else:
                    record = self.violation(record, user_id)
                line = f"{head}\t{aux}\t{dumps_compact(record)}"
            out.append(line)
        return out


def reveal(record: dict[str, Any], data_key: bytes) -> dict[str, Any]:
    """A protected history or dead-letter record with its encrypted values decrypted (for an authorized
    reader who holds the user's data key); pseudonyms stay tokens (they are one-way by design)."""
    token = record.get("keyId") or (record.get("contextDelta") or {}).get("userId")
    if not isinstance(token, str):
        raise ValueError("the record names no user token (contextDelta.userId or keyId)")

    def walk(node: Any) -> Any:
        if is_encrypted(node):
            return decrypt_value(data_key, node, token)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(record)


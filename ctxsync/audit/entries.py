"""Audit entries: canonical bytes, the hash chain and Ed25519 signatures, and the verifier.

An entry is one compact JSON object with sorted keys (UTF-8): `seq` (1, 2, ...), `prev` (SHA-256 hex of the
previous entry's stored bytes; 64 zeros for the first), `time`, `action`, `actor`, `login`, `profile`,
`details`, `keyId` and `sig` (base64 Ed25519 signature of the canonical bytes of all the other fields). The
stored bytes are exactly the canonical bytes, so hashing them and re-canonicalising them agree: any edit
breaks the signature, a removed or reordered entry breaks the sequence and the next entry's `prev`.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
FIELDS = ("seq", "prev", "time", "action", "actor", "login", "profile", "details", "keyId", "sig")


class Signer(Protocol):
    """What signs entries: the key file/env signer here, or a KMS client (sign with a key that never leaves
    the KMS, e.g. AWS KMS `Sign` with an Ed25519 key, Vault transit `sign/ed25519`)."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key (verification needs only this)."""
        ...


class Ed25519Signer:
    """A private key held in this process (from CTXSYNC_AUDIT_KEY_FILE or CTXSYNC_AUDIT_KEY)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> bytes:
        return raw_public(self._key.public_key())

    def __repr__(self) -> str:  # never the key itself, even in a debug traceback's locals
        return f"Ed25519Signer(keyId={key_id(self.public_key())})"


def raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """Names the signing key in every entry (16 hex digits of its SHA-256), so a rotated key is visible."""
    return hashlib.sha256(public).hexdigest()[:16]


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(stored: bytes) -> str:
    return hashlib.sha256(stored).hexdigest()


def make_entry(signer: Signer, seq: int, prev: str, fields: dict[str, Any]) -> bytes:
    """The stored bytes of entry `seq` chained to `prev`: `fields` (time, action, actor, login, profile,
    details) plus seq, prev, keyId and the signature over all of them."""
    body = {**fields, "seq": seq, "prev": prev, "keyId": key_id(signer.public_key())}
    signature = signer.sign(canonical(body))
    return canonical({**body, "sig": base64.b64encode(signature).decode()})


@dataclass(frozen=True)
class Stored:
    """One record as the store holds it: where (file line, topic/partition/offset) and its bytes."""

    position: str
    data: bytes


@dataclass
class Verdict:
    entries: int
    last_hash: str
    problem: str | None = None  # the first bad entry and why; None = intact

    @property
    def intact(self) -> bool:
        return self.problem is None


def parse(stored: Stored) -> dict[str, Any]:
    """The entry in `stored`, or ValueError saying why it is not one."""
    try:
        doc = json.loads(stored.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict) or set(doc) != set(FIELDS) or not isinstance(doc["seq"], int):
        raise ValueError("not an audit entry (fields differ)")
    return doc


def _signature_ok(doc: dict[str, Any], public: Ed25519PublicKey) -> bool:
    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        public.verify(base64.b64decode(doc["sig"], validate=True), canonical(body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify(records: Iterable[Stored], public: Ed25519PublicKey) -> Verdict:
    """Check every record in store order: an entry, canonical, signed by `public`, numbered one more than
    the previous, chained to its hash. Stops at the first problem, naming the entry and what it shows."""
    records = list(records)
    later = _positions_by_seq(records)
    expected_key = key_id(raw_public(public))
    count, prev_hash, prev_seq = 0, GENESIS, 0
    for record in records:
        where = f"entry at {record.position}"
        try:
            doc = parse(record)
        except ValueError as exc:
            return Verdict(count, prev_hash, f"{where}: {exc}")
        where = f"entry seq {doc['seq']} at {record.position}"
        if canonical(doc) != record.data:
            return Verdict(count, prev_hash, f"{where}: not in canonical form (its bytes were edited)")
        if doc["keyId"] != expected_key:
            return Verdict(count, prev_hash, f"{where}: signed by key {doc['keyId']}, not by the given public "
                                             f"key {expected_key}")
        if not _signature_ok(doc, public):
            return Verdict(count, prev_hash, f"{where}: signature mismatch (the entry was edited)")
        seq = doc["seq"]
        if seq == prev_seq:
            return Verdict(count, prev_hash, f"{where}: sequence {seq} twice (a fork: two writers appended "
                                             f"after the same entry, or an entry was duplicated)")
        if seq < prev_seq:
            return Verdict(count, prev_hash, f"{where}: comes after seq {prev_seq} (entries were reordered)")
        if seq > prev_seq + 1:
            moved = [(s, later[s]) for s in range(prev_seq + 1, seq) if s in later]
            if moved:
                return Verdict(count, prev_hash, f"{where}: comes before seq {moved[0][0]}, which is at "
                                                 f"{moved[0][1]} (entries were reordered)")
            missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
            return Verdict(count, prev_hash, f"{where}: gap in sequence, seq {missing} missing (removed)")
        if doc["prev"] != prev_hash:
            return Verdict(count, prev_hash, f"{where}: broken chain, prev {doc['prev'][:16]}… is not the hash "
                                             f"of seq {prev_seq} ({prev_hash[:16]}…)")
        count, prev_hash, prev_seq = count + 1, digest(record.data), seq
    return Verdict(count, prev_hash)


def _positions_by_seq(records: list[Stored]) -> dict[int, str]:
    """seq -> where it is stored (first occurrence), for telling a reordered entry from a removed one."""
    found: dict[int, str] = {}
    for record in records:
        try:
            found.setdefault(parse(record)["seq"], record.position)
        except ValueError:
            continue
    return found

"""Key store of the PII protection: per-user data keys, stored wrapped by a master key (envelope encryption).

Every key is 32 random bytes, kept only wrapped (AES-GCM under the master key, the entry's id as associated
data, so an entry cannot be moved to another user). Entries are by user *token* (transforms.privacy), so
the store never names a user; `~pseudonym` and `~control` hold the job's HMAC keys the same way, so the
master key is the only secret outside the store and a KMS can take its place (`KeyWrapper`).

Erasing a user deletes the wrapped key and leaves `erasedAt` (crypto-shredding: the user's ciphertexts in
the append-only topics cannot be read by anyone any more; the marker keeps an older savepoint's replay from
bringing the user back). A user who returns after the erase gets a new key.

Backends: a Redis hash `<prefix>:keys` for server profiles (the job's workers, the CLI and readers on other
machines share it; HSETNX makes the first writer of a key win), and a directory of files for the embedded
profile and tests (one file per entry, named by a hash of its id, created with O_EXCL; a key's entry
records its id too, which rotation needs as the wrap's associated data). `rotate` moves a store to a new
master key by re-wrapping entries; the keys inside, and so tokens and ciphertexts, do not change.
No key is ever logged or printed: errors name the key's source (variable, file), never its bytes.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ctxsync.errors import RuntimeFailure, UsageError
from transforms.privacy import PrivacyPolicy, Protector

PSEUDONYM_KEY, CONTROL_KEY = "~pseudonym", "~control"
KEY_BYTES = 32
CACHE_ENTRIES = 200_000  # unwrapped keys kept per process (about 100 bytes each)


class KeyWrapper(Protocol):
    """Wraps and unwraps data keys. The KMS plug: an implementation that calls a KMS (AWS KMS Encrypt/
    Decrypt, GCP KMS, Vault transit) with `key_id` as encryption context replaces `MasterKeyWrapper`."""

    def wrap(self, key: bytes, key_id: str) -> bytes: ...

    def unwrap(self, blob: bytes, key_id: str) -> bytes: ...


class MasterKeyWrapper:
    """AES-256-GCM under a local master key (from a file or an environment variable)."""

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "MasterKeyWrapper(<key hidden>)"

    def wrap(self, key: bytes, key_id: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key, key_id.encode())

    def unwrap(self, blob: bytes, key_id: str) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], key_id.encode())
        except InvalidTag:
            raise RuntimeFailure(f"key store entry {key_id} does not open with this master key",
                                 "is it the master key the keys were made with?") from None


def master_key(env: str | None = None, file: str | None = None) -> bytes:
    """The 32-byte master key, base64 in the environment variable `env` or in `file` (env wins)."""
    if env and os.environ.get(env):
        text, where = os.environ[env], f"environment variable {env}"
    elif file:
        try:
            text, where = Path(file).read_text(), f"key file {file}"
        except OSError as exc:
            raise UsageError(f"cannot read the master key file {file}: {exc.strerror}",
                             "make one with `ctxsync pii new-key --out FILE`") from None
    else:
        raise UsageError(f"no master key: set {env or 'the master key variable'} or privacy.master_key_file",
                         "make one with `ctxsync pii new-key`")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != KEY_BYTES:
        raise UsageError(f"the master key in {where} is not base64 of 32 bytes", "make one with `ctxsync pii new-key`")
    return key


def new_key_text() -> str:
    """A fresh master key as base64 text."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class FileBackend:
    def __init__(self, path: str) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _file(self, key_id: str) -> Path:
        return self.dir / (hashlib.sha256(key_id.encode()).hexdigest() + ".key")

    def get(self, key_id: str) -> bytes | None:
        try:
            return self._file(key_id).read_bytes()
        except FileNotFoundError:
            return None

    def add(self, key_id: str, value: bytes) -> bool:
        """Create the entry unless it exists; True if this call created it."""
        try:
            fd = os.open(self._file(key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        return True

    def set(self, key_id: str, value: bytes) -> None:
        tmp = self._file(key_id).with_suffix(".tmp")
        tmp.write_bytes(value)
        os.chmod(tmp, 0o600)
        tmp.replace(self._file(key_id))

    def entries(self) -> Iterator[tuple[str | None, bytes]]:
        """(id, stored bytes) of every entry; the id is the one the entry records (None in entries
        written before entries recorded it: the file name is a one-way hash of it)."""
        for file in sorted(self.dir.glob("*.key")):
            raw = file.read_bytes()
            yield orjson.loads(raw).get("id"), raw

    def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Set the entry to `new` if it still holds `old` (the embedded profile has one writer at a time)."""
        if self.get(key_id) != old:
            return False
        self.set(key_id, new)
        return True


class RedisBackend:
    def __init__(self, client: Any, prefix: str = "ctx") -> None:
        self.client = client
        self.hash = f"{prefix}:keys"

    def get(self, key_id: str) -> bytes | None:
        return self.client.hget(self.hash, key_id)

    def add(self, key_id: str, value: bytes) -> bool:
        return bool(self.client.hsetnx(self.hash, key_id, value))

    def set(self, key_id: str, value: bytes) -> None:
        self.client.hset(self.hash, key_id, value)

    def entries(self) -> Iterator[tuple[str | None, bytes]]:
        for field, raw in self.client.hscan_iter(self.hash, count=1000):
            yield field.decode(), raw

    def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-set in one server-side step, so an erase that lands meanwhile is never overwritten."""
        return bool(self.client.eval(_REPLACE, 1, self.hash, key_id, old, new))


_REPLACE = ("if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
            "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0")


class KeyStore:
    """Data keys by id (user token), unwrapped on first use and cached for the life of the process."""

    def __init__(self, backend: FileBackend | RedisBackend, wrapper: KeyWrapper) -> None:
        self.backend = backend
        self.wrapper = wrapper
        self._cache: dict[str, tuple[bytes | None, int | None]] = {}

    def __repr__(self) -> str:
        return f"KeyStore({type(self.backend).__name__})"

    def _entry(self, key_id: str) -> tuple[bytes | None, int | None]:
        """(key, erasedAt) of an entry; absent entries are cached too (the job is the only creator of its
        users' keys, and an erase tells the job to `forget`)."""
        entry = self._cache.get(key_id)
        if entry is None:
            raw = self.backend.get(key_id)
            doc = orjson.loads(raw) if raw is not None else {}
            wrapped = doc.get("wrapped")
            key = self.wrapper.unwrap(base64.b64decode(wrapped), key_id) if wrapped else None
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            entry = self._cache[key_id] = (key, doc.get("erasedAt"))
        return entry

    def data_key(self, key_id: str) -> bytes:
        """The entry's key, created if there is none (a first sight, or a user back after an erase)."""
        key, erased = self._entry(key_id)
        if key is not None:
            return key
        value = orjson.dumps({"id": key_id, "erasedAt": erased,
                              "wrapped": base64.b64encode(self.wrapper.wrap(os.urandom(KEY_BYTES), key_id)).decode()})
        if erased is None:
            if not self.backend.add(key_id, value):  # someone else made it first: theirs counts
                self._cache.pop(key_id, None)
                return self.existing_key(key_id) or self.data_key(key_id)
        else:
            self.backend.set(key_id, value)
        self._cache.pop(key_id, None)
        return self._entry(key_id)[0]  # type: ignore[return-value]

    def existing_key(self, key_id: str) -> bytes | None:
        """The entry's key if it has one (never creates): for readers, who read the store afresh."""
        self.forget(key_id)
        return self._entry(key_id)[0]

    def erased_at(self, key_id: str) -> int | None:
        return self._entry(key_id)[1]

    def erase(self, key_id: str, at_ms: int) -> bool:
        """Delete the entry's key, keeping the erase time; True if there was a key to delete."""
        had = self._entry(key_id)[0] is not None
        self.backend.set(key_id, orjson.dumps({"wrapped": None, "erasedAt": at_ms}))
        self.forget(key_id)
        return had

    def forget(self, key_id: str) -> None:
        """Drop the cached entry, so the next use reads the store again."""
        self._cache.pop(key_id, None)


@dataclass
class Rotation:
    """What a master-key rotation did (or, planned, would do) to the entries of a key store."""

    rewrapped: int = 0
    already_new: int = 0
    erased: int = 0


def key_fingerprint(key: bytes) -> str:
    """The first 8 hex digits of SHA-256 of a key: names a master key in receipts and the audit log."""
    return hashlib.sha256(key).hexdigest()[:8]


def _opens(wrapper: KeyWrapper, blob: bytes, key_id: str) -> bytes | None:
    try:
        return wrapper.unwrap(blob, key_id)
    except RuntimeFailure:
        return None


def rotate(backend: FileBackend | RedisBackend, old: KeyWrapper, new: KeyWrapper, *, plan: bool = False) -> Rotation:
    """Re-wrap every entry (users' data keys and the job's `~pseudonym`/`~control` keys) from `old` to `new`.

    The keys themselves never change, so tokens, ciphertexts and erase markers stay as they are. Each entry
    is tried with the new key first, then the old one: no label has to be trusted, an interrupted rotation
    leaves every entry wholly on one key or the other (each write replaces one entry at once), and running
    it again re-wraps only what is left. With `plan`, nothing is written (the receipt says what would be)."""
    done = Rotation()
    for key_id, raw in backend.entries():
        while True:
            doc = orjson.loads(raw)
            if not doc.get("wrapped"):
                done.erased += 1
                break
            if key_id is None:
                raise RuntimeFailure("a key store entry does not record its id, so it cannot be re-wrapped",
                                     "it predates rotation support: recreate the store, or keep the old master key")
            blob = base64.b64decode(doc["wrapped"])
            if _opens(new, blob, key_id) is not None:
                done.already_new += 1
                break
            key = _opens(old, blob, key_id)
            if key is None:
                raise RuntimeFailure(f"key store entry {key_id} opens with neither the current nor the new master key",
                                     "is the profile's master key the one the store was made with?")
            rewrapped = orjson.dumps({**doc, "id": key_id,
                                      "wrapped": base64.b64encode(new.wrap(key, key_id)).decode()})
            if plan or backend.replace(key_id, raw, rewrapped):
                done.rewrapped += 1
                break
            raw = backend.get(key_id) or b"{}"  # changed meanwhile (an erase, say): look again
    return done


def open_backend(keys: dict[str, str]) -> FileBackend | RedisBackend:
    """The backend a policy's `keys` describe (see `open_store`)."""
    if keys.get("store") == "redis":
        from ctxsync.config import RedisEndpoint
        from ctxsync.io.clients import redis_client

        endpoint = RedisEndpoint.model_validate(orjson.loads(keys["redis"]))
        return RedisBackend(redis_client(endpoint), endpoint.prefix)
    return FileBackend(keys["path"])


def open_store(keys: dict[str, str]) -> KeyStore:
    """The key store a policy's `keys` describe: {"store": "file", "path"} or {"store": "redis", "url",
    "prefix", ...the profile's Redis TLS/ACL settings}, master key from `master_key_env` / `master_key_file`."""
    wrapper = MasterKeyWrapper(master_key(keys.get("master_key_env"), keys.get("master_key_file")))
    return KeyStore(open_backend(keys), wrapper)


def open_protector(policy: PrivacyPolicy, store: KeyStore | None = None) -> Protector:
    """The Protector of a policy, with its HMAC keys from the store (made on first use)."""
    store = store or open_store(policy.keys)
    return Protector(policy, store.data_key(PSEUDONYM_KEY), store, store.data_key(CONTROL_KEY))

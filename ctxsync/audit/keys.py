"""The audit signing key: from a PEM file (CTXSYNC_AUDIT_KEY_FILE) or the environment (CTXSYNC_AUDIT_KEY,
base64 of the raw 32-byte private key); a new one from `ctxsync audit keygen`. Error messages name the
variable or file, never a byte of the key."""
from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat, load_pem_private_key, load_pem_public_key)

from ctxsync.audit.entries import Ed25519Signer, Signer
from ctxsync.errors import UsageError

KEY_FILE_ENV, KEY_ENV = "CTXSYNC_AUDIT_KEY_FILE", "CTXSYNC_AUDIT_KEY"


def signer_from_env() -> Signer | None:
    """The configured signer, None when neither variable is set (the caller decides whether that is allowed)."""
    if os.environ.get(KEY_FILE_ENV):
        return Ed25519Signer(_key_from_file(Path(os.environ[KEY_FILE_ENV])))
    if os.environ.get(KEY_ENV):
        try:
            raw = base64.b64decode(os.environ[KEY_ENV], validate=True)
            return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(raw))
        except (binascii.Error, ValueError):
            raise UsageError(f"{KEY_ENV} is not the base64 of a 32-byte Ed25519 private key",
                             "make one with `ctxsync audit keygen --raw --out FILE`") from None
    return None


def _key_from_file(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the audit key file {path} ({KEY_FILE_ENV}): {exc.strerror}",
                         "check the path and its permissions") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the audit key file {path} can be read by other users",
                         f"chmod 600 {path}")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise UsageError(f"the audit key file {path} is not an unencrypted PEM private key",
                         "make one with `ctxsync audit keygen --out FILE`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"the audit key file {path} holds a {type(key).__name__}, not an Ed25519 key",
                         "make one with `ctxsync audit keygen --out FILE`")
    return key


def keygen(out: Path, raw: bool = False) -> str:
    """Write a new private key to `out` (mode 0600, never over an existing file): PEM, or with `raw` the
    base64 of its 32 bytes (the form of CTXSYNC_AUDIT_KEY). Returns its public key as PEM."""
    key = Ed25519PrivateKey.generate()
    data = base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())) + b"\n" if raw \
        else key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{out} exists", "a key is never overwritten: choose another file or remove it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return public_pem(key.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(path: Path) -> Ed25519PublicKey:
    """A public key file: PEM (as keygen prints it) or the base64 of the raw 32 bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the public key {path}: {exc.strerror}", "check the path") from None
    try:
        key = load_pem_public_key(data) if b"-----BEGIN" in data else \
            Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise UsageError(f"{path} is not an Ed25519 public key (PEM, or base64 of 32 bytes)",
                         "use the output of `ctxsync audit keygen`") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key

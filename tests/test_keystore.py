"""The key store (ctxsync/io/keystore.py) on files and on a real redis-server: envelope encryption, first
writer wins, erase = key gone + marker kept, master key errors that never show the key."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
import pytest

from ctxsync.errors import RuntimeFailure, UsageError
from ctxsync.io.keystore import (
    CONTROL_KEY, PSEUDONYM_KEY, FileBackend, KeyStore, MasterKeyWrapper, RedisBackend, master_key, new_key_text,
    open_protector, open_store,
)
from transforms.settings import PrivacyPolicy
from tests.fixtures_servers import redis_client, servers  # noqa: F401

MASTER = os.urandom(32)


def backends(tmp_path: Path, client) -> list:
    return [FileBackend(str(tmp_path / "keys")), RedisBackend(client, "t")]


@pytest.mark.servers
def test_keys_are_stored_wrapped_shared_between_processes_and_erased(tmp_path, redis_client):
    for backend in backends(tmp_path, redis_client):
        store, other = KeyStore(backend, MasterKeyWrapper(MASTER)), KeyStore(backend, MasterKeyWrapper(MASTER))
        key = store.data_key("pt:a")
        assert len(key) == 32 and store.data_key("pt:a") == key and other.existing_key("pt:a") == key
        assert store.data_key("pt:b") != key
        stored = backend.get("pt:a")
        assert key not in stored and base64.b64encode(key) not in stored  # wrapped, never in clear
        assert store.erase("pt:a", 1234) and not store.erase("pt:zz", 1)
        assert other.existing_key("pt:a") is None and other.erased_at("pt:a") == 1234
        assert orjson.loads(backend.get("pt:a")) == {"wrapped": None, "erasedAt": 1234}
        with pytest.raises(RuntimeFailure, match="does not open with this master key"):
            KeyStore(backend, MasterKeyWrapper(os.urandom(32))).existing_key("pt:b")


def test_an_entry_cannot_be_moved_to_another_user(tmp_path):
    backend = FileBackend(str(tmp_path))
    store = KeyStore(backend, MasterKeyWrapper(MASTER))
    store.data_key("pt:a")
    backend.set("pt:b", backend.get("pt:a"))  # copy a's wrapped key under b's id
    with pytest.raises(RuntimeFailure):
        KeyStore(backend, MasterKeyWrapper(MASTER)).existing_key("pt:b")


def test_the_master_key_comes_from_a_variable_or_file_and_errors_never_show_it(tmp_path, monkeypatch):
    text = new_key_text()
    monkeypatch.setenv("T_MASTER", text)
    assert master_key("T_MASTER") == base64.b64decode(text)
    key_file = tmp_path / "master.key"
    key_file.write_text(text + "\n")
    monkeypatch.delenv("T_MASTER")
    assert master_key("T_MASTER", str(key_file)) == base64.b64decode(text)
    monkeypatch.setenv("T_MASTER", "not-a-key-" + text[:20])
    with pytest.raises(UsageError) as bad:
        master_key("T_MASTER")
    assert "T_MASTER" in str(bad.value) and text[:20] not in str(bad.value)
    monkeypatch.delenv("T_MASTER")
    with pytest.raises(UsageError, match="no master key"):
        master_key("T_MASTER")
    assert "key hidden" in repr(MasterKeyWrapper(MASTER))


@pytest.mark.servers
def test_the_redis_store_of_a_policy_holds_the_job_keys(servers, redis_client, monkeypatch):
    from ctxsync.config import RedisEndpoint

    monkeypatch.setenv("T_MASTER", new_key_text())
    endpoint = RedisEndpoint(url=servers.endpoints()["redis"], prefix="p")
    policy = PrivacyPolicy(keys={"store": "redis", "master_key_env": "T_MASTER",
                                 "redis": endpoint.model_dump_json()})
    protector = open_protector(policy)
    again = open_protector(policy)
    assert protector.token("u1") == again.token("u1")  # the same pseudonym key for every worker
    assert protector.control_key == again.control_key
    assert set(redis_client.hkeys("p:keys")) == {PSEUDONYM_KEY.encode(), CONTROL_KEY.encode()}
    assert isinstance(open_store(policy.keys).backend, RedisBackend)

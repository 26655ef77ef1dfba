"""`ctxsync pii rotate-key` and keystore.rotate: a key store moved to a new master key, on files and on a real
redis-server, with its `key-rotate` audit entry."""
from __future__ import annotations

import base64
import socket
from pathlib import Path

import orjson
import pytest
import yaml

from ctxsync.audit.entries import verify
from ctxsync.audit.keys import load_public
from ctxsync.audit.stores import FileStore
from ctxsync.cli import main
from ctxsync.config import privacy_policy, resolve_job
from ctxsync.errors import RuntimeFailure
from ctxsync.io.keystore import (FileBackend, KeyStore, MasterKeyWrapper,
                                 key_fingerprint, open_backend, open_protector, open_store, rotate)
from transforms.privacy import is_encrypted, reveal
from tests.fixtures_servers import redis_client, servers  # noqa: F401
from tests.test_audit import key  # noqa: F401  (the audit signing key, made by `ctxsync audit keygen`)
from tests.helpers import ROOT, event

pytestmark = pytest.mark.servers


def new_key(path: Path, capsys: pytest.CaptureFixture[str]) -> bytes:
    assert main(["pii", "new-key", "--out", str(path)]) == 0
    capsys.readouterr()
    return base64.b64decode(path.read_text())


def jobs_file(tmp_path: Path, key_file: Path, redis_url: str | None) -> Path:
    """jobs.yaml with an `embedded` profile protected by `key_file`: a file key store, or Redis at `redis_url`."""
    data = yaml.safe_load((ROOT / "jobs.yaml").read_text())
    profile = data["jobs"]["context-sync"]["profiles"]["embedded"]
    profile["state_dir"] = str(tmp_path / "state")
    profile["privacy"] = {"master_key_env": None, "master_key_file": str(key_file),
                          "keystore": "redis" if redis_url else "file", "keystore_path": str(tmp_path / "keys")}
    if redis_url:
        profile["redis"] = {"url": redis_url, "prefix": "rot"}
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump(data))
    return jobs


def policy_of(jobs: Path):  # noqa: ANN201 - a PrivacyPolicy
    job = resolve_job(jobs, "context-sync", [])
    return privacy_policy(job, job.profile("embedded"))


@pytest.mark.parametrize("store", ["file", "redis"])
def test_rotation_keeps_data_readable_with_the_new_key_only_erased_users_stay_erased_and_reruns_are_no_ops(
        store, tmp_path, key, servers, redis_client, capsys):  # noqa: F811
    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    old, new = new_key(old_file, capsys), new_key(new_file, capsys)
    jobs = jobs_file(tmp_path, old_file, servers.endpoints()["redis"] if store == "redis" else None)
    protector = open_protector(policy_of(jobs))
    records = {user: protector.history(event(userId=user, contextDelta__updates={"creditScore": {"current": n}}),
                                       user) for n, user in enumerate(["u1", "u2", "u3"])}
    token_before = protector.token("u1")
    open_store(policy_of(jobs).keys).erase(protector.token("u3"), 5)

    argv = ["pii", "rotate-key", "--new-key-file", str(new_file), "--profile", "embedded", "--jobs", str(jobs)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # 2 users' keys + the pseudonym and control keys; u3 erased
    assert f"on master key {key_fingerprint(new)}: 4 entries re-wrapped, 0 already on the new key, 1 erased" in out
    assert old_file.read_text().strip() not in out and new_file.read_text().strip() not in out

    backend = open_backend(policy_of(jobs).keys)
    after = KeyStore(backend, MasterKeyWrapper(new))
    for n, user in enumerate(["u1", "u2"]):
        token = protector.token(user)
        shown = reveal(records[user], after.existing_key(token))
        assert shown["contextDelta"]["updates"]["creditScore"]["current"] == n
        with pytest.raises(RuntimeFailure, match="does not open with this master key"):
            KeyStore(backend, MasterKeyWrapper(old)).existing_key(token)
    assert after.existing_key(protector.token("u3")) is None and after.erased_at(protector.token("u3")) == 5
    assert is_encrypted(records["u3"]["contextDelta"]["sessionId"])
    assert open_protector(policy_of(jobs), after).token("u1") == token_before  # pseudonyms do not change

    assert main(argv) == 0  # a rerun re-wraps nothing
    assert "0 entries re-wrapped, 4 already on the new key, 1 erased" in capsys.readouterr().out

    log = FileStore(tmp_path / "state" / "audit.embedded.log").read()
    verdict = verify(log, load_public(key))
    assert verdict.intact and verdict.entries == 2, verdict.problem
    entries = [orjson.loads(r.data) for r in log]
    assert [e["action"] for e in entries] == ["key-rotate", "key-rotate"]
    assert entries[0]["details"] == {"job": "context-sync", "newKey": key_fingerprint(new), "toRewrap": "4",
                                     "alreadyNew": "0", "erased": "1"}
    assert entries[1]["details"]["toRewrap"] == "0"
    assert base64.b64encode(new).decode() not in str(entries) and base64.b64encode(old).decode() not in str(entries)

    jobs_file(tmp_path, new_file, servers.endpoints()["redis"] if store == "redis" else None)
    protected = tmp_path / "history.jsonl"
    protected.write_bytes(orjson.dumps(records["u1"]) + b"\n")
    assert main(["pii", "reveal", str(protected), "--profile", "embedded", "--jobs", str(jobs)]) == 0
    assert orjson.loads(capsys.readouterr().out)["contextDelta"]["sessionId"] == "s1"


def test_an_interrupted_rotation_resumes_and_an_erase_meanwhile_is_never_undone(tmp_path):
    old, new = MasterKeyWrapper(b"o" * 32), MasterKeyWrapper(b"n" * 32)
    backend = FileBackend(str(tmp_path / "keys"))
    store = KeyStore(backend, old)
    keys = {f"t{i}": store.data_key(f"t{i}") for i in range(4)}
    assert {k for k, _ in backend.entries()} == set(keys)
    # half done: two entries already on the new key, as a rotation that stopped midway leaves them
    for key_id in ("t0", "t1"):
        doc = orjson.loads(backend.get(key_id))
        backend.set(key_id, orjson.dumps({**doc, "wrapped": base64.b64encode(new.wrap(keys[key_id], key_id)).decode()}))
    store.erase("t3", 9)
    raw = backend.get("t2")
    assert not backend.replace("t2", b"something else", b"{}") and backend.get("t2") == raw  # compare-and-set
    assert rotate(backend, old, new, plan=True).rewrapped == 1 and backend.get("t2") == raw  # a plan writes nothing
    done = rotate(backend, old, new)
    assert (done.rewrapped, done.already_new, done.erased) == (1, 2, 1)
    rotated = KeyStore(backend, new)
    assert all(rotated.existing_key(k) == keys[k] for k in ("t0", "t1", "t2"))
    assert rotated.existing_key("t3") is None and rotated.erased_at("t3") == 9

    foreign = MasterKeyWrapper(b"f" * 32)
    with pytest.raises(RuntimeFailure, match="opens with neither"):
        rotate(backend, foreign, MasterKeyWrapper(b"g" * 32))


def test_bad_usage_exits_2_and_an_unreachable_store_exits_1_in_one_line(tmp_path, capsys):
    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    new_key(old_file, capsys)
    jobs = jobs_file(tmp_path, old_file, None)
    open_protector(policy_of(jobs))
    on = ["--profile", "embedded", "--jobs", str(jobs)]
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    for argv, message in (
            (["--new-key-file", str(new_file)], f"cannot read the master key file {new_file}"),
            (["--new-key-file", str(bad)], f"the master key in key file {bad} is not base64 of 32 bytes"),
            (["--new-key-file", str(old_file)], "the new master key is the profile's current one"),
            (["--new-key-env", "T_ROTATE_UNSET"], "the environment variable T_ROTATE_UNSET is not set")):
        assert main(["pii", "rotate-key", *argv, *on]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    new_key(new_file, capsys)
    jobs = jobs_file(tmp_path, old_file, f"redis://127.0.0.1:{port}")
    assert main(["pii", "rotate-key", "--new-key-file", str(new_file), *on]) == 1
    err = capsys.readouterr().err
    assert "Redis" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err

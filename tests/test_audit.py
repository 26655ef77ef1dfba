"""The signed, hash-chained audit log: entries and the verifier (unit), then the real commands (`acl apply`
against redis-server, `replay`) appending to an Apache Kafka topic and to the file store, and tampering for
real: an edited, removed or reordered entry in a copy of the topic, or in the file, fails `audit verify`
naming the entry; two writers at once do not fork the Kafka log; keys are never printed."""
from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import orjson
import pytest

from ctxsync import audit
from ctxsync.audit.entries import Ed25519Signer, Stored, canonical, digest, make_entry, verify
from ctxsync.audit.keys import keygen, load_public, signer_from_env
from ctxsync.audit.stores import KafkaStore
from ctxsync.cli import main
from ctxsync.config import resolve_job
from ctxsync.errors import UsageError
from ctxsync.io.kafka_io import producer
from tests.fixtures_servers import servers, unique  # noqa: F401
from tests.helpers import SAMPLE

pytestmark = pytest.mark.servers

FIELDS = {"time": "2026-12-02T23:00:00.000Z", "action": "replay", "actor": "alice", "login": "alice@h",
          "profile": "p", "details": {"job": "context-sync"}}


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A key made by `ctxsync audit keygen`, configured for signing; returns its public key file."""
    assert main(["audit", "keygen", "--out", str(tmp_path / "audit.pem")]) == 0
    public = tmp_path / "audit.pub"
    public.write_text(capsys.readouterr().out)
    monkeypatch.setenv("CTXSYNC_AUDIT_KEY_FILE", str(tmp_path / "audit.pem"))
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY", raising=False)
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path / "home"))
    return public


def chain(signer: Ed25519Signer, n: int) -> list[bytes]:
    store: list[bytes] = []
    for _ in range(n):
        prev = digest(store[-1]) if store else "0" * 64
        store.append(make_entry(signer, len(store) + 1, prev, {**FIELDS, "details": {"n": str(len(store))}}))
    return store


def verdict_of(lines: list[bytes], signer: Ed25519Signer) -> audit.entries.Verdict:
    public = load_public_from(signer)
    return verify([Stored(f"line {i}", line) for i, line in enumerate(lines, 1)], public)


def load_public_from(signer: Ed25519Signer):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(signer.public_key())


# --- entries and the verifier ---

def test_a_chain_verifies_and_each_kind_of_tampering_names_the_entry(key):
    signer = signer_from_env()
    lines = chain(signer, 4)
    good = verdict_of(lines, signer)
    assert good.intact and good.entries == 4 and good.last_hash == digest(lines[-1])
    doc = orjson.loads(lines[1])
    assert doc["seq"] == 2 and doc["prev"] == digest(lines[0]) and set(doc) >= {"sig", "keyId", "login"}
    assert lines[1] == canonical(doc)  # stored bytes are the canonical form

    edited = dict(doc, details={"n": "changed"})
    v = verdict_of([lines[0], canonical(edited), *lines[2:]], signer)
    assert not v.intact and v.entries == 1 and "seq 2 at line 2: signature mismatch" in v.problem
    spaced = lines[1].replace(b'","', b'", "', 1)
    assert "seq 2 at line 2: not in canonical form" in verdict_of([lines[0], spaced, *lines[2:]], signer).problem
    assert "seq 3 at line 2: gap in sequence, seq 2 missing (removed)" in \
        verdict_of([lines[0], *lines[2:]], signer).problem
    assert "seq 3 at line 2: comes before seq 2, which is at line 3 (entries were reordered)" in \
        verdict_of([lines[0], lines[2], lines[1], lines[3]], signer).problem
    assert "seq 2..3 missing" in verdict_of([lines[0], lines[3]], signer).problem
    assert "sequence 2 twice (a fork" in verdict_of([*lines[:2], lines[1], *lines[2:]], signer).problem
    assert "at line 2: not JSON" in verdict_of([lines[0], b"{oops", *lines[1:]], signer).problem


def test_a_chain_rewritten_with_another_key_is_refused(key, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    lines = chain(signer_from_env(), 2)
    forged = chain(Ed25519Signer(Ed25519PrivateKey.generate()), 2)
    public = load_public(key)
    assert verify([Stored("l1", lines[0]), Stored("l2", lines[1])], public).intact
    v = verify([Stored("l1", forged[0])], public)
    assert "seq 1 at l1: signed by key" in v.problem and "not by the given public key" in v.problem


# --- keys ---

def test_keys_come_from_a_0600_file_or_the_environment_and_are_never_printed(key, tmp_path, monkeypatch, capsys):
    pem = tmp_path / "audit.pem"
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE" not in key.read_text() and "BEGIN PUBLIC KEY" in key.read_text()
    assert main(["audit", "keygen", "--out", str(pem)]) == 2  # never over an existing key
    assert "exists" in capsys.readouterr().err
    pem.chmod(0o644)
    with pytest.raises(UsageError, match="can be read by other users"):
        signer_from_env()
    pem.chmod(0o600)

    public = keygen(tmp_path / "raw.key", raw=True)
    raw_key = (tmp_path / "raw.key").read_text().strip()
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY_FILE")
    monkeypatch.setenv("CTXSYNC_AUDIT_KEY", raw_key)
    (tmp_path / "raw.pub").write_text(public)
    signer = signer_from_env()
    assert verify([Stored("l1", chain(signer, 1)[0])], load_public(tmp_path / "raw.pub")).intact
    assert raw_key not in repr(signer)
    monkeypatch.setenv("CTXSYNC_AUDIT_KEY", raw_key[:10])
    with pytest.raises(UsageError) as caught:
        signer_from_env()
    assert raw_key[:10] not in str(caught.value) and "CTXSYNC_AUDIT_KEY is not the base64" in str(caught.value)


# --- through the real commands ---

def jobs_file(folder: Path, servers, unique: str, required: bool = False) -> Path:  # noqa: F811
    ends = servers.endpoints()
    path = folder / "jobs.yaml"
    path.write_text(f"""\
version: 1
jobs:
  context-sync:
    type: context-sync
    settings:
      categories: {{financial: [riskTolerance], behavioral: [segment]}}
    access:
      user_prefix: audit{unique}-
      models:
        risk-model: {{categories: [financial], password_env: T_AUDIT_PW}}
    profiles:
      k:
        source: {{type: kafka, bootstrap: "{ends['kafka']}", topic: events-{unique}}}
        sink: {{type: kafka, create_topics: true, partitions: 1}}
        redis: {{url: "{ends['redis']}", prefix: "a{unique}"}}
        audit: {{topic: audit-{unique}}}
      f:
        source: {{type: file}}
        sink: {{type: files}}
        redis: {{url: "{ends['redis']}", prefix: "a{unique}"}}
        state_dir: "{folder / 'state'}"
        audit: {{required: {str(required).lower()}}}
""")
    return path


@pytest.fixture
def model_password(monkeypatch, servers, unique):  # noqa: F811
    import redis

    monkeypatch.setenv("T_AUDIT_PW", "audit-model-pw-9Zq")
    yield
    client = redis.Redis.from_url(servers.endpoints()["redis"])
    client.acl_deluser(f"audit{unique}-risk-model")
    client.close()


def copy_topic(config: dict, topic: str, records: list[bytes]) -> None:
    out = producer(config)
    for n, data in enumerate(records):
        out.produce(topic, key=str(n).encode(), value=data, partition=0)
    assert out.flush(30) == 0


def test_real_commands_append_to_the_kafka_log_and_tampered_copies_fail_verify(
        key, servers, unique, tmp_path, model_password, capsys):  # noqa: F811
    jobs = str(jobs_file(tmp_path, servers, unique))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:3]))
    on = ["--jobs", jobs, "--profile", "k"]
    assert main(["--actor", "alice", "acl", "apply", *on]) == 0
    assert main(["replay", str(events), "--user", "user-00042", *on]) == 0
    assert main(["acl", "apply", "--prune", *on]) == 0
    capsys.readouterr()

    assert main(["audit", "log", *on]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    assert rows[0].split()[2:4] == ["acl-apply", "alice"] and f"topic=events-{unique}" in rows[1]
    assert "prune=true" in rows[2] and audit.login() in rows[2]
    assert "user-00042" not in "".join(rows)  # a userId filter is recorded as set, not by value
    assert main(["audit", "verify", "--public-key", str(key), *on]) == 0
    out = capsys.readouterr().out.strip()
    records = KafkaStore({"bootstrap.servers": servers.endpoints()["kafka"]}, f"audit-{unique}").read()
    assert out == f"3 entries, chain intact, last {digest(records[-1].data)}"
    assert records[0].position == f"audit-{unique}/0/0"
    assert main(["audit", "verify", "--public-key", str(key), "--contains", digest(records[-1].data), *on]) == 0
    capsys.readouterr()

    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    data = [r.data for r in records]
    edited = orjson.loads(data[1])
    edited["details"]["topic"] = "somewhere-else"
    cases = {"edited": ([data[0], canonical(edited), data[2]], "entry seq 2 at {t}/0/1: signature mismatch"),
             "removed": ([data[0], data[2]], "entry seq 3 at {t}/0/1: gap in sequence, seq 2 missing (removed)"),
             "reordered": ([data[0], data[2], data[1]], "entry seq 3 at {t}/0/1: comes before seq 2"),
             "cut": ([data[0], data[1]], None)}
    for name, (copy, problem) in cases.items():
        topic = f"audit-{unique}-{name}"
        copy_topic(config, topic, copy)
        argv = ["audit", "verify", "--public-key", str(key), "--topic", topic, *on]
        if problem is None:  # a cut tail is a valid chain: only a hash noted earlier shows it
            assert main(argv) == 0
            assert main([*argv, "--contains", digest(data[2])]) == 1
            assert "has no entry with hash" in capsys.readouterr().err
            continue
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "audit log NOT intact" in err and problem.format(t=topic) in err, err


def test_two_writers_at_once_do_not_fork_the_kafka_log(key, servers, unique, tmp_path):  # noqa: F811
    job = resolve_job(jobs_file(tmp_path, servers, unique), "context-sync", [])
    failures: list[BaseException] = []

    def write(actor: str) -> None:
        try:
            for n in range(3):
                audit.record_action("k", "savepoint", {"n": str(n)}, job=job, actor=actor)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"op{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    records = KafkaStore({"bootstrap.servers": servers.endpoints()["kafka"]}, f"audit-{unique}").read()
    verdict = verify(records, load_public(key))
    assert verdict.intact and verdict.entries == 6, verdict.problem
    actors = [orjson.loads(r.data)["actor"] for r in records]
    assert sorted(actors) == ["op0"] * 3 + ["op1"] * 3


def test_the_file_log_of_a_file_profile_detects_edits_removals_and_reordering(
        key, servers, unique, tmp_path, model_password, capsys):  # noqa: F811
    jobs = str(jobs_file(tmp_path, servers, unique))
    on = ["--jobs", jobs, "--profile", "f"]
    for _ in range(3):
        assert main(["acl", "apply", *on]) == 0
    log = tmp_path / "state" / "audit.f.log"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and oct(log.stat().st_mode & 0o077) == "0o40"  # owner rw, group r, others nothing
    verify_argv = ["audit", "verify", "--public-key", str(key), *on]
    capsys.readouterr()
    assert main(verify_argv) == 0
    assert capsys.readouterr().out.startswith("3 entries, chain intact, last ")

    edited = lines[1].replace(b'"prune":"false"', b'"prune":"true"')
    assert edited != lines[1]
    for name, copy, problem in (
            ("edited", [lines[0], edited, lines[2]], f"entry seq 2 at {log}:2: signature mismatch"),
            ("removed", [lines[1], lines[2]], f"entry seq 2 at {log}:1: gap in sequence, seq 1 missing"),
            ("reordered", [lines[1], lines[0], lines[2]], f"entry seq 2 at {log}:1: comes before seq 1")):
        log.write_bytes(b"".join(copy))
        assert main(verify_argv) == 1, name
        assert problem in capsys.readouterr().err
    log.write_bytes(b"".join([lines[0], edited, lines[2]]))
    assert main(["acl", "apply", *on]) == 0  # appending does not check the chain: verify does
    log.write_bytes(b"".join(lines) + b"garbage\n")
    assert main(["acl", "apply", *on]) == 1  # but nothing is chained to a record that is not an entry
    assert "is not an entry" in capsys.readouterr().err


def test_without_a_key_a_required_profile_refuses_and_others_run_unrecorded(
        servers, unique, tmp_path, model_password, monkeypatch, capsys):  # noqa: F811
    import redis

    monkeypatch.delenv("CTXSYNC_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY", raising=False)
    client = redis.Redis.from_url(servers.endpoints()["redis"])
    user = f"audit{unique}-risk-model"
    required = str(jobs_file(tmp_path, servers, unique, required=True))
    assert main(["acl", "apply", "--jobs", required, "--profile", "f"]) == 2
    err = capsys.readouterr().err
    assert "requires an audit log entry for acl-apply" in err and "CTXSYNC_AUDIT_KEY_FILE" in err
    assert client.acl_getuser(user) is None  # the action did not run

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(audit, "_warned", False)
    optional = str(jobs_file(tmp_path, servers, unique))
    assert main(["acl", "apply", "--jobs", optional, "--profile", "f"]) == 0
    assert main(["acl", "apply", "--jobs", optional, "--profile", "f"]) == 0
    assert client.acl_getuser(user) is not None
    assert terminal.getvalue().count("audit log off") == 1  # a reminder, once per process
    assert not (tmp_path / "state" / "audit.f.log").exists()
    client.close()
    assert os.environ.get("CTXSYNC_AUDIT_KEY_FILE") is None


class FakeFlinkRest:
    """Unit-test stand-in for Flink's REST API: one running job, a savepoint that completes at once, a cancel
    that ends it; any other job id is 404 (as Flink answers)."""

    def __init__(self, job_id: str) -> None:
        import http.server
        import json

        state = {"job": "RUNNING"}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> None:
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                path = self.path.split("?")[0]
                if not path.startswith(f"/jobs/{job_id}"):
                    return self._answer(404, {"errors": ["Job could not be found."]})
                if path.endswith("/savepoints") and self.command == "POST":
                    return self._answer(202, {"request-id": "r1"})
                if path.endswith("/savepoints/r1"):
                    return self._answer(200, {"status": {"id": "COMPLETED"},
                                              "operation": {"location": "file:///sp/savepoint-1"}})
                if self.command == "PATCH":
                    state["job"] = "CANCELED"
                    return self._answer(202, {})
                return self._answer(200, {"jid": job_id, "name": "context-sync", "state": state["job"]})

            do_GET = do_POST = do_PATCH = _route

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_savepoint_and_cancel_are_recorded_for_a_job_that_exists_and_submit_and_fresh_runs_check_first(
        key, servers, unique, tmp_path, monkeypatch, capsys):  # noqa: F811
    job_id = "ab" * 16
    rest = FakeFlinkRest(job_id)
    jobs = str(jobs_file(tmp_path, servers, unique))
    on = ["--jobmanager", rest.address, "--jobs", jobs, "--profile", "f"]
    try:
        assert main(["cancel", "cd" * 16, *on]) == 1  # unknown job: fails before anything is recorded
        assert main(["--actor", "carol", "savepoint", job_id, *on]) == 0
        assert main(["cancel", job_id, *on]) == 0
    finally:
        rest.server.shutdown()
    assert "file:///sp/savepoint-1" in capsys.readouterr().out
    assert main(["audit", "log", "--jobs", jobs, "--profile", "f", "--json"]) == 0
    entries = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["seq"], e["action"], e["actor"]) for e in entries] == [(1, "savepoint", "carol"),
                                                                      (2, "cancel", audit.login())]
    assert entries[0]["details"] == {"flink_job": job_id, "name": "context-sync", "jobmanager": rest.address,
                                     "with_savepoint": "true", "dir": ""}
    assert entries[1]["details"]["with_savepoint"] == "false"

    # submit and run --fresh ask for their entry before any work: a required profile without a key refuses
    monkeypatch.delenv("CTXSYNC_AUDIT_KEY_FILE")
    required = str(jobs_file(tmp_path, servers, unique, required=True))
    events = tmp_path / "events.jsonl"
    events.write_bytes(SAMPLE.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")
    assert main(["submit", "context-sync", "--jobs", required, "--profile", "f", "--input", str(events),
                 "--out", str(tmp_path / "out"), "--jobmanager", "127.0.0.1:1"]) == 2
    assert "requires an audit log entry for submit" in capsys.readouterr().err
    text = Path(required).read_text().replace("required: true", "required: false")
    Path(required).write_text(text.replace("audit: {topic:", "audit: {required: true, topic:"))
    assert main(["run", "context-sync", "--jobs", required, "--profile", "k", "--fresh"]) == 2
    assert "requires an audit log entry for run-fresh" in capsys.readouterr().err

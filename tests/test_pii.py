"""`ctxsync pii new-key` and `ctxsync pii reveal` (ctxsync/commands/pii.py) with a file key store."""
from __future__ import annotations

import stat

import orjson
import yaml

from ctxsync.cli import main
from ctxsync.config import privacy_policy, resolve_job
from ctxsync.io.keystore import open_protector, open_store
from transforms.privacy import is_encrypted
from tests.helpers import ROOT, event


def test_new_key_then_reveal_for_an_authorized_reader_and_not_after_an_erase(tmp_path, capsys):
    key_file = tmp_path / "master.key"
    assert main(["pii", "new-key", "--out", str(key_file)]) == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    assert secret not in capsys.readouterr().out
    assert main(["pii", "new-key", "--out", str(key_file)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err

    data = yaml.safe_load((ROOT / "jobs.yaml").read_text())
    profile = data["jobs"]["context-sync"]["profiles"]["embedded"]
    profile["privacy"] = {"master_key_env": None, "master_key_file": str(key_file), "keystore": "file",
                          "keystore_path": str(tmp_path / "keys")}
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump(data))
    job = resolve_job(jobs, "context-sync", [])
    policy = privacy_policy(job, job.profile("embedded"))
    protector = open_protector(policy)
    clear = event(contextDelta__updates={"creditScore": {"current": 701, "confidence": 0.9}})
    protected = protector.history(clear, "u1")
    assert is_encrypted(protected["contextDelta"]["sessionId"])
    records = tmp_path / "history.jsonl"
    records.write_bytes(orjson.dumps(protected) + b"\n")

    args = ["pii", "reveal", str(records), "--profile", "embedded", "--jobs", str(jobs)]
    assert main(args) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["revealed"] and shown["contextDelta"]["sessionId"] == "s1"
    assert shown["contextDelta"]["updates"]["creditScore"]["current"] == 701
    assert shown["contextDelta"]["userId"] == protector.token("u1")  # pseudonyms stay tokens

    open_store(policy.keys).erase(protector.token("u1"), 1)
    assert main(args) == 1
    shown = orjson.loads(capsys.readouterr().out)
    assert not shown["revealed"] and "erased" in shown["why"] and is_encrypted(shown["contextDelta"]["sessionId"])

"""Privacy on is a first-class mode (issue 24, item 3): with `privacy:` on the local profile, every tool built
on the history finds users by token and reads clear values for an authorized caller (the master key holder),
against the real job (Apache Kafka, redis-server key store, the Elasticsearch API):
`history` and `as-of` find the user, `verify` compares like with like (100 %), `pit-join` joins clear
values (or refuses, exit 1, without the key), `pii --help`'s example prints clear records, `dlq redrive`
re-drives the original bytes, `trace` shows clear records; and the README's local-profile flow, erase
included, with privacy on. Every expectation comes from the embedded reference run of the same events in
clear."""
from __future__ import annotations

import base64
import csv
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pytest

from ctxsync.cli import main
from ctxsync.commands.arg_types import iso_time_ms
from ctxsync.commands.replay import ReplayFilter, replay
from ctxsync.consistency.as_of import views_as_of
from ctxsync.consistency.pit_join import export_history, pit_join
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.dead_letters import HEADER_OF
from ctxsync.io.kafka_io import producer, read_topic
from ctxsync.io.keystore import new_key_text
from pipelines.file_outputs import OutputCollector
from transforms.privacy import is_encrypted
from tests.fixtures_servers import servers  # noqa: F401
from tests.helpers import ROOT
from tests.test_e2e_local import prepare, reference, run_local
from tests.test_privacy import protector_of, with_privacy

pytestmark = [pytest.mark.servers, pytest.mark.flink]
PROTECTED = "creditScore"  # encrypted in the history by jobs.yaml's privacy: section
LATER = "2030-01-01T00:00:00Z"


@dataclass
class ProtectedRun:
    """One run of the job on the local profile with privacy on, and what it should have computed."""

    job: object
    config: dict
    prefix: str
    jobs: Path
    tmp: Path
    expected: OutputCollector
    user: str  # a user whose financial view holds the protected attribute

    def cli(self, *args: str) -> list[str]:
        return [*args, "--profile", "local", "--jobs", str(self.jobs)]

    def clear_history(self) -> list[tuple[str, bytes, int]]:
        """The reference run's history records (in clear), shaped as read from the topic."""
        return [(f"ref/{n}", text.encode(), 0) for n, (_, text) in enumerate(self.expected.history)]


def clean_servers(servers) -> None:
    """Redis and the history indices empty, as the redis_client/es_client fixtures leave them (a key store
    left by another test's master key would not open)."""
    import redis
    from elasticsearch import Elasticsearch

    redis.Redis.from_url(servers.endpoints()["redis"]).flushall()
    es = Elasticsearch(servers.endpoints()["elasticsearch"], request_timeout=10)
    for name in es.indices.get(index="context-*", allow_no_indices=True):
        es.indices.delete(index=name)


@pytest.fixture(scope="module")
def run(servers, tmp_path_factory) -> ProtectedRun:  # noqa: F811
    """The README's first steps with privacy on: servers up, events replayed, `ctxsync run --profile local`."""
    tmp = tmp_path_factory.mktemp("privacy_tools")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXSYNC_MASTER_KEY", new_key_text())
        clean_servers(servers)
        prefix = f"ptools{uuid.uuid4().hex[:8]}"
        job, config = prepare(servers, mp, prefix)
        job = with_privacy(job)
        events = tmp / "events.jsonl"
        events.write_bytes(b"".join(line + b"\n" for line in generate_lines(
            GeneratorOptions(events=400, users=10, seed=17, invalid_rate=0.05))))
        expected = reference(events, job)
        assert replay(events, producer(config), f"{prefix}.events", ReplayFilter()).sent == expected.summary.read
        run_local(job, tmp, servers)
        views = [orjson.loads(text) for _, text in expected.views.values() if text]
        user = sorted(v["userId"] for v in views if PROTECTED in v["attributes"])[0]
        yield ProtectedRun(job, config, prefix, tmp / "jobs.yaml", tmp, expected, user)


def history_of(run: ProtectedRun, user: str) -> list[dict]:
    return [h for _, text in run.expected.history if (h := orjson.loads(text))["contextDelta"]["userId"] == user]


def test_history_finds_the_user_by_token_and_shows_clear_values(run, capsys):
    assert main(run.cli("history", "--user", run.user, "--json", "--limit", "10000")) == 0
    got = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = history_of(run, run.user)
    protector, _ = protector_of(run.job, None)
    assert sorted(h["eventId"] for h in got) == sorted(h["eventId"] for h in want)
    assert {h["contextDelta"]["userId"] for h in got} == {protector.token(run.user)}  # tokens stay tokens
    by_id = {h["eventId"]: h for h in want}
    assert any(PROTECTED in h["contextDelta"]["updates"] for h in got)
    for record in got:
        assert record["contextDelta"]["updates"] == by_id[record["eventId"]]["contextDelta"]["updates"]
        assert record["contextDelta"].get("sessionId") == by_id[record["eventId"]]["contextDelta"].get("sessionId")

    assert main(run.cli("history", "--user", run.user, "--attr", PROTECTED)) == 0
    table = capsys.readouterr().out
    assert "enc:v1:" not in table and f"{PROTECTED}=" in table


def test_the_pii_help_example_works_as_printed(run):
    from ctxsync.commands.pii import DESCRIPTION

    (example,) = [line.strip() for line in DESCRIPTION.splitlines() if "| ctxsync pii reveal" in line]
    command = example.replace("user-00042", run.user).replace("--profile prod", f"--profile local --jobs {run.jobs}")
    command = command.replace("ctxsync ", f"{sys.executable} -m ctxsync.cli ")
    done = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    shown = [orjson.loads(line) for line in done.stdout.splitlines()]
    want = {h["eventId"]: h for h in history_of(run, run.user)}
    assert len(shown) == len(want) > 0 and all(r["revealed"] for r in shown)
    assert all(r["contextDelta"]["updates"] == want[r["eventId"]]["contextDelta"]["updates"] for r in shown)


def test_as_of_rebuilds_the_users_clear_views_from_the_protected_history(run, capsys):
    settings = run.job.settings.to_settings()
    for at in ("2026-11-24T08:01:00Z", LATER):
        want = views_as_of(run.clear_history(), settings, iso_time_ms(at), run.user)
        code = main(run.cli("as-of", "--user", run.user, "--at", at, "--json"))
        got = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] if code == 0 else []
        assert got == want
    assert any(PROTECTED in v["attributes"] for v in got)
    assert not any(is_encrypted(a["value"]) for v in got for a in v["attributes"].values())


def test_verify_compares_like_with_like(run, capsys):
    assert main(run.cli("verify", "--json", "--no-es")) == 0
    report = orjson.loads(capsys.readouterr().out)
    live = sum(1 for _, text in run.expected.views.values() if text)
    assert report["findings"] == [] and report["ratio"] == 1.0
    assert report["consistent"] == live == report["keys_checked"] > 0
    assert report["history_records"] == run.expected.summary.accepted
    assert main(run.cli("verify", "--user", run.user)) == 0
    out = capsys.readouterr().out
    assert "consistency: 100.00 %" in out and "0 mismatches" in out


def entities_file(run: ProtectedRun, path: Path) -> Path:
    users = sorted({v["userId"] for _, text in run.expected.views.values() if text and (v := orjson.loads(text))})
    with path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["userId", "timestamp", "label"])
        for n, user in enumerate(users):
            for at in ("2026-11-24T08:01:00Z", "2026-11-24T08:02:00Z", LATER):
                rows.writerow([user, at, n % 2])
    return path


def parquet_rows(path: Path) -> list[tuple]:
    return duckdb.connect().execute("SELECT * FROM read_parquet(?) ORDER BY ALL", [str(path)]).fetchall()


def test_pit_join_decrypts_for_an_authorized_caller_and_refuses_without_the_key(run, capsys, monkeypatch, tmp_path):
    entities = entities_file(run, tmp_path / "labels.csv")
    clear_export = tmp_path / "clear.history.parquet"
    export_history(run.clear_history(), run.job.settings.to_settings(), clear_export)
    pit_join(entities, clear_export, tmp_path / "want.parquet")
    want = parquet_rows(tmp_path / "want.parquet")

    out = tmp_path / "train.parquet"
    assert main(run.cli("pit-join", str(entities), "--out", str(out))) == 0
    assert parquet_rows(out) == want
    columns = [c[0] for c in duckdb.connect().execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(out)]).fetchall()]
    protected = duckdb.connect().execute(f'SELECT count("{PROTECTED}") FROM read_parquet(?)', [str(out)]).fetchone()[0]
    assert PROTECTED in columns and protected > 0  # values, not NULLs
    again = tmp_path / "again.parquet"  # a reused export (users by token) joins the same
    assert main(run.cli("pit-join", str(entities), "--out", str(again), "--history-parquet",
                        str(tmp_path / "train.history.parquet"), "--reuse-history")) == 0
    assert parquet_rows(again) == want
    capsys.readouterr()

    monkeypatch.delenv("CTXSYNC_MASTER_KEY")  # not an authorized reader: refused, nothing written
    refused = tmp_path / "refused.parquet"
    assert main(run.cli("pit-join", str(entities), "--out", str(refused))) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "privacy is on" in err and "CTXSYNC_MASTER_KEY" in err
    assert not refused.exists()


def test_dlq_redrive_sends_the_original_bytes_and_show_reads_them(run, capsys, monkeypatch):
    want = sorted(orjson.loads(text)["raw"] for _, text in run.expected.dead_letters)
    assert main(run.cli("dlq", "show", "--json", "--limit", "1000")) == 0
    shown = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(d["raw"] for d in shown) == want
    assert main(run.cli("dlq", "redrive")) == 0
    assert f"re-drove {len(want)} dead letters" in capsys.readouterr().out
    sent = [m.value() for m in read_topic(run.config, f"{run.prefix}.events")
            if any(k == HEADER_OF for k, _ in (m.headers() or []))]
    encodings = {orjson.loads(text)["raw"]: orjson.loads(text)["rawEncoding"] for _, text in run.expected.dead_letters}
    originals = sorted(base64.b64decode(r) if encodings[r] == "base64" else r.encode() for r in want)
    assert sorted(sent) == originals and not any(value.startswith(b"enc:v1:") for value in sent)

    monkeypatch.delenv("CTXSYNC_MASTER_KEY")  # reasons and stages are clear; payloads need the key
    assert main(run.cli("dlq", "list")) == 0
    assert f"{len(want)} dead letters" in capsys.readouterr().out
    assert main(run.cli("dlq", "show")) == 1
    assert "privacy is on" in capsys.readouterr().err


def test_trace_shows_the_clear_history_record_and_finds_the_dead_letter(run, capsys):
    record = next(h for h in history_of(run, run.user) if PROTECTED in h["contextDelta"]["updates"])
    assert main(run.cli("trace", record["eventId"], "--since", "1d", "--json")) == 0
    hops = orjson.loads(capsys.readouterr().out)["hops"]
    (history,) = [h for h in hops if h["stage"] == "history"]
    assert history["record"]["contextDelta"]["updates"] == record["contextDelta"]["updates"]
    assert any(h["stage"] == "redis view" for h in hops) and any(h["stage"] == "es history" for h in hops)
    letter, event_id = next((d, i) for _, text in run.expected.dead_letters
                            if isinstance(i := event_id_of((d := orjson.loads(text))["raw"]), str) and i)
    assert main(run.cli("trace", event_id, "--since", "1d", "--json")) == 0
    dead = [h for h in orjson.loads(capsys.readouterr().out)["hops"] if h["stage"] == "dlq"]
    assert [h["record"]["raw"] for h in dead] == [letter["raw"]]
    assert dead[0]["record"]["detail"] == letter["detail"]


def event_id_of(raw: str) -> object:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc.get("eventId") if isinstance(doc, dict) else None


def test_the_readme_local_flow_runs_with_privacy_on(run, capsys, tmp_path):
    """run (the fixture) -> a model reads its view -> history, as-of, trace, verify, pit-join -> erase ->
    verify, as README's "Five minutes on the local profile" and docs/operations.md run them."""
    from ctxsync.client import ContextClient

    view = orjson.loads(run.expected.views[f"financial:{run.user}"][1])
    model = ContextClient.from_profile("risk-model", "local", jobs=run.jobs)
    assert model.get(run.user).value(PROTECTED) == view["attributes"][PROTECTED]["value"]
    event_id = view["attributes"][PROTECTED]["eventId"]
    entities = entities_file(run, tmp_path / "labels.csv")
    for command in (["history", "--user", run.user, "--attr", PROTECTED], ["as-of", "--user", run.user, "--at", LATER],
                    ["trace", event_id, "--since", "1d"], ["verify"],
                    ["pit-join", str(entities), "--out", str(tmp_path / "train.parquet")]):
        assert main(run.cli(*command)) == 0, command
    printed = capsys.readouterr().out
    assert "enc:v1:" not in printed and "consistency: 100.00 %" in printed

    assert main(run.cli("erase", "--user", run.user)) == 0
    assert "data key deleted" in capsys.readouterr().out
    assert main(run.cli("verify", "--json")) == 0
    report = orjson.loads(capsys.readouterr().out)
    live = [key for key, (_, text) in run.expected.views.items() if text]
    mine = [key for key in live if key.endswith(f":{run.user}")]
    assert report["findings"] == [] and report["ratio"] == 1.0 and report["consistent"] == len(live) - len(mine) > 0
    assert main(run.cli("history", "--user", run.user)) == 1
    assert main(run.cli("as-of", "--user", run.user, "--at", LATER)) == 1
    assert "left out" in capsys.readouterr().err

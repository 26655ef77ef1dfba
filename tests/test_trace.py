"""`ctxsync trace`: events produced to Kafka, the local-profile job (Flink) and its connectors run, then
each event is followed to every place it reached, with times that only move forward along its path."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import orjson
import pytest

from ctxsync import cli
from ctxsync.cli import main
from ctxsync.config import Profile, resolve_job
from ctxsync.io.es_history import TRACE_FIELD, search_history
from ctxsync.io.kafka_io import producer
from ctxsync.observe.trace import first_views, names_id
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT, event
from tests.published import published
from tests.test_e2e_local import prepare, run_local

pytestmark = pytest.mark.servers

TARGET = "churn-predictor"


def events(unique: str) -> list[dict]:
    """One user's small story: an update, one touching two categories, a late one (an ordering
    violation), and an invalid one (no confidence: a dead letter)."""
    user = f"user-{unique}"

    def mine(n: int, ts: str, **changes) -> dict:
        return event(eventId=f"{unique}-{n}", timestamp=ts, contextDelta__userId=user,
                     propagationRules={"targetModels": [TARGET]}, **changes)

    invalid = mine(4, "2026-11-24T10:00:04.000Z")
    del invalid["contextDelta"]["updates"]["segment"]["confidence"]
    return [
        mine(1, "2026-11-24T10:00:01.000Z"),
        mine(2, "2026-11-24T10:00:02.000Z", contextDelta__updates={
            "segment": {"current": "casual", "confidence": 0.7},
            "riskTolerance": {"current": "low", "confidence": 0.8}}),
        mine(3, "2026-11-24T10:00:00.500Z", contextDelta__updates={"lastAction": {"current": "buy", "confidence": 1}}),
        invalid,
    ]


def local_without_metrics(job):
    """The test's job with its metrics endpoints off: fixed ports must not clash between test runs."""
    data = job.profiles["local"].model_dump()
    data["metrics"] = {"host": "127.0.0.1", "job_port": None, "connector_ports": {}}
    return job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})


def trace(tmp_path, event_id: str, capsys, *extra: str) -> tuple[int, str, str]:
    code = cli.main(["trace", event_id, "--profile", "local", "--jobs", str(tmp_path / "jobs.yaml"), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def times(hops: list[dict], stage: str) -> list[int]:
    return [h["time_ms"] for h in hops if h["stage"] == stage]


@pytest.mark.flink
def test_every_hop_of_an_event_is_found_with_monotone_times(
        servers, redis_client, es_client, unique, monkeypatch, capsys, tmp_path):
    prefix = f"trace{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    job = local_without_metrics(job)
    out = producer(config)
    for doc in events(unique):
        out.produce(f"{prefix}.events", key=doc["contextDelta"]["userId"].encode(), value=orjson.dumps(doc))
    assert out.flush(30) == 0
    run_local(job, tmp_path, servers)
    capsys.readouterr()

    # an event that touched two categories: two views, their change-stream entries, the views in Redis
    code, text, _ = trace(tmp_path, f"{unique}-2", capsys, "--json")
    assert code == 0
    hops = json.loads(text)["hops"]
    stages = [h["stage"] for h in hops]
    assert stages == ["input", "redis stream", "redis stream", "redis view", "redis view", "history", "views",
                      "views", "es history"], stages
    source = times(hops, "input")[0]
    assert hops[0]["where"].startswith(f"{prefix}.events/") and hops[0]["delta_ms"] == 0
    assert [(h["record"]["key"], h["record"]["version"]) for h in hops if h["stage"] == "views"] == \
        [(f"behavioral:user-{unique}", 2), (f"financial:user-{unique}", 1)]
    assert all(h["where"].startswith(f"ctx:changes:{TARGET} ") for h in hops if h["stage"] == "redis stream")
    assert "holds riskTolerance" in next(h["note"] for h in hops if h["where"] == f"ctx:financial:{{user-{unique}}}")
    # times only move forward along the path: produce -> Redis (the job, per batch) -> Kafka outputs -> ES
    kafka_out = times(hops, "history") + times(hops, "views")
    assert all(h["time_ms"] is not None for h in hops)
    assert source <= min(times(hops, "redis stream"))
    assert max(times(hops, "redis stream")) <= min(kafka_out)
    assert times(hops, "redis view") == times(hops, "redis stream")  # one script writes both
    assert max(times(hops, "history")) <= min(times(hops, "es history"))
    assert all(h["delta_ms"] == h["time_ms"] - source >= 0 for h in hops)

    # a late event: its ordering violation on the topic and in Elasticsearch; readable output
    code, text, _ = trace(tmp_path, f"{unique}-3", capsys)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {unique}-3   (searched the last 1h;")
    for stage in ("input", "history", "views", "violations", "redis stream", "redis view", "es history",
                  "es violations"):
        assert any(f"  {stage} " in line for line in lines), (stage, text)
    assert "ordering violation on behavioral:" in text and "lag 1500 ms" in text

    # an invalid event: the input record and its dead letter, found by the original payload
    code, text, _ = trace(tmp_path, f"{unique}-4", capsys, "--json")
    hops = json.loads(text)["hops"]
    assert code == 0 and [h["stage"] for h in hops] == ["input", "dlq"]
    assert hops[1]["record"]["origin"] == hops[0]["where"] and hops[1]["time_ms"] >= hops[0]["time_ms"]

    # the analyst's history does not show the connector's trace field
    history = search_history(es_client, f"user-{unique}")
    assert [h["eventId"] for h in history] == [f"{unique}-3", f"{unique}-1", f"{unique}-2"]
    assert all(TRACE_FIELD not in h for h in history)

    # nowhere: one line, exit 1
    code, text, err = trace(tmp_path, f"{unique}-none", capsys)
    assert code == 1 and text == "" and len(err.strip().splitlines()) == 1
    assert f"event '{unique}-none' not found in the last 1h" in err


def test_the_view_an_event_emitted_is_the_lowest_version_that_holds_it():
    def view(key: str, version: int, *ids: str) -> dict:
        return {"key": key, "version": version,
                "attributes": {f"a{n}": {"eventId": i} for n, i in enumerate(ids)}}

    later, emitted, other = view("b:u", 3, "e1", "e2"), view("b:u", 2, "e1"), view("f:u", 1, "e9")
    found = first_views([(later, "x"), (emitted, "y"), (other, "z"), (view("f:u", 4, "e1"), "w")], "e1")
    assert found == [(emitted, "y"), (view("f:u", 4, "e1"), "w")]


def test_records_that_are_not_json_are_found_by_the_id_they_hold(servers, unique, tmp_path, monkeypatch, capsys):
    """A truncated event and one that is not UTF-8 hold their ids only as text: both are found on the input
    topic and, as the job's dead letters, on the dead-letter topic; so is a dead letter whose input record
    is not in the window (another topic here)."""
    pub = published(f"tj{unique}", servers, tmp_path, monkeypatch)
    cut = orjson.dumps(event(eventId=f"{unique}-cut"))[:60]
    binary = b'{"eventId": "' + f"{unique}-bin".encode() + b'", "source": "\xff\xfe"}'
    out = producer(pub.config)
    for payload in (cut, binary):
        out.produce(pub.spec.input_topic, value=payload)
    elsewhere = {"reason": "invalid_json", "detail": "d", "stage": "parse", "rawEncoding": "utf-8",
                 "raw": '{"eventId":"' + f"{unique}-far" + '","timest', "origin": "other.events/0/7"}
    out.produce(pub.spec.dlq_topic, value=orjson.dumps(elsewhere))
    assert out.flush(10) == 0
    assert pub.process_input(resolve_job(pub.jobs, "context-sync", []).settings.to_settings()) == 2

    def hops(event_id: str) -> list[dict]:
        code = main(["trace", event_id, "--json", "--jobs", str(pub.jobs)])
        assert code == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)["hops"]

    for event_id, reason, encoding in ((f"{unique}-cut", "invalid_json", "utf-8"),
                                       (f"{unique}-bin", "not_utf8", "base64")):
        found = hops(event_id)
        assert [h["stage"] for h in found] == ["input", "dlq"], found
        assert found[0]["note"].endswith("not a JSON object: found by the id in its text")
        assert found[1]["record"]["origin"] == found[0]["where"]
        assert (found[1]["record"]["reason"], found[1]["record"]["rawEncoding"]) == (reason, encoding)
    far = hops(f"{unique}-far")
    assert [(h["stage"], h["record"]["origin"]) for h in far] == [("dlq", "other.events/0/7")]
    assert main(["trace", f"{unique}-cu", "--jobs", str(pub.jobs)]) == 1  # a prefix of an id is not the id


def test_names_id_needs_the_whole_id_as_the_eventId_value():
    assert names_id(b'{"eventId" : "e-1", "times', "e-1")
    assert names_id(b'{"eventId":"caf\\u00e9"', "caf\u00e9") and names_id('{"eventId":"café"'.encode(), "café")
    assert not names_id(b'{"eventId":"e-10"', "e-1") and not names_id(b'{"previous":"e-1"', "e-1")
    assert not names_id(b'{"note":"{\\"eventId\\":\\"e-1\\"}"}', "e-1")


@pytest.mark.parametrize("since", ["1000000000000000000000000000000d", "1e30d", "3651d"])
def test_a_since_beyond_any_kafka_timestamp_is_a_usage_error(servers, unique, tmp_path, monkeypatch, since):
    """It reached Kafka's offsets_for_times as an OverflowError; now argparse refuses it: one line, exit 2."""
    pub = published(f"ts{unique}", servers, tmp_path, monkeypatch)
    result = subprocess.run([sys.executable, "-m", "ctxsync.cli", "trace", "e-1", "--since", since, "--jobs",
                             str(pub.jobs)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "CTXSYNC_DEV_DIR": str(servers.run_dir)})
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("ctxsync trace: argument --since: "), result.stderr

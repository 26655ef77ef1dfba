"""`ctxsync trace`: events produced to Kafka, the local-profile job (Flink) and its connectors run, then
each event is followed to every place it reached, with times that only move forward along its path."""
from __future__ import annotations

import json

import orjson
import pytest

from ctxsync import cli
from ctxsync.config import Profile
from ctxsync.io.es_history import TRACE_FIELD, search_history
from ctxsync.io.kafka_io import producer
from ctxsync.observe.trace import first_views
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import event
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
    data["metrics"] = {"host": "127.0.0.1", "job_port": 0, "connector_ports": {}}
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
    assert stages == ["input", "history", "views", "views", "redis stream", "redis stream", "redis view",
                      "redis view", "es history"], stages
    source = times(hops, "input")[0]
    assert hops[0]["where"].startswith(f"{prefix}.events/") and hops[0]["delta_ms"] == 0
    assert [(h["record"]["key"], h["record"]["version"]) for h in hops if h["stage"] == "views"] == \
        [(f"behavioral:user-{unique}", 2), (f"financial:user-{unique}", 1)]
    assert all(h["where"].startswith(f"ctx:changes:{TARGET} ") for h in hops if h["stage"] == "redis stream")
    assert "holds riskTolerance" in next(h["note"] for h in hops if h["where"] == f"ctx:financial:{{user-{unique}}}")
    # times only move forward along the path: produce -> job outputs -> Redis / Elasticsearch
    kafka_out = times(hops, "history") + times(hops, "views")
    assert all(h["time_ms"] is not None for h in hops)
    assert source <= min(kafka_out)
    assert max(times(hops, "views")) <= min(times(hops, "redis stream"))
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

"""`ctxsync verify` on loopback servers: views rebuilt from the history topic, compared with the views topic,
Redis and the change streams; damage of each kind is found, in-flight views are not called errors."""
from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.config import resolve_job
from ctxsync.consistency.rebuild import rebuild_views
from ctxsync.consistency.verify import BEHIND, EXTRA, MISSING, STALE, WRONG, Sources, verify
from ctxsync.io.connectors import ES_GROUP, REDIS_GROUP, elasticsearch_connector
from ctxsync.io.es_history import history_index, record_id
from ctxsync.io.history_topic import read_history
from ctxsync.io.redis_views import stream_key
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import SETTINGS, read_jsonl, reference_files
from tests.published import Published, events_file, published


def test_views_rebuilt_from_shuffled_history_equal_the_reference_views(tmp_path):
    """The history alone gives back every view, whatever order its records are read in, under both
    conflict policies (late events, stale updates, conflicts, deletes included)."""
    source = events_file(tmp_path / "events.jsonl", events=3000, users=60, seed=5)
    for policy in ("last-writer-wins", "reject"):
        settings = replace(SETTINGS, conflict_policy=policy)
        summary = reference_files(source, tmp_path / policy, settings)
        assert summary.stale_updates > 0 and summary.conflicts > 0 and summary.ordering_violations > 0
        history = (tmp_path / policy / "history.jsonl").read_bytes().splitlines()
        random.Random(7).shuffle(history)
        rebuilt = rebuild_views(((f"h/0/{n}", raw) for n, raw in enumerate(history)), settings)
        want = {v["key"]: v for v in read_jsonl(tmp_path / policy / "views.jsonl")}
        assert {k: orjson.dumps(v) for k, v in rebuilt.views.items()} == {k: orjson.dumps(v) for k, v in want.items()}
        assert rebuilt.records == summary.accepted and rebuilt.unreadable == []
    one = rebuild_views(((str(n), raw) for n, raw in enumerate(history)), settings, user="user-00003")
    assert one.views and {v["userId"] for v in one.views.values()} == {"user-00003"}


@pytest.fixture
def store(servers, redis_client, unique, tmp_path, monkeypatch) -> Published:
    """A job's outputs on this test's topics, applied to Redis by the real connector."""
    pub = published(f"vf{unique}", servers, tmp_path, monkeypatch)
    pub.publish(events_file(tmp_path / "events.jsonl"))
    pub.connect_redis(redis_client)
    return pub


def check(pub: Published, redis_client, es=None, **options):
    job = resolve_job(pub.jobs, "context-sync", [])
    sources = Sources(pub.config, pub.spec.history_topic, pub.spec.views_topic, REDIS_GROUP, redis_client,
                      es=es, es_group=ES_GROUP)
    return verify(sources, job.settings.to_settings(), **options)


@pytest.mark.servers
def test_a_clean_store_is_100_percent_consistent(store, redis_client, capsys):
    report = check(store, redis_client)
    assert report.findings == [] and report.keys_checked > 50 and report.in_flight == report.expired == 0
    assert report.consistent == report.keys_checked and report.ratio == 1.0 and report.history_complete
    assert {s.model for s in report.streams} >= {"churn-predictor"} and all(s.behind == 0 for s in report.streams)
    assert main(["verify", "--jobs", str(store.jobs)]) == 0
    out = capsys.readouterr().out
    assert "consistency: 100.00 %" in out and f"{report.keys_checked:,} consistent" in out


@pytest.mark.servers
def test_a_corrupted_hash_a_deleted_view_and_a_lagging_stream_are_all_found(store, redis_client, capsys):
    keys = sorted(k.decode() for k in redis_client.scan_iter(match="ctx:*:{*}", _type="hash"))
    corrupted, deleted = keys[0], keys[1]
    attribute = next(f.decode() for f in redis_client.hkeys(corrupted) if f.startswith(b"a:"))
    entry = orjson.loads(redis_client.hget(corrupted, attribute))
    entry["value"] = "tampered"
    redis_client.hset(corrupted, attribute, orjson.dumps(entry))
    redis_client.delete(deleted)
    stale_name = keys[2]
    redis_client.hset(stale_name, "version", int(redis_client.hget(stale_name, "version")) - 1)
    lagging = "churn-predictor"
    redis_client.xtrim(stream_key("ctx", lagging), maxlen=0)  # the model's change stream lost its entries

    report = check(store, redis_client)
    by_kind = {(f.store, f.kind): f for f in report.findings}
    aggregate = lambda name: name[len("ctx:"):].replace("{", "").replace("}", "")  # noqa: E731
    assert by_kind[("redis", WRONG)].key == aggregate(corrupted)
    assert "tampered" in by_kind[("redis", WRONG)].detail
    assert by_kind[("redis", MISSING)].key == aggregate(deleted)
    assert by_kind[("redis", STALE)].key == aggregate(stale_name)
    assert not [f for f in report.findings if f.store == "views-topic"]  # the topic itself is intact
    stream = next(s for s in report.streams if s.model == lagging)
    assert stream.behind == stream.views > 0 and stream.lag_ms > 0 and stream.length == 0
    assert sum(1 for f in report.findings if f.kind == BEHIND) == stream.behind
    assert all(s.behind == 0 for s in report.streams if s.model != lagging)
    assert report.ratio < 1.0 and report.consistent < report.keys_checked

    assert main(["verify", "--jobs", str(store.jobs), "--json"]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["counts"]["redis"] == {MISSING: 1, STALE: 1, WRONG: 1}
    assert doc["counts"][f"stream:{lagging}"][BEHIND] == stream.behind
    assert doc["ratio"] == report.ratio
    assert main(["verify", "--jobs", str(store.jobs)]) == 1
    out = capsys.readouterr().out
    assert "wrong value" in out and aggregate(corrupted) in out and f"{lagging:<28}" in out


@pytest.mark.servers
def test_an_extra_view_is_found_and_a_user_filter_checks_only_that_user(store, redis_client):
    redis_client.hset("ctx:financial:{nobody}", mapping={
        "key": "financial:nobody", "category": "financial", "userId": "nobody", "version": "1",
        "updatedAt": "2026-11-24T10:00:00.000Z", "targetModels": "[]"})
    report = check(store, redis_client)
    assert [(f.store, f.key, f.kind) for f in report.findings] == [("redis", "financial:nobody", EXTRA)]
    one = check(store, redis_client, user="user-00001")
    assert one.findings == [] and 0 < one.keys_checked <= 4


@pytest.mark.servers
def test_views_not_yet_applied_by_the_connector_are_in_flight_not_errors(
        servers, redis_client, unique, tmp_path, monkeypatch):
    pub = published(f"vi{unique}", servers, tmp_path, monkeypatch)
    source = events_file(tmp_path / "events.jsonl")
    pub.publish(source, range(1, 401))
    pub.connect_redis(redis_client)
    assert check(pub, redis_client).findings == []
    pub.publish(source, range(401, 10_000))  # the job went on; the Redis connector has not run yet
    report = check(pub, redis_client)
    assert report.findings == [] and report.in_flight > 10 and report.ratio == 1.0
    assert report.consistent == report.keys_checked - report.in_flight
    pub.connect_redis(redis_client)
    after = check(pub, redis_client)
    assert after.findings == [] and after.in_flight == 0 and after.consistent == after.keys_checked


@pytest.mark.servers
def test_history_documents_missing_from_elasticsearch_are_found(store, redis_client, es_client):
    before = check(store, redis_client, es=es_client)  # the ES connector has not run: all in flight
    assert before.findings == [] and before.es_checked == 0 and before.es_in_flight == before.history_records
    spec = store.spec
    elasticsearch_connector(store.config, es_client, (spec.history_topic, spec.violations_topic), spec.dlq_topic,
                            ES_GROUP).run(until_caught_up=True, idle_timeout_s=30)
    clean = check(store, redis_client, es=es_client)
    assert clean.findings == [] and clean.es_checked == clean.history_records > 500 and clean.es_in_flight == 0
    lost = next(read_history(store.config, spec.history_topic))
    record = orjson.loads(lost.raw)
    es_client.delete(index=history_index(record["timestamp"]), id=record_id(record), refresh=True)
    report = check(store, redis_client, es=es_client)
    assert [(f.store, f.key, f.kind) for f in report.findings] == [("elasticsearch", lost.origin, MISSING)]
    assert report.ratio == 1.0  # the views are still right; the finding alone makes the exit code 1


@pytest.mark.servers
def test_sample_checks_that_many_keys(store, redis_client):
    report = check(store, redis_client, sample=10, seed=1)
    assert report.keys_checked == 10 and report.sampled and report.findings == []
    redis_client.delete(*redis_client.scan_iter(match="ctx:*:{*}", _type="hash"))
    damaged = check(store, redis_client, sample=10, seed=1)
    assert [f.kind for f in damaged.findings] == [MISSING] * 10 and damaged.ratio == 0.0


@pytest.mark.servers
def test_topics_the_job_has_not_created_are_one_line_errors(servers, unique, tmp_path, monkeypatch, capsys):
    pub = published(f"vn{unique}", servers, tmp_path, monkeypatch)
    body = pub.jobs.read_text().replace(f"{pub.prefix}.history", f"{pub.prefix}.nothing")
    pub.jobs.write_text(body)
    assert main(["verify", "--jobs", str(pub.jobs)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ctxsync verify: topic {pub.prefix}.nothing does not exist") and "\n" not in err


@pytest.mark.flink
def test_after_a_real_local_run_everything_verifies_and_a_lost_redis_is_restored(
        servers, redis_client, unique, tmp_path, monkeypatch, capsys):
    """The real pipeline: replay -> Flink job (local profile, exactly-once) -> connectors; then verify is
    100 %, and Redis rebuilt from a views-topic snapshot verifies again."""
    from ctxsync.commands.replay import ReplayFilter, replay
    from ctxsync.io.kafka_io import producer
    from tests.test_e2e_local import prepare, run_local

    prefix = f"vr{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    source = events_file(tmp_path / "events.jsonl", events=400, users=20, seed=13)
    replay(source, producer(config), f"{prefix}.events", ReplayFilter())
    run_local(job, tmp_path, servers)
    jobs = str(tmp_path / "jobs.yaml")  # written by run_local
    assert main(["verify", "--jobs", jobs, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["ratio"] == 1.0 and report["findings"] == [] and report["keys_checked"] > 40
    assert main(["snapshot", "create", "s", "--from-topic", "--dir", str(tmp_path / "snaps"), "--jobs", jobs]) == 0
    redis_client.flushall()
    assert main(["verify", "--jobs", jobs]) == 1
    assert main(["snapshot", "restore", "s", "--dir", str(tmp_path / "snaps"), "--jobs", jobs]) == 0
    capsys.readouterr()
    assert main(["verify", "--jobs", jobs]) == 0
    assert "consistency: 100.00 %" in capsys.readouterr().out

"""End to end on loopback servers: replay -> Kafka -> context-sync (local profile, bounded, Flink)
-> Kafka topics -> connectors -> Redis views and Elasticsearch history, compared with the embedded
reference run of the same file; then idempotence, continuation with new input, and sink faults."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from ctxsync.config import Profile, resolve_job
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.connectors import profile_connectors, run_all
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer, read_topic, topic_ends
from ctxsync.io.kafka_positions import committed_offsets, partition_ends
from ctxsync.io.redis_views import RedisViewSink
from ctxsync.servers import LocalServers
from pipelines.file_outputs import OutputCollector
from pipelines.flink.kafka import KafkaJobSpec, route_lines
from pipelines.reference import read_lines, run_reference
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT
from tests.kafka_checks import assert_once_and_count_aborted

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small stream with every anomaly kind (invalid, duplicate, late, conflict, delete)."""
    path = tmp_path_factory.mktemp("e2e") / "events.jsonl"
    options = GeneratorOptions(events=600, users=25, seed=11, invalid_rate=0.05)
    path.write_bytes(b"".join(line + b"\n" for line in generate_lines(options)))
    return path


def local_job(prefix: str, partitions: int = 3):
    """The shipped job with its `local` profile, on topics of this test only."""
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    data = job.profiles["local"].model_dump()
    data["source"]["topic"] = f"{prefix}.events"
    data["source"]["group_id"] = f"{prefix}-job"
    data["sink"]["topics"] = {k: f"{prefix}.{k}" for k in ("views", "history", "violations", "dlq")}
    data["sink"]["partitions"] = partitions
    data["sink"]["transactional_id_prefix"] = prefix
    profiles = {**job.profiles, "local": Profile.model_validate(data)}
    return job.model_copy(update={"profiles": profiles})


def with_source(job, **changes):
    """The job with its local profile's `source:` keys changed."""
    data = job.profiles["local"].model_dump()
    data["source"].update(changes)
    return job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})


def prepare(servers: LocalServers, monkeypatch, prefix: str):
    """(job, kafka config) for a test's own topics, its input topic created with 3 partitions."""
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    ensure_topics(config, [TopicSpec(f"{prefix}.events", 3)])
    return local_job(prefix), config


def start_local(job, tmp_path: Path, servers: LocalServers, *extra: str) -> subprocess.Popen:
    """`ctxsync run context-sync --profile local` in a subprocess (PyFlink registers itself into Beam's
    runner: keep it out of the test process)."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    env = {**os.environ, "CTXSYNC_DEV_DIR": str(servers.run_dir)}
    return subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "run", "context-sync", "--profile", "local",
                             "--jobs", str(jobs), *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout_s: float = 300) -> str:
    """Its stdout (the result table), once it exited 0."""
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]
    return out


def run_local(job, tmp_path: Path, servers: LocalServers, *extra: str) -> str:
    return finish(start_local(job, tmp_path, servers, *extra))


def wait_for(condition, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def group_covers(config: dict, prefix: str, at_least: int) -> bool:
    """The job's consumer group has committed (checkpointed) at least this many input records."""
    _, high = partition_ends(config, f"{prefix}.events")
    return sum(committed_offsets(config, f"{prefix}-job", f"{prefix}.events", list(high)).values()) >= at_least


def reference(events_file: Path, job) -> OutputCollector:
    collector = OutputCollector()
    collector.add_all(run_reference(read_lines(events_file), str(events_file), job.settings.to_settings()))
    collector.finish()
    return collector


def state(servers: LocalServers, redis_client, es_client, prefix: str) -> dict:
    """Everything the sinks hold: views, ES counts, dead letters."""
    es_client.indices.refresh(index="context-*")
    dlq = list(read_topic({"bootstrap.servers": servers.endpoints()["kafka"]}, f"{prefix}.dlq"))
    return {
        "views": RedisViewSink(redis_client).read_all(),
        "history": es_client.count(index="context-history-*")["count"],
        "violations": es_client.count(index="context-violations")["count"],
        "dlq": sorted((m.key(), m.value(), tuple(m.headers() or ())) for m in dlq),
    }


def split_file(events_file: Path, tmp_path: Path, first: int, resent: int = 20) -> tuple[Path, Path, Path]:
    """The stream as two batches, and both as one file. The second batch updates the first one's
    aggregates and ends with `resent` events of the first batch delivered again (a producer's retry)."""
    lines = events_file.read_bytes().splitlines(keepends=True)
    batches = (lines[:first], lines[first:] + lines[first // 2:first // 2 + resent])
    paths = tmp_path / "first.jsonl", tmp_path / "second.jsonl", tmp_path / "both.jsonl"
    for path, batch in zip(paths, (*batches, batches[0] + batches[1])):
        path.write_bytes(b"".join(batch))
    return paths


def check_outputs(got: dict, expected: OutputCollector, prefix: str) -> list[dict]:
    """The sinks hold exactly what the embedded reference run produced; returns the expected views."""
    want_views = sorted((orjson.loads(text) for _, text in expected.views.values()), key=lambda v: v["key"])
    assert got["views"] == want_views
    assert got["history"] == expected.summary.accepted
    assert got["violations"] == expected.summary.ordering_violations + expected.summary.conflicts
    assert len(got["dlq"]) == expected.summary.dead_lettered
    want_reasons = Counter(orjson.loads(text)["reason"] for _, text in expected.dead_letters)
    assert Counter(dict(h)["reason"].decode() for _, _, h in got["dlq"]) == want_reasons
    for key, value, headers in got["dlq"]:
        record = orjson.loads(value)
        assert dict(headers) == {n: str(record[n]).encode() for n in ("reason", "stage", "origin")}
        assert key == record["origin"].encode() and record["origin"].startswith(f"{prefix}.events/")
    return want_views


@pytest.mark.flink
def test_local_profile_end_to_end_equals_reference_and_is_idempotent(
        servers, redis_client, es_client, events_file, unique, monkeypatch, capsys, tmp_path):
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"e2e{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    first_file, second_file, both_file = split_file(events_file, tmp_path, 400)
    outputs = [f"{prefix}.{k}" for k in ("views", "history", "violations", "dlq")]

    # run 1: the first batch, from fresh state
    expected = reference(first_file, job)
    assert replay(first_file, producer(config), f"{prefix}.events", ReplayFilter()).sent == expected.summary.read
    first = run_local(job, tmp_path, servers)
    got = state(servers, redis_client, es_client, prefix)
    want_views = check_outputs(got, expected, prefix)
    assert "connector elasticsearch:" in first and "dead-lettered 0, retries" in first
    assert "continued from: fresh state" in first and f"new input records: {expected.summary.read:,}\n" in first
    # the table counts committed records; offsets also count transaction markers (exactly-once)
    table = {cells[0]: (int(cells[1].replace(",", "")), int(cells[2].replace(",", "")))
             for cells in (line.split() for line in first.splitlines()) if cells and cells[0] in outputs}
    assert {t: records for t, (records, _) in table.items() if not t.endswith(".views")} == {
        f"{prefix}.history": expected.summary.accepted, f"{prefix}.dlq": expected.summary.dead_lettered,
        f"{prefix}.violations": expected.summary.ordering_violations + expected.summary.conflicts}
    assert table[f"{prefix}.views"][0] >= expected.summary.views
    assert all(offsets > records for records, offsets in table.values() if records)

    # what a model and an analyst see through the CLI
    from ctxsync.cli import main

    user = want_views[0]["userId"]
    capsys.readouterr()
    assert main(["view", user, "--json", "--jobs", str(ROOT / "jobs.yaml")]) == 0
    shown = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown == [v for v in want_views if v["userId"] == user]
    assert main(["history", "--user", user, "--json", "--jobs", str(ROOT / "jobs.yaml")]) == 0
    timeline = [orjson.loads(line)["eventId"] for line in capsys.readouterr().out.splitlines()]
    mine = [orjson.loads(text) for _, text in expected.history]
    assert sorted(timeline) == sorted(h["eventId"] for h in mine if h["contextDelta"]["userId"] == user)

    # run 2, same input: nothing changes anywhere, not even the log topics (context.dlq)
    ends = topic_ends(config, outputs)
    second = run_local(job, tmp_path, servers)
    assert topic_ends(config, outputs) == ends
    assert state(servers, redis_client, es_client, prefix) == got
    assert "new input records: 0 (no new input since the last run" in second

    # run 3, after the second batch arrived: continues from run 1's savepoint (views, versions and
    # remembered eventIds restored) and ends exactly where one run over the whole stream ends
    expected_all = reference(both_file, job)
    assert replay(second_file, producer(config), f"{prefix}.events", ReplayFilter()).sent == \
        expected_all.summary.read - expected.summary.read
    third = run_local(job, tmp_path, servers)
    assert "continued from: file:" in third
    assert f"new input records: {expected_all.summary.read - expected.summary.read:,}\n" in third
    check_outputs(state(servers, redis_client, es_client, prefix), expected_all, prefix)
    assert expected_all.summary.duplicates >= expected.summary.duplicates + 15  # the re-sent events


@pytest.mark.flink
def test_avro_input_in_confluent_wire_format_gives_the_same_results_as_json(
        servers, redis_client, es_client, events_file, unique, monkeypatch, tmp_path):
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"avro{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    job = with_source(job, format="avro", schema_id=7)
    expected = reference(events_file, job)
    assert replay(events_file, producer(config), f"{prefix}.events", ReplayFilter(), avro_schema_id=7).sent == \
        expected.summary.read
    run_local(job, tmp_path, servers)
    got = state(servers, redis_client, es_client, prefix)
    check_outputs(got, expected, prefix)
    wire = [v for _, v, _ in got["dlq"] if orjson.loads(v)["rawEncoding"] == "base64"]
    assert wire  # dead letters of decodable records keep their wire bytes (magic byte 0 + schema id 7)
    import base64

    assert any(base64.b64decode(orjson.loads(v)["raw"])[:5] == b"\x00\x00\x00\x00\x07" for v in wire)


@pytest.mark.flink
def test_unbounded_run_stops_on_ctrl_c_with_a_savepoint_the_next_run_continues_from(
        servers, redis_client, es_client, events_file, unique, monkeypatch, tmp_path):
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"sigint{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    first_file, second_file, both_file = split_file(events_file, tmp_path, 300)
    first = replay(first_file, producer(config), f"{prefix}.events", ReplayFilter()).sent

    running = start_local(with_source(job, bounded=False), tmp_path, servers)
    wait_for(lambda: running.poll() is not None or group_covers(config, prefix, first), "the first batch")
    second = replay(second_file, producer(config), f"{prefix}.events", ReplayFilter()).sent  # while it runs
    wait_for(lambda: running.poll() is not None or group_covers(config, prefix, first + second), "the second batch")
    running.send_signal(signal.SIGINT)
    out = finish(running)
    assert f"new input records: {first + second:,}\n" in out and "next run continues from: file:" in out
    assert "/savepoints/savepoint-" in out

    # a bounded run afterwards finds nothing new; its connectors finish what the interrupted ones left
    again = run_local(job, tmp_path, servers)
    assert "new input records: 0 (no new input since the last run" in again
    check_outputs(state(servers, redis_client, es_client, prefix), reference(both_file, job), prefix)

    # changed settings do not fit the saved state: refused (exit 2) until --fresh says to start over
    refused = start_local(job, tmp_path, servers, "--set", "conflict_policy=reject")
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "settings changed" in err and "conflict_policy" in err and "--fresh" in err
    fresh = run_local(job, tmp_path, servers, "--set", "conflict_policy=reject", "--fresh")
    assert "continued from: fresh state" in fresh and f"new input records: {first + second:,}\n" in fresh


@pytest.mark.flink
def test_a_killed_run_is_continued_from_its_last_checkpoint_without_duplicate_outputs(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path, capsys):
    """SIGKILL of the whole CLI (no savepoint): the next run restores the newest retained checkpoint, so
    no topic, not even context.dlq, holds a record twice for a read_committed consumer; what the killed
    run had written in its open transactions stays in the log, aborted, and is never read."""
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"kill{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    events = tmp_path / "events.jsonl"
    lines = list(generate_lines(GeneratorOptions(events=6000, users=200, seed=23, invalid_rate=0.05)))
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    first_file, second_file, both_file = split_file(events, tmp_path, 2000)
    first = replay(first_file, producer(config), f"{prefix}.events", ReplayFilter()).sent

    running = start_local(with_source(job, bounded=False), tmp_path, servers)
    wait_for(lambda: running.poll() is not None or group_covers(config, prefix, first), "the first batch")
    before = view_versions(redis_client)
    second = replay(second_file, producer(config), f"{prefix}.events", ReplayFilter()).sent
    # the job writes views to Redis before its checkpoint commits: kill it once the second batch's first
    # views are in Redis, while its input is not all committed (between the Redis writes and the checkpoint)
    wait_for(lambda: running.poll() is not None or view_versions(redis_client) != before, "second-batch views")
    assert not group_covers(config, prefix, first + second)
    os.kill(running.pid, signal.SIGKILL)
    running.communicate(timeout=60)

    out = run_local(job, tmp_path, servers)
    assert "continued from: file:" in out and "/checkpoints/" in out and "/chk-" in out
    check_outputs(state(servers, redis_client, es_client, prefix), reference(both_file, job), prefix)
    aborted = {kind: assert_once_and_count_aborted(config, f"{prefix}.{kind}")  # exactly once in the log topics
               for kind in ("history", "violations", "dlq")}
    with capsys.disabled():
        print(f"\n[kill -9] aborted records in the log, never read by read_committed: {aborted}")


def view_versions(redis_client) -> dict[bytes, bytes]:
    """Every view hash's version (what a model would read)."""
    return {key: redis_client.hget(key, "version") for key in redis_client.scan_iter("ctx:*:{*}", _type="hash")}


def publish_reference_outputs(events_file: Path, job, config: dict, spec: KafkaJobSpec) -> OutputCollector:
    """What the Flink job would write to the output topics, produced directly (no Flink)."""
    expected = OutputCollector()
    p = producer(config)
    joined: list[str] = []
    last_seq = None
    for line in run_reference(read_lines(events_file), str(events_file), job.settings.to_settings()):
        expected.add(line)
        seq = int(line.split("\t", 1)[0][1:])
        if last_seq is not None and seq != last_seq:
            for key, value, topic, headers in route_lines(joined, spec):
                p.produce(topic, key=key, value=value, headers=list(headers.items()))
            joined = []
        joined.append(line)
        last_seq = seq
    for key, value, topic, headers in route_lines(joined, spec):
        p.produce(topic, key=key, value=value, headers=list(headers.items()))
    assert p.flush(30) == 0
    expected.finish()
    return expected


def test_connectors_end_exact_when_redis_and_elasticsearch_restart_mid_run(
        servers, redis_client, events_file, unique, monkeypatch, tmp_path):
    prefix = f"fault{unique}"
    es_servers = LocalServers(tmp_path / "es")  # its own noida-db: an empty Elasticsearch to stop and count in
    es_servers.start("noida")
    try:
        monkeypatch.setenv("CTXSYNC_DEV_DIR", str(servers.run_dir))
        job = local_job(prefix, partitions=2)
        data = job.profiles["local"].model_dump()
        data["elasticsearch"]["hosts"] = es_servers.endpoints()["elasticsearch"]
        from ctxsync.config import resolve_profile
        from ctxsync.servers import running_endpoints

        profile = resolve_profile(Profile.model_validate(data), "local", running_endpoints())
        config = {"bootstrap.servers": servers.endpoints()["kafka"]}
        ensure_topics(config, [TopicSpec(f"{prefix}.{k}", 2) for k in ("views", "history", "violations", "dlq")])
        spec = KafkaJobSpec(bootstrap=config["bootstrap.servers"], views_topic=f"{prefix}.views",
                            history_topic=f"{prefix}.history", violations_topic=f"{prefix}.violations",
                            dlq_topic=f"{prefix}.dlq")
        expected = publish_reference_outputs(events_file, job, config, spec)

        connectors = profile_connectors(profile)
        for connector in connectors.values():
            connector.batch_size = 100
        faults = {"redis": (servers, "redis"), "elasticsearch": (es_servers, "noida")}
        injected: set[str] = set()

        def inject(name: str):
            def on_batch(stats) -> None:
                if name not in injected:  # after the first committed batch: the sink goes away for 1.5 s
                    injected.add(name)
                    owner, server = faults[name]
                    owner.stop(server)
                    threading.Timer(1.5, lambda: owner.start(server)).start()
            return on_batch

        for name, connector in connectors.items():
            connector.on_batch = inject(name)
        stats = run_all(connectors, until_caught_up=True)
        assert injected == {"redis", "elasticsearch"}
        assert stats["redis"].retries >= 1 and stats["elasticsearch"].retries >= 1

        want_views = sorted((orjson.loads(text) for _, text in expected.views.values()), key=lambda v: v["key"])
        assert RedisViewSink(redis_client).read_all() == want_views
        from elasticsearch import Elasticsearch

        es = Elasticsearch(es_servers.endpoints()["elasticsearch"])
        es.indices.refresh(index="context-*")
        assert es.count(index="context-history-*")["count"] == expected.summary.accepted
        assert es.count(index="context-violations")["count"] == \
            expected.summary.ordering_violations + expected.summary.conflicts
        assert stats["elasticsearch"].dead_lettered == 0
    finally:
        es_servers.down()


@pytest.mark.servers
def test_a_bounded_run_of_an_empty_topic_starts_no_job_and_ends_well(servers, unique, monkeypatch, tmp_path):  # noqa: F811
    """Nothing in the topic and no savepoint: the run says so and exits 0 (a Flink job with no input
    finishes at once, and a finished job cannot be stopped with a savepoint: the run used to fail there)."""
    job, _ = prepare(servers, monkeypatch, f"empty{unique}")
    out = finish(start_local(job, tmp_path, servers), timeout_s=180)
    assert "new input records: 0 (no new input in the topic: the Flink job was not started)" in out

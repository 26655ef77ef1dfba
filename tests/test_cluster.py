"""context-sync on a real Flink standalone cluster: submit, checkpoints, TaskManager crashes, savepoints."""
from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from pathlib import Path

import elasticsearch
import pytest

from ctxsync import cli
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.connectors import elasticsearch_connector, redis_connector
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, read_topic
from ctxsync.io.kafka_io import producer as kafka_producer
from ctxsync.io.redis_views import RedisViewSink
from pipelines.flink import client as fc
from tests.fixtures_cluster import CommittedCounter, flink_cluster  # noqa: F401  (fixture)
from tests.fixtures_servers import es_client, kafka_config, redis_client, servers, unique  # noqa: F401
from tests.helpers import SAMPLE, read_jsonl
from tests.kafka_checks import assert_once_and_count_aborted
from tests.runs import assert_same_files, run_with

pytestmark = pytest.mark.cluster


def test_file_profile_submitted_with_the_cli_equals_reference(flink_cluster, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cluster"
    code = cli.main(["submit", "context-sync", "--profile", "embedded", "--input", str(SAMPLE),
                     "--out", str(out), "--parallelism", "2", "--wait"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    job_id = printed.split("as job ")[1].split()[0]
    assert fc.job_state(flink_cluster.address, job_id) == "FINISHED"
    # part files were committed by checkpoints on the cluster (none left in-progress), then merged
    assert not (out / "_parts").exists()
    run_with("reference", SAMPLE, tmp_path / "ref")
    assert_same_files(out, tmp_path / "ref")
    checkpoints = flink_cluster.rest(f"/jobs/{job_id}/checkpoints")
    assert checkpoints["counts"]["completed"] >= 1
    assert cli.main(["status"]) == 0 and job_id in capsys.readouterr().out
    assert cli.main(["cluster", "status"]) == 0 and flink_cluster.url in capsys.readouterr().out


def test_every_cluster_process_serves_prometheus_metrics(flink_cluster):  # noqa: F811
    """The reporter is loaded as a plugin on the standalone cluster (the local mini-cluster needs the jar on
    its classpath instead: pipelines/flink/env.py)."""
    first = flink_cluster.spec.metrics_port
    bodies = []
    for port in range(first, first + flink_cluster.spec.taskmanagers + 1):
        with contextlib.suppress(OSError):  # a port of the range taken by another program is skipped
            bodies.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
    assert any("\nflink_jobmanager_numRegisteredTaskManagers" in b for b in bodies)
    assert any("\nflink_taskmanager_Status_JVM_CPU_Load" in b for b in bodies)


def test_cluster_mistakes_are_one_line_without_java_stacks(flink_cluster, tmp_path):  # noqa: F811
    """An unknown job id, a profile whose servers are down, a savepoint that does not exist: the
    cluster's or Flink CLI's answer reduced to its cause."""
    from tests.test_cli_errors import JOBS, assert_one_line_error, ctxsync

    unknown = "0" * 32
    for command in ("cancel", "savepoint"):
        assert_one_line_error(ctxsync(command, unknown), command, 1, unknown)
    no_servers = {"CTXSYNC_DEV_DIR": str(tmp_path / "no-servers")}
    assert_one_line_error(ctxsync("submit", "context-sync", "--jobs", JOBS, "--profile", "local", env=no_servers),
                          "submit", 2, "ctxsync dev up")
    missing = tmp_path / "no-such-savepoint"
    result = ctxsync("submit", "context-sync", "--jobs", JOBS, "--profile", "embedded", "--input", str(SAMPLE),
                     "--out", str(tmp_path / "out"), "--from-savepoint", str(missing))
    assert_one_line_error(result, "submit", 1, "flink run failed", "Cannot find checkpoint or savepoint", missing.name)


# --- Kafka in, Kafka out (profile `local`), Redis and Elasticsearch through the idempotent connectors ---

PARTS, USERS = (3000, 1500, 1500), 300


def _stream(tmp_path):
    """Three parts of one generated stream (with duplicates, late events, conflicts and invalid lines)."""
    lines = list(generate_lines(GeneratorOptions(events=sum(PARTS), users=USERS, seed=17)))
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"\n".join(lines) + b"\n")
    cuts = [0, PARTS[0], PARTS[0] + PARTS[1], len(lines)]
    return [lines[a:b] for a, b in zip(cuts, cuts[1:])], whole


def _produce(kafka_config, topic, lines):
    """Keyed by userId (murmur2, like Java clients): one user's events stay in order in one partition."""
    producer = kafka_producer(kafka_config)
    for line in lines:
        try:
            user = json.loads(line)["contextDelta"]["userId"]
            key = user.encode() if isinstance(user, str) and user else None
        except (ValueError, KeyError, TypeError):
            key = None
        producer.produce(topic, key=key, value=line)
        producer.poll(0)
    assert producer.flush(30) == 0


@pytest.fixture
def kafka_job(servers, kafka_config, unique):
    """Topic names and `--set` overrides that give one test its own topics and transactional ids."""
    topics = {kind: f"{kind}-{unique}" for kind in ("events", "views", "history", "violations", "dlq")}
    ensure_topics(kafka_config, [TopicSpec(topics["events"], 4)])
    overrides = [f"profiles.local.source.topic={topics['events']}", "profiles.local.source.bounded=false",
                 f"profiles.local.source.group_id=g-{unique}", "profiles.local.sink.checkpoint_interval=1s",
                 f"profiles.local.sink.transactional_id_prefix=tx-{topics['events']}"]
    overrides += [f"profiles.local.sink.topics.{kind}={topics[kind]}" for kind in ("views", "history", "violations", "dlq")]
    return topics, overrides


def _submit(cluster, servers, overrides, parallelism, savepoint=None):
    return fc.submit(fc.Submission("context-sync", "local", cluster.address, parallelism, savepoint,
                                   tuple(overrides), dev_dir=servers.run_dir))


def _committed_counts(kafka_config, topics) -> tuple[int, int]:
    """(history, dlq) records a fresh read_committed consumer sees from the beginning."""
    return tuple(sum(1 for _ in read_topic(kafka_config, topics[kind])) for kind in ("history", "dlq"))


def _wait_counts(kafka_config, topics, history, dlq, timeout_s=240) -> None:
    """Until the committed outputs hold `history` and `dlq` records (more would fail the final checks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = _committed_counts(kafka_config, topics)
        if counts[0] >= history and counts[1] >= dlq:
            return
        time.sleep(2)
    raise AssertionError(f"committed outputs (history, dlq) = {counts} after {timeout_s}s, want ({history}, {dlq})")


def _assert_sinks_equal_reference(whole, tmp_path, topics, kafka_config, redis_client, es_client):
    """Move the committed outputs into Redis and ES with the connectors; compare with the embedded run."""
    ref = tmp_path / "ref"
    summary = run_with("reference", whole, ref)
    history_count = sum(1 for _ in read_topic(kafka_config, topics["history"]))
    dlq = [json.loads(m.value()) for m in read_topic(kafka_config, topics["dlq"])]
    assert history_count == summary.accepted
    assert len(dlq) == summary.dead_lettered
    assert sorted(d["reason"] for d in dlq) == sorted(json.loads(line)["reason"] for line in
                                                      (ref / "dead_letter.jsonl").read_text().splitlines())
    redis_connector(kafka_config, redis_client, topic=topics["views"], dlq_topic=topics["dlq"],
                    group_id=f"redis-{topics['views']}").run(until_caught_up=True)
    # The server is shared by the session: history documents of earlier tests (ids by topic position, so
    # the same generated events from another topic are other documents) must not be counted as ours.
    with contextlib.suppress(elasticsearch.NotFoundError):  # no history index yet: nothing to clear
        es_client.delete_by_query(index="context-history-*", query={"match_all": {}}, refresh=True)
    elasticsearch_connector(kafka_config, es_client, (topics["history"], topics["violations"]),
                            dlq_topic=topics["dlq"], group_id=f"es-{topics['history']}").run(until_caught_up=True)
    assert RedisViewSink(redis_client).read_all() == read_jsonl(ref / "views.jsonl")
    es_client.indices.refresh(index="context-history-*")
    assert es_client.count(index="context-history-*")["count"] == summary.accepted
    return summary


def _recovery(cluster, job_id, counter, topics, before: int, killed_at: float) -> dict[str, float]:
    """Seconds from the kill until every task of the job runs again (restarted after the kill) and until
    new committed outputs appear (the first checkpoint after the restore has completed)."""
    killed_wall_ms = time.time() * 1000 - (time.monotonic() - killed_at) * 1000
    tasks_running = None
    while True:
        counts = counter.poll(0.1)
        now = time.monotonic()
        if tasks_running is None:
            vertices = cluster.rest(f"/jobs/{job_id}")["vertices"]
            if all(v["status"] == "RUNNING" and v["start-time"] >= killed_wall_ms for v in vertices):
                tasks_running = now - killed_at
        if tasks_running is not None and counts[topics["history"]] > before:
            return {"running": tasks_running, "outputs": now - killed_at}
        if now - killed_at > 180:
            raise AssertionError(f"job not recovered 180s after the TaskManager was killed: {counts}")


def test_taskmanager_killed_twice_mid_stream_recovers_from_checkpoints(
        flink_cluster, servers, kafka_config, kafka_job, redis_client, es_client, tmp_path, capsys):  # noqa: F811
    topics, overrides = kafka_job
    parts, whole = _stream(tmp_path)
    _produce(kafka_config, topics["events"], parts[0])
    job_id = _submit(flink_cluster, servers, overrides, parallelism=2)
    counter = CommittedCounter(kafka_config, [topics["history"], topics["dlq"]])
    recoveries = []
    try:
        before = 0
        # kill 1: the replacement TaskManager is started after the crash (cold);
        # kill 2: a standby TaskManager registered before the crash takes over (warm)
        for mode, feed in zip(("cold", "standby"), parts[1:]):
            # half of the feed before the crash, so the job is surely working on input when it is killed (a
            # fast job commits a whole earlier feed in one checkpoint: waiting for more outputs would hang)
            _produce(kafka_config, topics["events"], feed[:len(feed) // 2])
            deadline = time.monotonic() + 120
            while counter.poll()[topics["history"]] <= before:  # the job is producing outputs: crash it
                assert fc.job_state(flink_cluster.address, job_id) in ("RUNNING", "CREATED", "INITIALIZING"), \
                    fc.failure_cause(flink_cluster.address, job_id)
                assert time.monotonic() < deadline, f"no new outputs within 120 s before the {mode} crash"
            (victim,) = flink_cluster.pids("taskexecutor")
            if mode == "standby":
                flink_cluster.start_taskmanager()
                while flink_cluster.rest("/overview")["taskmanagers"] < 2:
                    time.sleep(0.2)
            before = counter.poll()[topics["history"]]
            killed_at = time.monotonic()
            flink_cluster.kill_taskmanager(victim)  # SIGKILL: no goodbye, open Kafka transactions stay open
            if mode == "cold":
                flink_cluster.start_taskmanager()
            _produce(kafka_config, topics["events"], feed[len(feed) // 2:])  # more input arrives during the outage
            recoveries.append((mode, _recovery(flink_cluster, job_id, counter, topics, before, killed_at)))
            before = counter.counts[topics["history"]]
        ref_summary = run_with("reference", whole, tmp_path / "ref-counts")
        _wait_counts(kafka_config, topics, ref_summary.accepted, ref_summary.dead_lettered)
        restored = flink_cluster.rest(f"/jobs/{job_id}/checkpoints")["latest"]["restored"]
        assert restored is not None and not restored["is_savepoint"]
        fc.cancel(flink_cluster.address, job_id)
        # the consumer that stayed assigned across both crashes sees every committed record, once
        deadline = time.monotonic() + 60
        while counter.poll()[topics["history"]] < ref_summary.accepted and time.monotonic() < deadline:
            pass
        seen_live = counter.poll(1.0)[topics["history"]]
    finally:
        counter.close()
    assert seen_live == ref_summary.accepted
    _assert_sinks_equal_reference(whole, tmp_path, topics, kafka_config, redis_client, es_client)
    aborted = {kind: assert_once_and_count_aborted(kafka_config, topics[kind]) for kind in ("history", "dlq")}
    with capsys.disabled():
        for mode, r in recoveries:
            print(f"\n[recovery, {mode}] kill -> all tasks running {r['running']:.1f}s, "
                  f"-> new committed outputs {r['outputs']:.1f}s")
        print(f"[live read_committed consumer] saw {seen_live} of {ref_summary.accepted} history records; "
              f"aborted records in the log, never read: {aborted}")


def test_stop_with_savepoint_and_resume_at_other_parallelism_equals_one_run(
        flink_cluster, servers, kafka_config, kafka_job, redis_client, es_client, tmp_path, capsys):  # noqa: F811
    topics, overrides = kafka_job
    parts, whole = _stream(tmp_path)
    part_a, part_b = parts[0], parts[1] + parts[2]
    _produce(kafka_config, topics["events"], part_a)
    job_id = _submit(flink_cluster, servers, overrides, parallelism=1)
    counter = CommittedCounter(kafka_config, [topics["history"], topics["dlq"]])
    try:
        lines_a = tmp_path / "a.jsonl"
        lines_a.write_bytes(b"\n".join(part_a) + b"\n")
        summary_a = run_with("reference", lines_a, tmp_path / "ref-a")
        _wait_counts(kafka_config, topics, summary_a.accepted, summary_a.dead_lettered)
        assert cli.main(["savepoint", job_id]) == 0  # a savepoint while the job keeps running
        taken = capsys.readouterr().out.strip().splitlines()[-1]
        assert (Path(taken.removeprefix("file:")) / "_metadata").is_file()
        assert fc.job_state(flink_cluster.address, job_id) == "RUNNING"
        assert cli.main(["cancel", job_id, "--savepoint"]) == 0  # the CLI a data engineer uses
        savepoint = capsys.readouterr().out.strip().splitlines()[-1]
        assert savepoint.startswith("file:") and fc.job_state(flink_cluster.address, job_id) == "FINISHED"
        _produce(kafka_config, topics["events"], part_b)  # arrives while no job runs
        args = ["submit", "context-sync", "--profile", "local", "--from-savepoint", savepoint, "--parallelism", "2",
                "--dev-dir", str(servers.run_dir)] + [a for item in overrides for a in ("--set", item)]
        assert cli.main(args) == 0
        job_2 = capsys.readouterr().out.split("as job ")[1].split()[0]
        summary = run_with("reference", whole, tmp_path / "ref-counts")
        _wait_counts(kafka_config, topics, summary.accepted, summary.dead_lettered)
        restored = flink_cluster.rest(f"/jobs/{job_2}/checkpoints")["latest"]["restored"]
        assert restored["is_savepoint"] and restored["external_path"] == savepoint
        assert flink_cluster.rest(f"/jobs/{job_2}")["vertices"][-1]["parallelism"] == 2
        fc.cancel(flink_cluster.address, job_2)
    finally:
        counter.close()
    _assert_sinks_equal_reference(whole, tmp_path, topics, kafka_config, redis_client, es_client)

"""kill -9 of a Kafka node under the running job, on a three-node cluster (replication factor 3,
min.insync.replicas 2, acks=all): the exactly-once job (Kafka profile, unbounded, with its Elasticsearch
connector) keeps going on the two nodes left, and afterwards Redis, the history index and the log topics
(read_committed) hold exactly what the reference run of the same input gives: nothing lost, nothing twice.
The recovery time is printed (`-s`) and kept in docs/operations.md."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ctxsync.commands.replay import ReplayFilter, replay
from ctxsync.config import Profile, resolve_profile
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.connectors import profile_connectors, run_all
from ctxsync.io.kafka_io import RECORD_LIMIT, producer, read_topic
from ctxsync.io.kafka_positions import committed_offsets, partition_ends
from ctxsync.io.redis_views import RedisViewSink
from ctxsync.servers import running_endpoints
from tests.fixtures_kafka_cluster import kafka_cluster, sink_servers  # noqa: F401
from tests.fixtures_servers import unique  # noqa: F401
from tests.kafka_checks import assert_once_and_count_aborted
from tests.test_e2e_local import (check_outputs, finish, local_job, reference, split_file, start_local, wait_for,
                                  with_source)

pytestmark = [pytest.mark.servers, pytest.mark.flink]

PARTITIONS = 4
KINDS = ("views", "history", "violations", "dlq")


def create_replicated(cluster, prefix: str) -> list[str]:
    """The job's topics with replication factor 3, as `ctxsync run` would make them (compacted views, the
    record size limit, one DLQ partition); returns the output topics."""
    from confluent_kafka.admin import NewTopic

    limit = dict(RECORD_LIMIT)
    specs = [NewTopic(f"{prefix}.events", PARTITIONS, 3, config=limit),
             NewTopic(f"{prefix}.views", PARTITIONS, 3, config={**limit, "cleanup.policy": "compact"}),
             NewTopic(f"{prefix}.history", PARTITIONS, 3, config=limit),
             NewTopic(f"{prefix}.violations", PARTITIONS, 3, config=limit),
             NewTopic(f"{prefix}.dlq", 1, 3, config=limit)]
    admin = cluster.admin()  # kept referenced: the futures fail if the client is collected first
    for future in admin.create_topics(specs, request_timeout=30).values():
        future.result()
    return [f"{prefix}.{kind}" for kind in KINDS]


def committed_input(config: dict, prefix: str) -> int:
    """Input records the job has checkpointed (its source commits its offsets at each checkpoint)."""
    try:
        _, high = partition_ends(config, f"{prefix}.events")
        return sum(max(o, 0) for o in committed_offsets(config, f"{prefix}-job", f"{prefix}.events",
                                                        list(high)).values())
    except Exception:  # KafkaException while the group coordinator moves off the killed node
        return -1


def sinks(config: dict, redis_client, es_client, prefix: str) -> dict:
    es_client.indices.refresh(index="context-*")
    dlq = list(read_topic(config, f"{prefix}.dlq"))
    return {"views": RedisViewSink(redis_client).read_all(),
            "history": es_client.count(index="context-history-*")["count"],
            "violations": es_client.count(index="context-violations")["count"],
            "dlq": sorted((m.key(), m.value(), tuple(m.headers() or ())) for m in dlq)}


def test_killing_a_partition_leader_under_the_exactly_once_job_loses_and_repeats_nothing(
        kafka_cluster, sink_servers, unique, monkeypatch, tmp_path, capsys):
    import redis
    from elasticsearch import Elasticsearch

    prefix = f"bf{unique}"
    config = {**kafka_cluster.config(), "log_level": 0}  # quiet about the node that is down
    monkeypatch.setenv("CTXSYNC_DEV_DIR", str(sink_servers.run_dir))
    outputs = create_replicated(kafka_cluster, prefix)
    job = with_source(local_job(prefix, PARTITIONS), bootstrap=kafka_cluster.bootstrap, bounded=False)
    events = tmp_path / "events.jsonl"
    lines = generate_lines(GeneratorOptions(events=1200, users=80, seed=31, invalid_rate=0.05))
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    first_file, second_file, both_file = split_file(events, tmp_path, 600)
    first = replay(first_file, producer(config), f"{prefix}.events", ReplayFilter()).sent

    running = start_local(job, tmp_path, sink_servers)
    try:
        wait_for(lambda: running.poll() is not None or committed_input(config, prefix) >= first, "the first half",
                 timeout_s=600)
        assert running.poll() is None, running.stderr.read()[-8000:]
        victim = kafka_cluster.leader(f"{prefix}.events", 0)
        led = kafka_cluster.led_by(victim, [f"{prefix}.events", *outputs])
        before = committed_input(config, prefix)
        killed_at = time.monotonic()
        kafka_cluster.kill(victim)
        second = replay(second_file, producer(config), f"{prefix}.events", ReplayFilter()).sent
        produced_s = time.monotonic() - killed_at
        wait_for(lambda: running.poll() is not None or committed_input(config, prefix) > before,
                 "a checkpoint after the kill", timeout_s=600)
        checkpoint_s = time.monotonic() - killed_at
        wait_for(lambda: running.poll() is not None or committed_input(config, prefix) >= first + second,
                 "all input checkpointed", timeout_s=600)
        caught_up_s = time.monotonic() - killed_at
        assert running.poll() is None, running.stderr.read()[-8000:]
        running.send_signal(signal.SIGINT)  # stop with a savepoint, as an operator would
        out = finish(running)
    finally:
        running.kill()
    assert f"new input records: {first + second:,}\n" in out

    # the Elasticsearch connector stopped with the job: a bounded pass finishes the history index
    profile = resolve_profile(job.profiles["local"], "local", running_endpoints())
    run_all(profile_connectors(profile, ("elasticsearch",)), until_caught_up=True)
    endpoints = sink_servers.endpoints()
    redis_client = redis.Redis.from_url(endpoints["redis"])
    es_client = Elasticsearch(endpoints["elasticsearch"], request_timeout=30)
    expected = reference(both_file, job)
    check_outputs(sinks(config, redis_client, es_client, prefix), expected, prefix)
    history = [m.value() for m in read_topic(config, f"{prefix}.history")]
    assert len(history) == expected.summary.accepted  # every accepted event once in the log topic
    aborted = {kind: assert_once_and_count_aborted(config, f"{prefix}.{kind}")
               for kind in ("history", "violations", "dlq")}
    replicas = {len(p.replicas) for t in outputs
                for p in kafka_cluster.admin().list_topics(t, timeout=10).topics[t].partitions.values()}
    assert replicas == {3}
    with capsys.disabled():
        print(f"\n[broker failure] kill -9 of node {victim}, leader of {', '.join(led)}: second half "
              f"({second:,} events) produced with acks=all in {produced_s:.1f}s; the job's first checkpoint "
              f"with new input {checkpoint_s:.1f}s after the kill, all input checkpointed after "
              f"{caught_up_s:.1f}s; aborted records in the log (never read by read_committed): {aborted}")

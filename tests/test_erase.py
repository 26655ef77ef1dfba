"""`ctxsync erase` against the real Kafka job with privacy on (Apache Kafka, redis-server key store): after the
erase, a restart that reads the erase command, and a --fresh run that processes the user's old events
again, nothing readable about the user is left in Redis, Elasticsearch, the views topic or the job's state,
and the user's history and dead letters in the topics cannot be decrypted."""
from __future__ import annotations

import time
from collections import defaultdict

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.kafka_io import producer, read_topic
from ctxsync.io.keystore import new_key_text
from ctxsync.io.redis_views import RedisViewSink
from transforms.control import erase_command
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import event, raw
from tests.test_e2e_local import prepare, reference, run_local
from tests.test_privacy import protector_of, with_privacy

pytestmark = [pytest.mark.servers, pytest.mark.flink]


def views_topic(config: dict, topic: str) -> dict[str, list[bytes | None]]:
    """Every value per key of the views topic, in order (None = tombstone)."""
    by_key: dict[str, list[bytes | None]] = defaultdict(list)
    for message in read_topic(config, topic):
        by_key[message.key().decode()].append(message.value())
    return by_key


def test_erase_leaves_nothing_readable_in_any_sink_or_in_state_after_restarts(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path, capsys):
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"erase{unique}"
    monkeypatch.setenv("CTXSYNC_MASTER_KEY", new_key_text())
    job, config = prepare(servers, monkeypatch, prefix)
    job = with_privacy(job)
    lines = list(generate_lines(GeneratorOptions(events=240, users=8, seed=3, invalid_rate=0.0)))
    expected = reference_of(lines, tmp_path, job)
    views = [orjson.loads(text) for _, text in expected.views.values()]
    per_user = defaultdict(set)
    for view in views:
        per_user[view["userId"]].add(view["category"])
    user, other = sorted(per_user, key=lambda u: (-len(per_user[u]), u))[:2]  # the user with most categories
    bad = raw(event(eventId="", contextDelta__userId=user))  # a dead letter that names the user
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in [*lines, bad]))
    assert replay(events, producer(config), f"{prefix}.events", ReplayFilter()).sent == len(lines) + 1
    run_local(job, tmp_path, servers)

    protector, _ = protector_of(job, servers)
    token = protector.token(user)
    sink = RedisViewSink(redis_client)
    assert {v["category"] for v in sink.read_user(user)} == per_user[user]
    es_client.indices.refresh(index="context-*")
    mine = {"terms": {"contextDelta.userId": [token]}}
    assert es_client.count(index="context-history-*", query=mine)["count"] > 0
    history_before = [m.value() for m in read_topic(config, f"{prefix}.history") if token.encode() in m.value()]
    dlq_mine = [orjson.loads(m.value()) for m in read_topic(config, f"{prefix}.dlq")]
    assert [d["keyId"] for d in dlq_mine] == [token]
    assert protector.keys.existing_key(token) is not None

    # someone without the job's key tries to erase another user: refused, dead-lettered
    producer_ = producer(config)
    producer_.produce(f"{prefix}.events", key=other.encode(), value=erase_command(other, int(time.time() * 1000), None))
    assert producer_.flush(10) == 0

    capsys.readouterr()
    assert main(["erase", "--user", user, "--profile", "local", "--jobs", str(tmp_path / "jobs.yaml")]) == 0
    receipt = capsys.readouterr().out
    assert f"token {token}" in receipt and "data key deleted" in receipt and "crypto-shredded" in receipt
    assert f"{len(per_user[user])} views deleted" in receipt
    assert "0 history documents" not in receipt and "4 tombstones published" in receipt

    run_local(job, tmp_path, servers)  # continues: reads the erase command (and the forged one)
    run_local(job, tmp_path, servers, "--fresh")  # every old event of the user is processed again

    # Redis: no view, no change-stream entry; the other user untouched
    assert sink.read_user(user) == [] and sink.read_user(other)
    for stream in redis_client.scan_iter(match="ctx:changes:*", _type="stream"):
        assert not [e for e in redis_client.xrange(stream) if user.encode() in e[1][b"key"]]
    # Elasticsearch: neither history nor violations, under either name
    es_client.indices.refresh(index="context-*")
    assert es_client.count(index="context-history-*", query=mine)["count"] == 0
    keys = [f"{c}:{n}" for c in per_user[user] for n in (user, token)]
    assert es_client.count(index="context-violations", query={"terms": {"key": keys}})["count"] == 0
    assert es_client.count(index="context-history-*")["count"] > 0
    # views topic: the user's latest record per key is a tombstone, from erase and from the job's state;
    # no view of the user was emitted again after the first tombstone
    changelog = views_topic(config, f"{prefix}.views")
    for category in per_user[user]:
        values = changelog[f"{category}:{user}"]
        first = values.index(None)
        assert values[-1] is None and all(v is None for v in values[first:])
        assert values.count(None) == 2  # erase's tombstone and the job's (its state had the view)
    # the topics: nothing new about the user, and the old records cannot be decrypted any more
    history_after = [m.value() for m in read_topic(config, f"{prefix}.history") if token.encode() in m.value()]
    assert history_after == history_before
    protector.keys.forget(token)
    assert protector.keys.existing_key(token) is None
    assert protector.keys.erased_at(token) is not None
    dlq = [orjson.loads(m.value()) for m in read_topic(config, f"{prefix}.dlq")]
    shredded = [d for d in dlq if d["keyId"] == token]  # the first run's (key deleted) and the --fresh run's
    assert [d.get("erased", False) for d in shredded] == [False, True] and shredded[1]["raw"] is None
    refused = [d for d in dlq if d["reason"] == "refused_control"]
    assert len(refused) == 2 and other not in orjson.dumps(refused).decode()


def reference_of(lines: list[bytes], tmp_path, job):
    path = tmp_path / "reference.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return reference(path, job)

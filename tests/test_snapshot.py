"""Snapshots on loopback servers: create from Redis or the views topic, list, restore into an empty Redis and
replay context.views from the snapshot's offsets, ending equal to a Redis that was never lost."""
from __future__ import annotations

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.consistency import snapshot as snap
from ctxsync.errors import RuntimeFailure
from ctxsync.io.redis_views import RedisViewSink
from tests.fixtures_servers import redis_client, servers, unique  # noqa: F401
from tests.published import events_file, published

pytestmark = pytest.mark.servers


def views_and_ttls(redis_client) -> tuple[list[dict], set[str]]:
    """Every view, and the hashes that have an expiry."""
    names = {k.decode() for k in redis_client.scan_iter(match="ctx:*:{*}", _type="hash")}
    return RedisViewSink(redis_client).read_all(), {n for n in names if redis_client.pttl(n) > 0}


def test_restore_replays_the_views_written_after_the_snapshot(servers, redis_client, unique, tmp_path,
                                                               monkeypatch, capsys):
    pub = published(f"sn{unique}", servers, tmp_path, monkeypatch)
    source = events_file(tmp_path / "events.jsonl")
    store = tmp_path / "snapshots"
    pub.publish(source, range(1, 401))
    pub.connect_redis(redis_client)
    at_snapshot, _ = views_and_ttls(redis_client)
    cli = ["--dir", str(store), "--jobs", str(pub.jobs)]
    assert main(["snapshot", "create", "first", *cli]) == 0
    assert "snapshot first: " in capsys.readouterr().out
    pub.publish(source, range(401, 10_000))
    pub.connect_redis(redis_client)
    never_lost, expiring = views_and_ttls(redis_client)
    assert never_lost != at_snapshot and expiring  # the later events changed views; sample events carry a TTL

    redis_client.flushall()  # Redis is lost
    assert main(["snapshot", "list", *cli]) == 0
    listed = capsys.readouterr().out
    assert "first" in listed and f"{len(at_snapshot):,}" in listed
    assert main(["snapshot", "restore", *cli]) == 0
    out = capsys.readouterr().out
    assert f"restored {len(at_snapshot):,} views from first" in out and "replayed" in out
    assert views_and_ttls(redis_client) == (never_lost, expiring)
    assert main(["verify", "--jobs", str(pub.jobs)]) == 0  # the change streams hold the replayed views


def test_a_snapshot_of_the_views_topic_restores_the_same_views(servers, redis_client, unique, tmp_path,
                                                              monkeypatch):
    pub = published(f"st{unique}", servers, tmp_path, monkeypatch)
    pub.publish(events_file(tmp_path / "events.jsonl"))
    pub.connect_redis(redis_client)
    want, expiring = views_and_ttls(redis_client)
    manifest = snap.create_from_topic(pub.config, pub.spec.views_topic, tmp_path, "t")
    assert manifest.views == len(want) and manifest.source == "views-topic"
    assert sum(manifest.partition_offsets().values()) > manifest.views  # offsets = the topic's ends
    redis_client.flushall()
    _, written, expired = snap.restore(redis_client, "ctx", tmp_path, "t")
    assert (written, expired) == (len(want), 0)
    assert views_and_ttls(redis_client) == (want, expiring)

    redis_client.flushall()  # a small MAXLEN: each stream gets the newest views aimed at its model
    snap.restore(redis_client, "ctx", tmp_path, "t", stream_maxlen=5)
    aimed = sorted((v["updatedAt"], v["key"]) for v in want if "churn-predictor" in v["targetModels"])
    entries = redis_client.xrange("ctx:changes:churn-predictor")
    assert len(entries) == 5 and len(aimed) > 5
    assert [orjson.loads(e[b"view"])["updatedAt"] for _, e in entries] == [t for t, _ in aimed[-5:]]


def test_a_damaged_snapshot_or_a_non_empty_redis_is_refused(servers, redis_client, unique, tmp_path, monkeypatch):
    pub = published(f"sd{unique}", servers, tmp_path, monkeypatch)
    pub.publish(events_file(tmp_path / "events.jsonl", events=100, users=5))
    pub.connect_redis(redis_client)
    manifest = snap.create_from_redis(redis_client, "ctx", pub.config, pub.spec.views_topic, "ctxsync-redis-views",
                                      tmp_path, "s")
    assert manifest.views > 0 and len(manifest.sha256) == 64
    with pytest.raises(RuntimeFailure, match="already holds views"):
        snap.restore(redis_client, "ctx", tmp_path, "s")
    redis_client.flushall()
    data = snap.data_path(tmp_path, "s")
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    with pytest.raises(RuntimeFailure, match="damaged"):
        snap.restore(redis_client, "ctx", tmp_path, "s")
    assert redis_client.dbsize() == 0

"""Redis view sink against a real redis-server: Lua compare-and-set by version, TTL, change streams."""
from __future__ import annotations

import copy
import time

import pytest

from ctxsync.io.redis_views import (RedisViewSink, ViewWrite, WriteResult, hash_fields, stream_key, view_from_hash,
                                   view_key)
from tests.fixtures_servers import redis_client, servers  # noqa: F401

pytestmark = pytest.mark.servers

VIEW = {
    "key": "behavioral:u1", "category": "behavioral", "userId": "u1", "version": 2,
    "updatedAt": "2026-11-24T10:00:00.000Z",
    "attributes": {"segment": {"value": "power", "confidence": 0.9, "updatedAt": "2026-11-24T10:00:00.000Z",
                               "eventId": "e2", "modelId": "m1"},
                   "engagementScore": {"value": 0.5, "confidence": 1, "updatedAt": "2026-11-24T09:00:00.000Z",
                                       "eventId": "e1", "modelId": "m2"}},
    "targetModels": ["churn-predictor", "risk-model"],
}


def counts(result: WriteResult) -> tuple[int, int]:
    return result.applied, result.skipped


def versioned(version: int, **attrs) -> dict:
    view = copy.deepcopy(VIEW)
    view["version"] = version
    view["attributes"].update(attrs)
    return view


def test_hash_layout_round_trips_the_view_record():
    back = view_from_hash(hash_fields(VIEW))
    assert back == VIEW
    assert list(back["attributes"]) == sorted(VIEW["attributes"])


def test_only_newer_versions_are_written(redis_client):
    sink = RedisViewSink(redis_client)
    assert counts(sink.write([ViewWrite(versioned(2))])) == (1, 0)
    assert counts(sink.write([ViewWrite(versioned(2))])) == (0, 1)           # a replay: no change
    older = versioned(1)
    older["attributes"]["segment"]["value"] = "casual"
    assert counts(sink.write([ViewWrite(older)])) == (0, 1)                  # an old retry: no change
    assert sink.read("behavioral", "u1") == versioned(2)
    newer = versioned(3)
    del newer["attributes"]["engagementScore"]                       # tombstoned attribute disappears
    assert counts(sink.write([ViewWrite(newer)])) == (1, 0)
    assert sink.read("behavioral", "u1") == newer
    assert redis_client.hget(view_key("ctx", "behavioral", "u1"), "a:engagementScore") is None


def test_batch_with_several_versions_of_one_key_ends_at_the_highest(redis_client):
    sink = RedisViewSink(redis_client)
    writes = [ViewWrite(versioned(v)) for v in (1, 3, 2)]
    assert counts(sink.write(writes)) == (2, 1)
    assert sink.read("behavioral", "u1")["version"] == 3


def test_ttl_comes_from_the_event_and_a_view_without_any_persists(redis_client):
    sink = RedisViewSink(redis_client)
    key = view_key("ctx", "behavioral", "u1")
    sink.write([ViewWrite(versioned(1), ttl=None)])
    assert redis_client.ttl(key) == -1                   # no event with a TTL: the view does not expire
    sink.write([ViewWrite(versioned(2), ttl=3600)])
    assert 3590 <= redis_client.ttl(key) <= 3600


def test_an_event_without_ttl_keeps_the_expiry_the_view_had(redis_client):
    """Before, one event without `ttl` made a view permanent; now it changes the view, not its expiry."""
    sink = RedisViewSink(redis_client)
    key = view_key("ctx", "behavioral", "u1")
    sink.write([ViewWrite(versioned(1), ttl=100)])
    sink.write([ViewWrite(versioned(2), ttl=None)])
    assert 90 <= redis_client.ttl(key) <= 100 and sink.read("behavioral", "u1")["version"] == 2
    sink.write([ViewWrite(versioned(3), ttl=3600)])      # a new TTL restarts the clock
    assert 3590 <= redis_client.ttl(key) <= 3600


def test_an_expired_view_is_not_resurrected_by_a_replay_of_an_older_version(redis_client):
    """Before, once a view had expired the compare-and-set took any version a replay brought back."""
    sink = RedisViewSink(redis_client)
    key = view_key("ctx", "behavioral", "u1")
    sink.write([ViewWrite(versioned(3), ttl=1)])
    deadline = time.monotonic() + 5
    while redis_client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis_client.exists(key)                  # expired
    for version in (2, 3):                               # a replay, in either mode, brings nothing back
        for sync in (False, True):
            assert sink.write([ViewWrite(versioned(version), ttl=60, sync=sync)]).expired == 1
    assert not redis_client.exists(key)
    assert counts(sink.write([ViewWrite(versioned(4), ttl=None)])) == (1, 0)   # a newer version is new
    assert redis_client.ttl(key) == -1
    assert sink.delete("behavioral:u1") == 1             # erase and tombstones take the floor with the view
    assert redis_client.keys("ctx:behavioral:*") == []


def test_change_feed_per_target_model_is_bounded(redis_client):
    sink = RedisViewSink(redis_client, stream_maxlen=100)
    sink.write([ViewWrite(versioned(v)) for v in range(1, 1001)])
    sink.write([ViewWrite(versioned(5))])  # not newer: no feed entry
    for model in ("churn-predictor", "risk-model"):
        stream = stream_key("ctx", model)
        length = redis_client.xlen(stream)
        assert 100 <= length < 1000                    # MAXLEN ~ trims in whole macro nodes
        last = redis_client.xrevrange(stream, count=1)[0][1]
        assert last[b"version"] == b"1000" and last[b"key"] == view_key("ctx", "behavioral", "u1").encode()


def test_read_user_finds_every_category_and_nothing_else(redis_client):
    sink = RedisViewSink(redis_client)
    financial = versioned(1)
    financial.update(key="financial:u1", category="financial")
    other = versioned(1)
    other.update(key="behavioral:u10", userId="u10")
    sink.write([ViewWrite(versioned(1)), ViewWrite(financial), ViewWrite(other)])
    assert [v["key"] for v in sink.read_user("u1")] == ["behavioral:u1", "financial:u1"]
    assert [v["key"] for v in sink.read_all()] == ["behavioral:u1", "behavioral:u10", "financial:u1"]


def test_connector_coalesces_batches_and_dead_letters_broken_view_records(servers, redis_client):
    import orjson

    from ctxsync.io.connectors import redis_connector
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer, read_topic

    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    topic, dlq = "views-coalesce", "views-coalesce.dlq"
    ensure_topics(config, [TopicSpec(topic, 1), TopicSpec(dlq, 1)])
    p = producer(config)
    for version in (1, 2, 3):
        p.produce(topic, key=b"behavioral:u1", value=orjson.dumps({**versioned(version), "ttl": 60}))
    p.produce(topic, key=b"x", value=b"{not json")
    p.produce(topic, key=b"y", value=b'{"key": "a:b"}')
    assert p.flush(10) == 0
    connector = redis_connector(config, redis_client, topic=topic, dlq_topic=dlq, group_id="g-coalesce")
    stats = connector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.consumed, stats.written, stats.skipped, stats.dead_lettered) == (5, 1, 2, 2)
    assert RedisViewSink(redis_client).read("behavioral", "u1") == versioned(3)
    assert 0 < redis_client.ttl(view_key("ctx", "behavioral", "u1")) <= 60
    dead = list(read_topic(config, dlq))
    assert [dict(m.headers())["reason"] for m in dead] == [b"bad_view_record", b"bad_view_record"]
    assert "fields missing: category" in orjson.loads(dead[1].value())["detail"]


def test_connector_dead_letters_what_redis_refuses_and_goes_on(servers, redis_client):
    """One record Redis cannot take (here a key of another type; before: a view of 5,000 attributes)
    used to stop `ctxsync connect redis` at that record after every restart."""
    import orjson

    from ctxsync.io.connectors import redis_connector
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer, read_topic

    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    topic, dlq = "views-refused", "views-refused.dlq"
    ensure_topics(config, [TopicSpec(topic, 1), TopicSpec(dlq, 1)])
    p = producer(config)
    redis_client.set(view_key("ctx", "general", "u1"), "not a hash")  # someone else's key, another type
    refused = orjson.dumps({**versioned(1), "key": "general:u1", "category": "general"})
    p.produce(topic, key=b"general:u1", value=refused)
    p.produce(topic, key=b"behavioral:u1", value=orjson.dumps(wide_view(5_000, version=2)))
    p.produce(topic, key=b"x", value=orjson.dumps({**versioned(1), "attributes": []}))
    assert p.flush(10) == 0
    connector = redis_connector(config, redis_client, topic=topic, dlq_topic=dlq, group_id="g-refused")
    connector.handler.write = _one_at_a_time(connector.handler.write)
    stats = connector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.consumed, stats.written, stats.dead_lettered) == (3, 1, 2)
    assert RedisViewSink(redis_client).read("behavioral", "u1") == wide_view(5_000, version=2)
    dead = [orjson.loads(m.value()) for m in read_topic(config, dlq)]
    assert [d["reason"] for d in dead] == ["redis_refused", "bad_view_record"]
    assert dead[0]["raw"].encode() == refused and dead[0]["origin"] == f"{topic}/0/0"
    assert len(dead[0]["detail"]) < 400 and "attributes must be an object" in dead[1]["detail"]


def _one_at_a_time(write):
    """The handler's write, called per record (as if each arrived in its own batch: no coalescing)."""
    def each(messages, stats):
        return [record for message in messages for record in write([message], stats)]
    return each


def wide_view(attributes: int, version: int = 1) -> dict:
    view = versioned(version)
    attribute = VIEW["attributes"]["segment"]
    view["attributes"] = {f"attr{i:05d}": {**attribute, "value": i} for i in range(attributes)}
    return view


@pytest.mark.parametrize("attributes", [5_000, 50_000])
def test_giant_views_are_written_whole(redis_client, attributes):
    """Lua's unpack() stops at ~8,000 values: the fields go to HSET in chunks (it halted the connector)."""
    sink = RedisViewSink(redis_client)
    view = wide_view(attributes)
    assert counts(sink.write([ViewWrite(view)])) == (1, 0)
    assert sink.read("behavioral", "u1") == view
    smaller = wide_view(3, version=2)
    assert counts(sink.write([ViewWrite(smaller)])) == (1, 0)      # the old fields go with the old view
    assert redis_client.hlen(view_key("ctx", "behavioral", "u1")) == len(hash_fields(smaller)) + 1  # + digest


def test_a_view_redis_refuses_is_returned_with_a_short_reason_and_the_rest_are_written(redis_client):
    sink = RedisViewSink(redis_client)
    other = versioned(1)
    other.update(key="behavioral:u2", userId="u2")
    taken = versioned(1)
    taken.update(key="behavioral:u3", userId="u3")
    redis_client.set(view_key("ctx", "behavioral", "u3"), "not a hash")  # someone else's key, another type
    result = sink.write([ViewWrite(wide_view(2_000)), ViewWrite(taken), ViewWrite(other)])
    assert (result.applied, result.skipped) == (2, 0)
    [(refused, reason)] = result.refused
    assert refused.view["userId"] == "u3"
    assert "WRONGTYPE" in reason and len(reason) <= 300
    assert sink.read("behavioral", "u2") == other
    with pytest.raises(ValueError, match="ttl"):
        sink.write([ViewWrite(versioned(1), ttl=10**13)])


def test_sync_mode_replaces_diverged_content_and_keeps_identical_content(redis_client):
    """After a restore the job recomputes views it wrote before its checkpoint: a different view under the
    same version, or a version the restored state never reached, is replaced by the first write in sync mode;
    the same content is a no-op; plain CAS never replaces."""
    sink = RedisViewSink(redis_client)
    sink.write([ViewWrite(versioned(3))])
    recomputed = versioned(2)
    recomputed["attributes"]["segment"]["value"] = "casual"
    assert counts(sink.write([ViewWrite(recomputed)])) == (0, 1)              # CAS: older, skipped
    result = sink.write([ViewWrite(recomputed, sync=True)])
    assert (result.applied, result.repaired) == (1, 1)                        # newer orphan replaced
    assert sink.read("behavioral", "u1") == recomputed
    assert counts(sink.write([ViewWrite(recomputed, sync=True)])) == (0, 1)   # same content: no-op
    same_version = copy.deepcopy(recomputed)
    same_version["attributes"]["segment"]["value"] = "power-user"
    assert counts(sink.write([ViewWrite(same_version)])) == (0, 1)            # CAS cannot tell
    assert sink.write([ViewWrite(same_version, sync=True)]).repaired == 1     # sync can
    assert sink.read("behavioral", "u1") == same_version


def test_read_user_never_returns_a_user_whose_id_embeds_the_tag(redis_client):
    """`x}:general:{bob`'s key matches the pattern `ctx:*:{bob}`; its view is not bob's (found by fuzzing)."""
    sink = RedisViewSink(redis_client)
    tricky = versioned(1)
    tricky.update(key="behavioral:x}:general:{bob", userId="x}:general:{bob")
    bob = versioned(1)
    bob.update(key="behavioral:bob", userId="bob")
    sink.write([ViewWrite(tricky), ViewWrite(bob)])
    assert [v["userId"] for v in sink.read_user("bob")] == ["bob"]


def test_a_batch_written_after_redis_forgot_the_script_is_applied(redis_client):
    """Redis restarted or flushed its scripts: every batch loads the script first, so EVALSHA finds it."""
    sink = RedisViewSink(redis_client)
    sink.write([ViewWrite(versioned(1))])
    redis_client.script_flush()
    result = sink.write([ViewWrite(versioned(2))], acks=[("m1", "n1", b'{"outcome": "applied"}')])
    assert (result.applied, result.refused) == (1, []) and sink.read("behavioral", "u1") == versioned(2)
    assert redis_client.lrange("ctx:ack:m1:n1", 0, -1) == [b'{"outcome": "applied"}']  # pushed once

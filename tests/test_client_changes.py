"""ctxsync.client change feeds on a real redis-server: views applied by the connector's sink reach the
model's consumer group in version order per aggregate, are acknowledged only after the loop body ran,
and a crashed instance's changes are claimed and delivered by another instance."""
from __future__ import annotations

import pytest

from ctxsync.client import ContextClient, from_urls
from ctxsync.io.redis_views import RedisViewSink, ViewWrite, stream_key
from tests.fixtures_servers import redis_client, servers, unique  # noqa: F401
from tests.helpers import SETTINGS
from tests.test_client import a_view

pytestmark = pytest.mark.servers
MODEL = "churn-predictor"


@pytest.fixture
def prefix(unique: str) -> str:  # noqa: F811
    return f"t{unique}"


@pytest.fixture
def sink(redis_client, prefix: str) -> RedisViewSink:  # noqa: F811
    return RedisViewSink(redis_client, prefix)


def client_for(servers, prefix: str) -> ContextClient:  # noqa: F811
    return ContextClient(from_urls(servers.endpoints()["redis"], settings=SETTINGS, prefix=prefix), MODEL)


def write(sink: RedisViewSink, user: str, version: int) -> None:
    sink.write([ViewWrite(a_view(user, "financial", version, riskTolerance=f"v{version}"))])


def pending(redis_client, prefix: str, group: str) -> int:  # noqa: F811
    return redis_client.xpending(stream_key(prefix, MODEL), group)["pending"]


def test_every_change_arrives_in_version_order_and_is_acknowledged(servers, sink, prefix, redis_client):  # noqa: F811
    with client_for(servers, prefix) as client:
        feed = client.changes(group="g", max_idle_s=0.5)  # the group starts at the stream's end
        write(sink, "old", 1)  # after the group: delivered
        for version in range(1, 6):
            for user in ("u1", "u2", "u3"):
                write(sink, user, version)
        write(sink, "u1", 3)  # not newer: the sink skips it, no change
        got = [(c.key, c.version, c.view.attributes["riskTolerance"].value, c.duplicate) for c in feed]
    assert sorted(got) == sorted([("financial:old", 1, "v1", False)] + [
        (f"financial:{u}", v, f"v{v}", False) for u in ("u1", "u2", "u3") for v in range(1, 6)])
    for user in ("u1", "u2", "u3"):
        assert [v for k, v, _, _ in got if k == f"financial:{user}"] == [1, 2, 3, 4, 5]
    assert pending(redis_client, prefix, "g") == 0 and feed.acknowledged == feed.delivered == 16


def test_a_change_whose_loop_body_failed_is_delivered_again(servers, sink, prefix, redis_client):  # noqa: F811
    with client_for(servers, prefix) as client:
        feed = client.changes(group="g", max_idle_s=0.3)
        write(sink, "u1", 1)
        with pytest.raises(RuntimeError):
            for _change in feed:
                raise RuntimeError("the model's handler failed")
        assert pending(redis_client, prefix, "g") == 1  # not acknowledged
        again = list(client.changes(group="g", max_idle_s=0.3))  # same consumer name: resumes its pending
        assert [(c.key, c.version, c.redelivered, c.duplicate) for c in again] == [("financial:u1", 1, True, False)]
        assert pending(redis_client, prefix, "g") == 0


def test_failover_a_crashed_instance_changes_are_claimed_by_another(servers, sink, prefix, redis_client):  # noqa: F811
    a_client, b_client = client_for(servers, prefix), client_for(servers, prefix)
    feed_a = a_client.changes(group="g", consumer="a", claim_idle_ms=300)
    feed_b = b_client.changes(group="g", consumer="b", claim_idle_ms=300, max_idle_s=1.5)
    for version in (1, 2):
        for user in ("u1", "u2"):
            write(sink, user, version)
    # instance a handles one change, takes the next and dies before its loop body returns
    changes_a = iter(feed_a)
    handled_by_a = [next(changes_a)]
    taken_by_a = next(changes_a)
    assert (handled_by_a[0].key, handled_by_a[0].version) == ("financial:u1", 1)
    assert pending(redis_client, prefix, "g") == 3  # a read the batch; only its first change is acknowledged
    del changes_a  # the crash: nothing more is acknowledged by a
    write(sink, "u1", 3)  # newer than what a held: b handles it first, the claimed older ones after
    got_b = [(c.key, c.version, c.redelivered, c.duplicate) for c in feed_b]
    assert (taken_by_a.key, taken_by_a.version, True, False) in got_b
    delivered = {(c.key, c.version) for c in handled_by_a} | {(k, v) for k, v, _, _ in got_b}
    assert delivered == {("financial:u1", 1), ("financial:u2", 1), ("financial:u1", 2), ("financial:u2", 2),
                         ("financial:u1", 3)}
    assert ("financial:u1", 3, False, False) in got_b
    assert sorted(v for k, v, redelivered, _ in got_b if k == "financial:u2") == [1, 2]
    assert pending(redis_client, prefix, "g") == 0
    a_client.close()
    b_client.close()


def test_an_older_version_claimed_after_a_newer_one_is_flagged_duplicate(servers, sink, prefix, redis_client):  # noqa: F811
    a_client, b_client = client_for(servers, prefix), client_for(servers, prefix)
    feed_a = a_client.changes(group="g", consumer="a", claim_idle_ms=300)
    feed_b = b_client.changes(group="g", consumer="b", claim_idle_ms=300, max_idle_s=1.0)
    write(sink, "u1", 1)
    changes_a = iter(feed_a)
    assert next(changes_a).version == 1  # a takes version 1 and dies
    del changes_a
    write(sink, "u1", 2)
    got_b = [(c.version, c.redelivered, c.duplicate) for c in feed_b]
    assert got_b == [(2, False, False), (1, True, True)]  # duplicate: the group already handled version 2
    assert pending(redis_client, prefix, "g") == 0
    a_client.close()
    b_client.close()


def test_a_pending_list_longer_than_a_batch_is_claimed_completely(servers, sink, prefix, redis_client):  # noqa: F811
    with client_for(servers, prefix) as client:
        feed = client.changes(group="g", consumer="b", batch=20, claim_idle_ms=200, max_idle_s=1.0)
        for i in range(120):
            write(sink, f"u{i}", 1)
        # an instance that read everything in one go and died (no acknowledgement at all)
        redis_client.xreadgroup("g", "a", {stream_key(prefix, MODEL): ">"}, count=1000)
        assert pending(redis_client, prefix, "g") == 120
        got = [(c.key, c.redelivered) for c in feed]
    assert sorted(got) == sorted((f"financial:u{i}", True) for i in range(120))
    assert pending(redis_client, prefix, "g") == 0

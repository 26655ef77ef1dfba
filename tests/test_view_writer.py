"""The job's own Redis view writer (ctxsync/io/view_writer.py) against a real redis-server."""
from __future__ import annotations

import threading
import time

import orjson
import pytest

from ctxsync.io.redis_views import RedisViewSink, view_key
from ctxsync.io.view_writer import JobViewWriter, ViewChanges
from tests.fixtures_servers import redis_client, servers  # noqa: F401

pytestmark = pytest.mark.servers


def view(user: str, version: int, segment: str = "power", category: str = "behavioral") -> dict:
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": "2026-11-24T10:00:00.000Z",
            "attributes": {"segment": {"value": segment, "confidence": 0.9, "updatedAt": "2026-11-24T10:00:00.000Z",
                                       "eventId": f"e{version}", "modelId": "m1"}},
            "targetModels": ["risk-model"]}


def text(record: dict) -> str:
    return orjson.dumps(record).decode()


@pytest.fixture
def writer(servers):  # noqa: F811
    url = servers.endpoints()["redis"]
    job_writer = JobViewWriter(orjson.dumps({"url": url, "prefix": "vw"}).decode())
    job_writer.open()
    yield job_writer
    job_writer.close()


def test_a_batch_writes_the_last_view_of_each_key_with_its_ttl(writer, redis_client):  # noqa: F811
    changes = ViewChanges()
    for version in (1, 2, 3):
        changes.view("behavioral:u1", text(view("u1", version)), 60, f"t/0/{version}")
    changes.view("behavioral:u2", text(view("u2", 1)), None, "t/0/4")
    assert writer.apply(changes) == []
    sink = RedisViewSink(redis_client, "vw")
    assert sink.read("behavioral", "u1") == view("u1", 3)
    assert 0 < redis_client.ttl(view_key("vw", "behavioral", "u1")) <= 60
    assert redis_client.xlen("vw:changes:risk-model") == 2   # one entry per key and batch


def test_an_erased_user_who_comes_back_in_the_same_batch_starts_from_a_clean_view(writer, redis_client):  # noqa: F811
    sink = RedisViewSink(redis_client, "vw")
    first = ViewChanges()
    first.view("behavioral:u1", text(view("u1", 7, "old")), None, "t/0/1")
    writer.apply(first)
    changes = ViewChanges()
    changes.tombstone("behavioral:u1", "t/0/2")
    changes.tombstone("financial:u1", "t/0/2")
    changes.view("behavioral:u1", text(view("u1", 1, "new")), None, "t/0/3")  # state restarts at version 1
    writer.apply(changes)
    assert sink.read("behavioral", "u1") == view("u1", 1, "new")
    gone = ViewChanges()
    gone.tombstone("behavioral:u1", "t/0/4")
    writer.apply(gone)
    assert sink.read("behavioral", "u1") is None


def test_a_recomputed_view_replaces_what_a_run_wrote_before_its_checkpoint(writer, redis_client):  # noqa: F811
    """Restored from a checkpoint, the job writes versions again; where they differ from what the killed
    run wrote (e.g. an event rejected once and accepted on replay), Redis follows the restored state."""
    sink = RedisViewSink(redis_client, "vw")
    before_kill = ViewChanges()
    before_kill.view("behavioral:u1", text(view("u1", 5, "orphan")), None, "t/0/9")
    writer.apply(before_kill)
    after_restore = ViewChanges()
    after_restore.view("behavioral:u1", text(view("u1", 4, "recomputed")), None, "t/0/8")
    writer.apply(after_restore)
    assert sink.read("behavioral", "u1") == view("u1", 4, "recomputed")


def test_a_view_redis_refuses_comes_back_with_its_origin_and_the_rest_is_written(writer, redis_client):  # noqa: F811
    redis_client.set(view_key("vw", "behavioral", "u9"), "someone else's string")
    changes = ViewChanges()
    changes.view("behavioral:u9", text(view("u9", 1)), None, "t/2/17")
    changes.view("behavioral:u1", text(view("u1", 1)), None, "t/2/18")
    [refused] = writer.apply(changes)
    assert (refused.view, refused.origin) == (text(view("u9", 1)), "t/2/17")
    assert "WRONGTYPE" in refused.reason
    assert RedisViewSink(redis_client, "vw").read("behavioral", "u1") == view("u1", 1)


def test_the_batch_waits_for_redis_to_come_back(writer, servers, redis_client):  # noqa: F811
    """Redis down: the write retries (the job's batch waits, nothing is lost), then applies."""
    servers.stop("redis")
    changes = ViewChanges()
    changes.view("behavioral:u1", text(view("u1", 1)), None, "t/0/1")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (writer.apply(changes), done.set()), daemon=True)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set()
    servers.start("redis")
    thread.join(60)
    assert done.is_set()
    assert RedisViewSink(redis_client, "vw").read("behavioral", "u1") == view("u1", 1)


def test_outcomes_asked_for_are_pushed_after_the_views_and_expire(writer, redis_client):  # noqa: F811
    changes = ViewChanges()
    changes.view("behavioral:u1", text(view("u1", 1)), None, "t/0/1")
    changes.ack("risk-model", "e1", {"eventId": "e1", "outcome": "applied"})
    writer.apply(changes)
    key = "vw:ack:risk-model:e1"
    assert orjson.loads(redis_client.lpop(key)) == {"eventId": "e1", "outcome": "applied"}
    only_ack = ViewChanges()  # a duplicate changes no view: its outcome still goes out
    only_ack.ack("risk-model", "e1", {"eventId": "e1", "outcome": "duplicate"})
    assert only_ack and writer.apply(only_ack) == []
    assert 0 < redis_client.ttl(key) <= 60

"""ctxsync.client publishing: events are contract-valid by construction, refused locally (nothing sent)
when the job would dead-letter them, and produced to the user's partition exactly as `ctxsync replay`
keys them (real Apache Kafka broker)."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import orjson
import pytest

from ctxsync.client import Context, ContextClient, InvalidEvent, Published, Update, from_urls
from ctxsync.client.clock import EventClock
from ctxsync.client.publish import build_event, check_event
from ctxsync.commands.replay import _user_key
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, partition_for, read_topic
from ctxsync.io.redis_views import RedisViewSink, ViewWrite
from tests.fixtures_servers import kafka_config, redis_client, servers, unique  # noqa: F401
from tests.helpers import NOW_MS, SETTINGS
from tests.test_client import a_view
from pipelines.file_outputs import OutputCollector
from pipelines.reference import run_reference
from transforms.ingest import ingest
from transforms.timestamps import format_iso_ms

pytestmark = pytest.mark.servers


def test_built_events_pass_the_jobs_own_ingest_step():
    event = build_event("risk-model", "risk-model-0", "u1",
                        {"riskTolerance": Update("low", 0.8, previous="high"), "creditScore": 710},
                        targets=["churn-predictor"], ttl=3600, priority="high", session_id="s1", now_ms=NOW_MS)
    key, parsed = ingest(orjson.dumps(event), 0, "test", NOW_MS, SETTINGS)
    assert key == "u1" and parsed.event_id == event["eventId"] and parsed.model_id == "risk-model"
    assert parsed.targets == ("churn-predictor",) and parsed.ttl == 3600
    assert event["contextDelta"]["updates"] == {"riskTolerance": {"current": "low", "confidence": 0.8,
                                                                  "previous": "high"},
                                                "creditScore": {"current": 710, "confidence": 1.0}}
    stamp = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert event["timestamp"] == stamp and len(event["eventId"]) == 32


@pytest.mark.parametrize("updates, options, reason", [
    ({"segment": Update("x", 1.5)}, {}, "invalid_field"),                        # confidence > 1
    ({"segment": Update(["a"], 0.5)}, {}, "invalid_field"),                      # not a scalar
    ({}, {}, "invalid_field"),                                                   # no updates
    ({"segment": "x", "riskTolerance": "low"}, {"expected_version": 2}, "multi_category_expected_version"),
    ({"segment": "x"}, {"event_type": "context.deleted"}, "delete_with_value"),
    ({"segment": "x"}, {"ttl": 0}, "invalid_field"),
    ({"segment": "x"}, {"targets": [""]}, "invalid_field"),
])
def test_events_the_job_would_dead_letter_are_refused_locally(updates, options, reason):
    event = build_event("m", "m-0", "u1", updates, now_ms=NOW_MS, **options)
    with pytest.raises(InvalidEvent) as refused:
        check_event(orjson.dumps(event), SETTINGS, NOW_MS)
    assert refused.value.reason == reason


def test_publish_keys_by_user_like_replay_and_update_reads_the_version(
        servers, kafka_config, redis_client, unique):  # noqa: F811
    topic = f"pub{unique}.events"
    ensure_topics(kafka_config, [TopicSpec(topic, 4)])
    endpoints = from_urls(servers.endpoints()["redis"], kafka_config["bootstrap.servers"], settings=SETTINGS,
                          prefix=f"t{unique}", events_topic=topic)
    RedisViewSink(redis_client, f"t{unique}").write([ViewWrite(a_view("u7", "behavioral", 4, segment="casual"))])
    users = [f"user-{i:05d}" for i in range(12)]
    with ContextClient(endpoints, "risk-model", instance_id="risk-model-3") as client:
        ids = [client.publish(user, {"segment": "power"}, targets=["churn-predictor"]) for user in users]
        with pytest.raises(InvalidEvent):
            client.publish("u1", {"segment": Update("x", 2.0)})
        published = client.update("u7", lambda ctx: {"segment": ctx.value("segment") + "+"})
        assert published.expected_version == 4
        with pytest.raises(InvalidEvent):
            client.update("u7", {"segment": "a", "riskTolerance": "b"})
    records = list(read_topic(kafka_config, topic))
    assert len(records) == len(users) + 1  # the refused events were never sent
    for message in records:
        doc = orjson.loads(message.value())
        user = doc["contextDelta"]["userId"]
        assert message.key() == _user_key(doc) == user.encode()
        assert message.partition() == partition_for(user.encode(), 4)
        assert doc["source"] == {"modelId": "risk-model", "instanceId": "risk-model-3"}
    by_user = {orjson.loads(m.value())["contextDelta"]["userId"]: orjson.loads(m.value()) for m in records}
    assert [by_user[u]["eventId"] for u in users] == ids
    assert by_user["u7"]["contextDelta"]["expectedVersion"] == 4
    assert by_user["u7"]["contextDelta"]["updates"]["segment"]["current"] == "casual+"
    assert by_user["u7"]["eventId"] == published.event_id


class Captured:
    """Stands in for the Kafka publisher: keeps what would be sent, in order."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def send(self, event: dict) -> Published:
        self.events.append(event)
        return Published(event["eventId"], event["contextDelta"].get("expectedVersion"), 0, len(self.events))


def applied_by_the_job(events: list[dict]) -> tuple[OutputCollector, dict]:
    """The job's own rules (reference runner) over the events in publish order; its outputs and views."""
    collector = OutputCollector()
    collector.add_all(run_reference(((n, orjson.dumps(e)) for n, e in enumerate(events, 1)), "client", SETTINGS))
    return collector, {key: orjson.loads(text) for key, (_, text) in collector.views.items()}


def test_writes_of_one_client_in_one_millisecond_apply_in_publish_order(servers, monkeypatch):  # noqa: F811
    """update() then publish() in the same millisecond marked the later write stale about half the time
    (the tie went to the larger random eventId); 200 writes in one frozen millisecond all apply, in order."""
    frozen = time.time_ns()
    client = ContextClient(from_urls(servers.endpoints()["redis"], "127.0.0.1:9", settings=SETTINGS), "risk-model")
    captured = Captured()
    monkeypatch.setattr(client, "_publisher_for", lambda: captured)
    monkeypatch.setattr(client, "get", lambda user, categories=None: Context(user, {}))
    monkeypatch.setattr(time, "time_ns", lambda: frozen)
    for n in range(100):
        client.update("u1", {"segment": f"read-{n}"})
        client.publish("u1", {"segment": f"blind-{n}"})
    monkeypatch.undo()
    assert {e["timestamp"] for e in captured.events} == {format_iso_ms(frozen // 1_000_000)}
    collector, views = applied_by_the_job(captured.events)
    assert collector.finish().stale_updates == 0
    assert views["behavioral:u1"]["version"] == 200
    assert views["behavioral:u1"]["attributes"]["segment"]["value"] == "blind-99"
    client.close()


def test_the_clock_stamps_increase_and_never_go_back():
    wall = iter([NOW_MS] * 5000 + [NOW_MS - 10, NOW_MS + 5])
    clock = EventClock(wall=lambda: next(wall))
    stamps = [clock.stamp() for _ in range(5002)]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))
    assert [ms for ms, _ in stamps].count(NOW_MS) == 4096  # a 12-bit counter per millisecond, then the next
    assert stamps[-2][0] == NOW_MS + 1 and stamps[-1][0] == NOW_MS + 5  # a step back holds still
    assert all(len(i) == 32 and uuid.UUID(i).version == 7 for _, i in stamps)
    assert uuid.UUID(stamps[0][1]).int >> 80 == NOW_MS


def test_explicit_event_ids_keep_the_order_by_taking_the_next_millisecond():
    clock = EventClock(wall=lambda: NOW_MS)
    assert clock.stamp("zz-1") == (NOW_MS, "zz-1")
    ms, generated = clock.stamp()
    assert ms == NOW_MS + 1  # a generated id (hex) sorts before "zz-1": the write moves on by 1 ms
    assert clock.stamp("zz-0")[0] == NOW_MS + 1 and clock.stamp("aa")[0] == NOW_MS + 2

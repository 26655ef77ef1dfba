"""An output record larger than a Kafka record may be would stop the job at that record after every
restart (the Kafka sink fails): it becomes a dead letter instead (found by fuzzing: a 220 KB event with
4,100 attributes and a 20 KB modelId makes an 82 MB view, each attribute repeats the modelId)."""
from __future__ import annotations

import orjson
import pytest

from ctxsync.io.kafka_io import MAX_RECORD_BYTES, producer, read_topic
from ctxsync.io.redis_views import RedisViewSink
from pipelines.flink.kafka import bounded_records, kafka_lines
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import NOW_MS, SETTINGS, event, raw
from tests.test_e2e_local import prepare, run_local
from transforms.ingest import ingest
from transforms.sync import sync_step
from transforms.timestamps import format_iso_ms


def giant_event(event_id: str = "giant") -> dict:
    updates = {f"a{i:04d}": {"current": i, "confidence": 1} for i in range(4100)}
    return event(eventId=event_id, source__modelId="m" * 20_000, contextDelta__updates=updates,
                 timestamp=format_iso_ms(NOW_MS - 1000))


def test_an_oversized_view_becomes_a_dead_letter_with_the_event_and_the_rest_passes():
    payload = raw(giant_event())
    _, parsed = ingest(payload, 7, "t/0/7", NOW_MS, SETTINGS)
    _, lines = sync_step(None, parsed, SETTINGS)
    records = kafka_lines(lines, None)
    bounded = bounded_records(records, payload.decode("latin-1"), 7, 0, "t")
    assert [r[0] for r in bounded] == ["D", "H"]          # the view replaced, the history kept
    dead = orjson.loads(bounded[0][1:])
    assert (dead["reason"], dead["stage"], dead["origin"]) == ("output_too_large", "route", "t/0/7")
    assert dead["raw"].encode() == payload and "view record is" in dead["detail"]
    assert len(records[0].encode()) > MAX_RECORD_BYTES > len(bounded[0].encode())
    small = kafka_lines(sync_step(None, ingest(raw(event()), 1, "t/0/1", NOW_MS, SETTINGS)[1], SETTINGS)[1], None)
    assert bounded_records(small, "{}", 1, 0, "t") is small  # nothing copied on the common path


@pytest.mark.servers
@pytest.mark.flink
def test_the_job_goes_on_past_an_event_whose_view_no_kafka_record_can_hold(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path):  # noqa: F811
    prefix = f"big{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    p = producer(config)
    for doc in (event(eventId="before", contextDelta__userId="u2"), giant_event(),
                event(eventId="after", contextDelta__userId="u3")):
        p.produce(f"{prefix}.events", key=doc["contextDelta"]["userId"].encode(), value=raw(doc))
    assert p.flush(30) == 0
    run_local(job, tmp_path, servers)
    sink = RedisViewSink(redis_client)
    assert sink.read("behavioral", "u2") and sink.read("behavioral", "u3")   # it went on
    assert len(sink.read("general", "u1")["attributes"]) == 4100             # Redis holds the giant view
    dead = [orjson.loads(m.value()) for m in read_topic(config, f"{prefix}.dlq")]
    assert [d["reason"] for d in dead] == ["output_too_large"]
    assert dead[0]["raw"].encode() == raw(giant_event())

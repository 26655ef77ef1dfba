"""Elasticsearch history sink against noida-db's Elasticsearch API: template, monthly indices,
idempotent create, rejected documents reported with ES's reason, retries while ES is down."""
from __future__ import annotations

import threading
import time

import orjson
import pytest

from ctxsync.io.connectors import elasticsearch_connector
from ctxsync.io.es_history import (
    HISTORY_MAPPINGS, EsBulkWriter, history_doc, history_index, history_template, install_templates,
    search_history, violation_doc,
)
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from tests.fixtures_servers import es_client, kafka_config, servers, unique  # noqa: F401
from tests.helpers import event, read_jsonl, reference_files


def history(event_id: str, ts: str, user: str = "u1", model: str = "risk-model", attr: str = "segment") -> dict:
    doc = event(eventId=event_id, timestamp=ts, contextDelta__userId=user, source__modelId=model)
    doc["contextDelta"]["updates"] = {attr: {"current": "x", "confidence": 0.5}}
    doc.update(aggregates=[f"behavioral:{user}"], applied=[attr], stale=[], violation=False, conflict=False)
    return doc


def test_template_maps_the_fields_analysts_filter_on():
    body = history_template()
    assert body["index_patterns"] == ["context-history-*"]
    props = body["template"]["mappings"]["properties"]
    assert props["contextDelta"]["properties"]["userId"]["type"] == "keyword"
    assert props["timestamp"]["type"] == "date"
    assert props["contextDelta"]["properties"]["updates"]["type"] == "flattened"
    assert HISTORY_MAPPINGS["dynamic"] is False  # unknown extra fields never cause mapping conflicts


def test_monthly_index_name():
    assert history_index("2026-11-24T10:00:00.123Z") == "context-history-2026.11"
    assert history_index("2027-01-01T00:00:00.000Z") == "context-history-2027.01"


@pytest.mark.servers
def test_create_is_idempotent_and_lands_in_monthly_indices(es_client):
    install_templates(es_client)
    writer = EsBulkWriter(es_client)
    docs = [history_doc(history("e1", "2026-11-24T10:00:00.000Z"), "h/0/0"),
            history_doc(history("e2", "2026-12-01T10:00:00.000Z"), "h/0/1")]
    assert writer.write(docs) == (2, [])
    assert writer.write(docs) == (2, [])  # a re-delivery: 409 = already there = done, nothing duplicated
    es_client.indices.refresh(index="context-history-*")
    assert es_client.count(index="context-history-2026.11")["count"] == 1
    assert es_client.count(index="context-history-2026.12")["count"] == 1
    mapping = es_client.indices.get_mapping(index="context-history-2026.11")["context-history-2026.11"]
    assert mapping["mappings"]["properties"]["contextDelta"]["properties"]["userId"]["type"] == "keyword"


@pytest.mark.servers
def test_rejected_documents_come_back_with_es_reason(es_client):
    install_templates(es_client)
    bad = history("e3", "2026-11-24T10:00:00.000Z")
    bad["violation"] = {"not": "a boolean"}
    done, rejected = EsBulkWriter(es_client).write([history_doc(bad, "context.history/0/7"),
                                                   history_doc(history("e4", "2026-11-24T10:00:00.000Z"), "x")])
    assert done == 1 and len(rejected) == 1
    assert rejected[0].doc.origin == "context.history/0/7"
    assert rejected[0].status == 400 and "violation" in rejected[0].reason


@pytest.mark.servers
def test_violations_have_deterministic_ids(es_client):
    install_templates(es_client)
    record = {"kind": "ordering", "key": "behavioral:u1", "eventId": "e1",
              "timestamp": "2026-11-24T10:00:00.000Z", "lagMs": 5, "maxTimestamp": "2026-11-24T10:00:00.005Z"}
    writer = EsBulkWriter(es_client)
    writer.write([violation_doc(record, "v/0/0")])
    writer.write([violation_doc(record, "v/0/0")])
    es_client.indices.refresh(index="context-violations")
    assert es_client.count(index="context-violations")["count"] == 1


@pytest.mark.servers
def test_search_history_filters_by_user_time_attribute_and_model(es_client):
    install_templates(es_client)
    EsBulkWriter(es_client).write([history_doc(h, "o") for h in (
        history("a", "2026-11-24T10:00:00.000Z"), history("b", "2026-11-24T11:00:00.000Z", attr="timezone"),
        history("c", "2026-11-24T12:00:00.000Z", model="churn-predictor"),
        history("d", "2026-11-24T13:00:00.000Z", user="u2"))])
    es_client.indices.refresh(index="context-history-*")
    assert [h["eventId"] for h in search_history(es_client, "u1")] == ["a", "b", "c"]
    assert [h["eventId"] for h in search_history(es_client, "u1", since="2026-11-24T10:30:00Z")] == ["b", "c"]
    assert [h["eventId"] for h in search_history(es_client, "u1", attribute="timezone")] == ["b"]
    assert [h["eventId"] for h in search_history(es_client, "u1", model="churn-predictor")] == ["c"]


@pytest.mark.servers
def test_bulk_retries_while_es_is_down_then_succeeds(servers, es_client):
    install_templates(es_client)
    writer = EsBulkWriter(es_client, backoff_s=(0.1, 0.5))
    servers.stop("noida")
    restarter = threading.Timer(1.5, lambda: servers.start("noida"))
    restarter.start()
    started = time.monotonic()
    try:
        done, rejected = writer.write([history_doc(history("r1", "2026-11-24T10:00:00.000Z"), "o")])
    finally:
        restarter.join()
    assert (done, rejected) == (1, []) and writer.retries >= 1 and time.monotonic() - started >= 1.0
    es_client.indices.refresh(index="context-history-*")
    assert es_client.count(index="context-history-*")["count"] == 1


@pytest.mark.servers
def test_accepted_events_sharing_an_event_id_are_all_kept(es_client, kafka_config, unique, tmp_path):
    """Issue 13: with `_id` = eventId the second and third accepted events below were refused (409) and
    counted as written. Two users send the same eventId, and u1 sends it again after the 24 h dedup
    retention; the reference runner accepts all of them, and each must be found in Elasticsearch."""
    same = {"eventId": "shared-1"}
    events = [event(**same, timestamp="2026-11-17T10:00:00.000Z", contextDelta__userId="u1"),
              event(**same, timestamp="2026-11-17T10:00:00.000Z", contextDelta__userId="u2"),
              event(eventId="other", timestamp="2026-11-18T12:00:00.000Z", contextDelta__userId="u1"),
              event(**same, timestamp="2026-11-18T12:00:01.000Z", contextDelta__userId="u1")]
    source = tmp_path / "events.jsonl"
    source.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    summary = reference_files(source, tmp_path / "out")
    assert summary.accepted == 4 and summary.duplicates == 0  # the contract accepts every one of them
    topics = (f"h-{unique}", f"v-{unique}")
    ensure_topics(kafka_config, [TopicSpec(topics[0], 2), TopicSpec(topics[1], 1), TopicSpec(f"d-{unique}")])
    out = producer(kafka_config)
    for record in read_jsonl(tmp_path / "out" / "history.jsonl"):
        out.produce(topics[0], key=record["contextDelta"]["userId"].encode(), value=orjson.dumps(record))
    assert out.flush(10) == 0

    def deliver() -> int:
        connector = elasticsearch_connector(kafka_config, es_client, topics, f"d-{unique}", f"g-{unique}")
        return connector.run(until_caught_up=True, idle_timeout_s=20).written

    assert deliver() == 4
    found = [(h["contextDelta"]["userId"], h["eventId"], h["timestamp"]) for h in search_history(es_client, "u1")]
    assert found == [("u1", "shared-1", "2026-11-17T10:00:00.000Z"), ("u1", "other", "2026-11-18T12:00:00.000Z"),
                     ("u1", "shared-1", "2026-11-18T12:00:01.000Z")]
    assert [h["eventId"] for h in search_history(es_client, "u2")] == ["shared-1"]
    # re-delivery (the connector's offsets lost: a new group reads everything again) duplicates nothing
    connector = elasticsearch_connector(kafka_config, es_client, topics, f"d-{unique}", f"g2-{unique}")
    assert connector.run(until_caught_up=True, idle_timeout_s=20).written == 4
    assert es_client.count(index="context-history-*")["count"] == 4

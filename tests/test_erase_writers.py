"""The erase record's checks in each writer on their own: the Redis view script (real redis-server), the
Elasticsearch writer (the suite's Elasticsearch API), and the pure rules of transforms/erasure.py."""
from __future__ import annotations

from functools import partial

import orjson
import pytest

from ctxsync.io.erase_record import EraseRecord, ErasedUsers, erased_docs
from ctxsync.io.es_history import EsBulkWriter, history_doc, violation_doc
from ctxsync.io.redis_views import RedisViewSink, ViewWrite
from transforms.erasure import oldest_ms, scrub_dead_letter, state_predates
from transforms.records import DEAD_LETTER, tagged
from transforms.timestamps import format_iso_ms
from tests.fixtures_servers import es_client, redis_client, servers  # noqa: F401
from tests.helpers import event, raw

AT = 1_795_000_000_000  # the erase time of these tests (2026-11-18); helpers.event is of 2026-11-17


def view(user: str, version: int, stamp: str) -> dict:
    return {"key": f"behavioral:{user}", "category": "behavioral", "userId": user, "version": version,
            "updatedAt": stamp, "targetModels": ["m1"],
            "attributes": {"segment": {"value": f"v-{user}-{version}", "confidence": 1.0, "updatedAt": stamp,
                                       "eventId": "e", "modelId": "m"}}}


@pytest.mark.servers
def test_the_view_script_refuses_views_from_before_the_erase_in_every_mode_and_takes_later_ones(redis_client):
    sink = RedisViewSink(redis_client)
    before, at, after = format_iso_ms(AT - 1), format_iso_ms(AT), format_iso_ms(AT + 1)
    assert sink.write([ViewWrite(view("u1", 1, before)), ViewWrite(view("u2", 1, before))]).applied == 2
    EraseRecord(redis_client, "ctx").add(["u1"], AT)
    redis_client.delete("ctx:behavioral:{u1}", "ctx:changes:m1")  # what `ctxsync erase` deletes
    for sync in (False, True):  # the connector's compare-and-set, the job's sync mode
        result = sink.write([ViewWrite(view("u1", v, at), sync=sync) for v in (1, 5)])
        assert (result.erased, result.applied) == (2, 0)
    assert sink.read("behavioral", "u1") is None and redis_client.exists("ctx:changes:m1") == 0
    mixed = view("u1", 2, after)  # one attribute from before the erase among newer ones: refused too
    mixed["attributes"]["lastAction"] = {**mixed["attributes"]["segment"], "updatedAt": before}
    assert sink.write([ViewWrite(mixed)]).erased == 1
    assert sink.write([ViewWrite(view("u1", 1, after))]).applied == 1  # the user came back after the erase
    assert sink.write([ViewWrite(view("u2", 2, before))]).applied == 1  # nobody else is affected
    assert [e[1][b"key"] for e in redis_client.xrange("ctx:changes:m1")] == [b"ctx:behavioral:{u1}",
                                                                             b"ctx:behavioral:{u2}"]


@pytest.mark.servers
def test_the_elasticsearch_writer_leaves_out_documents_of_users_erased_after_them(redis_client, es_client):
    EraseRecord(redis_client, "ctx").add(["u1", "pt:token-of-u1"], AT)
    writer = EsBulkWriter(es_client, erased=partial(erased_docs, EraseRecord(redis_client, "ctx")))
    stamp = {"old": format_iso_ms(AT), "new": format_iso_ms(AT + 1)}
    docs = [history_doc({"eventId": f"e-{user}-{when}", "timestamp": stamp[when], "contextDelta": {"userId": user}},
                        f"t/0/{n}")
            for n, (user, when) in enumerate([("u1", "old"), ("pt:token-of-u1", "old"), ("u1", "new"), ("u2", "old")])]
    docs += [violation_doc({"kind": "ordering", "key": f"behavioral:{user}", "eventId": "v", "timestamp": stamp["old"],
                            "lagMs": 1}, f"t/1/{n}") for n, user in enumerate(("pt:token-of-u1", "u2"))]
    written, rejected = writer.write(docs)
    assert (written, rejected, writer.skipped_erased) == (3, [], 3)
    writer.refresh()
    ids = {hit["_id"] for hit in es_client.search(index="context-*", size=100, query={"match_all": {}})["hits"]["hits"]}
    assert ids == {f"e-u1-new|u1|{stamp['new']}", f"e-u2-old|u2|{stamp['old']}",
                   f"ordering|behavioral:u2|v|{stamp['old']}"}


@pytest.mark.servers
def test_a_reader_copy_of_the_record_follows_each_erase(redis_client):
    record = EraseRecord(redis_client, "ctx")
    users = ErasedUsers(record).refresh()
    assert not users and users.at("u1") is None
    record.add(["u1"], AT)
    assert users.at("u1") is None  # a copy changes only when refreshed (the job: before each batch)
    assert users.refresh().at("u1") == AT and users.at("u2") is None
    record.add(["u1"], AT + 5)  # erased again later: the later time counts
    assert users.refresh().at("u1") == AT + 5
    assert b"u1" not in orjson.dumps({k.decode(): v.decode() for k, v in redis_client.hgetall("ctx:erased").items()})


def test_a_dead_letter_naming_an_erased_user_loses_its_payload_and_names_no_one():
    line = tagged(DEAD_LETTER, 3, {"reason": "invalid_field", "detail": "eventId: empty", "stage": "validate",
                                   "raw": raw(event(eventId="", contextDelta__userId="u1")).decode(),
                                   "rawEncoding": "utf-8", "origin": "t/0/3"})
    scrubbed = orjson.loads(scrub_dead_letter(line, {"u1": AT}.get).split("\t", 2)[2])
    assert scrubbed == {"reason": "invalid_field", "detail": None, "stage": "validate", "raw": None,
                        "rawEncoding": None, "origin": "t/0/3", "erased": True}
    assert scrub_dead_letter(line, {"u2": AT}.get) is line
    assert scrub_dead_letter(line, {"u1": 1}.get) is line  # the event is from after that erase: the user's return


def test_a_state_or_view_from_before_the_erase_is_recognized():
    old = {"dedup": {"seen": {"e1": AT - 5}, "clock": AT - 5, "limit": 8}, "aggs": {}}
    assert state_predates(old, AT) and not state_predates(old, AT - 6)
    mixed = view("u1", 3, format_iso_ms(AT + 10))
    mixed["attributes"]["old"] = {**mixed["attributes"]["segment"], "updatedAt": format_iso_ms(AT - 10)}
    assert oldest_ms(mixed) == AT - 10 and oldest_ms({**mixed, "attributes": {}}) == AT + 10


@pytest.mark.servers
def test_the_history_connector_retries_while_the_erase_records_redis_is_away(es_client):
    """The writer cannot ask the record: the batch fails with an error the connector retries, never a write."""
    import socket

    import redis

    from ctxsync.io.connectors import ElasticsearchHandler

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = EraseRecord(redis.Redis(port=port, socket_connect_timeout=1), "ctx")
    handler = ElasticsearchHandler(EsBulkWriter(es_client, erased=partial(erased_docs, away)))
    doc = history_doc({"eventId": "e", "timestamp": format_iso_ms(AT), "contextDelta": {"userId": "u1"}}, "t/0/0")
    with pytest.raises(handler.transient):
        handler.writer.write([doc])
    assert es_client.count(index="context-*", allow_no_indices=True)["count"] == 0

"""PII protection (transforms/privacy.py): tokens, AES-GCM per user, the records that leave the job; then the
real Kafka job with privacy on (Apache Kafka, redis-server key store): nothing clear in any topic or ES document,
joins by token work, an authorized reader decrypts."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
import pytest

from ctxsync.io.keystore import FileBackend, KeyStore, MasterKeyWrapper, open_protector
from transforms.ingest import ingest
from transforms.privacy import (
    UNATTRIBUTED, decrypt_value, encrypt_value, is_encrypted, pseudonym, reveal,
)
from transforms.records import untag
from transforms.settings import PrivacyPolicy
from transforms.sync import sync_step
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import NOW_MS, SETTINGS, event, raw

POLICY = PrivacyPolicy(
    fields={"contextDelta.userId": "pseudonymize", "contextDelta.sessionId": "encrypt",
            "source.instanceId": "pseudonymize"},
    attributes={"creditScore": "encrypt", "segment": "encrypt"})


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(FileBackend(str(tmp_path / "keys")), MasterKeyWrapper(os.urandom(32)))


def outputs(protector, *docs) -> list[tuple[str, dict]]:
    """(kind, record) of the protected output lines of these events, processed in order."""
    state, out = None, []
    for seq, doc in enumerate(docs, 1):
        key, parsed = ingest(raw(doc) if isinstance(doc, dict) else doc, seq, f"t:{seq}", NOW_MS, SETTINGS)
        if isinstance(parsed, str):
            lines = protector.lines([parsed], None)
        else:
            state, lines = sync_step(state, parsed, SETTINGS)
            lines = protector.lines(lines, key)
        out += [(kind, orjson.loads(text)) for kind, _, _, text in map(untag, lines)]
    return out


def test_pseudonyms_are_stable_per_key_and_differ_between_keys():
    a, b = os.urandom(32), os.urandom(32)
    assert pseudonym(a, "u1") == pseudonym(a, "u1") != pseudonym(a, "u2")
    assert pseudonym(a, "u1") != pseudonym(b, "u1")
    assert pseudonym(a, "u1").startswith("pt:") and "u1" not in pseudonym(a, "u1")[3:]


def test_encryption_round_trips_json_values_and_refuses_another_key_or_user():
    key = os.urandom(32)
    for value in ("s-1", 720, 0.5, True, None):
        sealed = encrypt_value(key, value, "pt:user")
        assert is_encrypted(sealed) and decrypt_value(key, sealed, "pt:user") == value
    sealed = encrypt_value(key, "secret", "pt:user")
    assert encrypt_value(key, "secret", "pt:user") != sealed  # a fresh nonce each time
    with pytest.raises(ValueError, match="cannot decrypt"):
        decrypt_value(os.urandom(32), sealed, "pt:user")
    with pytest.raises(ValueError, match="cannot decrypt"):
        decrypt_value(key, sealed, "pt:other")  # moved to another user's record
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(ValueError):
        decrypt_value(key, tampered, "pt:user")


def test_history_and_violations_leave_without_clear_pii_and_views_stay_readable(store):
    protector = open_protector(POLICY, store)
    first = event(eventId="e1", contextDelta__updates={"creditScore": {"current": 712, "confidence": 0.9},
                                                       "segment": {"current": "vip", "confidence": 0.8}})
    late = event(eventId="e2", timestamp="2026-11-17T09:00:00.000Z",
                 contextDelta__updates={"creditScore": {"previous": 500, "current": 640, "confidence": 0.7}})
    records = outputs(protector, first, late)
    kinds = [kind for kind, _ in records]
    assert kinds.count("H") == 2 and "O" in kinds and "C" in kinds and "V" in kinds
    token = protector.token("u1")
    text = orjson.dumps([r for kind, r in records if kind != "V"]).decode()
    for clear in ('"u1"', ":u1", '"s1"', "712", "640", "500", '"vip"', "risk-model-0"):
        assert clear not in text, clear
    history = [r for kind, r in records if kind == "H"]
    assert {h["contextDelta"]["userId"] for h in history} == {token}  # joins by token
    assert history[0]["aggregates"] == [f"behavioral:{token}", f"financial:{token}"]
    assert history[0]["source"]["instanceId"] == protector.token("risk-model-0")
    opened = reveal(history[1], store.existing_key(token))
    assert opened["contextDelta"]["sessionId"] == "s1"
    assert opened["contextDelta"]["updates"]["creditScore"] == {"previous": 500, "current": 640, "confidence": 0.7}
    conflict = next(r for kind, r in records if kind == "C")
    assert conflict["key"] == f"financial:{token}"
    mismatch = conflict["mismatches"][0]
    assert decrypt_value(store.existing_key(token), mismatch["expected"], token) == 500
    assert decrypt_value(store.existing_key(token), mismatch["actual"], token) == 712
    views = [r for kind, r in records if kind == "V"]  # Redis views: for granted models, in clear
    assert {v["userId"] for v in views} == {"u1"}
    assert any(v["attributes"].get("creditScore", {}).get("value") == 712 for v in views)


def test_dead_letters_are_encrypted_under_the_named_users_key_or_a_shared_one(store):
    protector = open_protector(POLICY, store)
    bad_user = event(eventId="", contextDelta__userId="user-seven")  # invalid (empty eventId), names u7
    records = outputs(protector, bad_user, b"\xff not json")
    (_, named), (_, unnamed) = records
    token = protector.token("user-seven")
    assert named["keyId"] == token and "user-seven" not in orjson.dumps(named).decode()
    assert reveal(named, store.existing_key(token))["raw"] == raw(bad_user).decode()
    assert unnamed["keyId"] == UNATTRIBUTED and is_encrypted(unnamed["raw"])
    assert reveal(unnamed, store.existing_key(UNATTRIBUTED))["raw"] == base64.b64encode(b"\xff not json").decode()
    assert named["reason"] == "invalid_field" and named["stage"] and named["origin"] == "t:1"


def test_after_an_erase_old_events_are_suppressed_and_the_key_is_gone(store):
    protector = open_protector(POLICY, store)
    token = protector.token("u1")
    outputs(protector, event())
    assert store.existing_key(token) is not None and not protector.suppressed("u1", 1)
    assert store.erase(token, at_ms=NOW_MS)
    store.forget(token)
    assert store.existing_key(token) is None
    assert protector.suppressed("u1", NOW_MS - 1) and protector.suppressed("u1", NOW_MS)
    assert not protector.suppressed("u1", NOW_MS + 1)  # a user back after the erase
    assert store.data_key(token) is not None and store.erased_at(token) == NOW_MS  # a new key, marker kept


def with_privacy(job):
    """The test's local-profile job with PII protection on: master key from CTXSYNC_MASTER_KEY, data keys
    in the profile's Redis."""
    from ctxsync.config import Profile

    data = job.profiles["local"].model_dump()
    data["privacy"] = {"master_key_env": "CTXSYNC_MASTER_KEY", "keystore": "redis"}
    return job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})


def protector_of(job, servers):
    """The job's Protector as an authorized reader opens it (same key store, same master key)."""
    from ctxsync.config import privacy_policy, resolve_profile
    from ctxsync.servers import running_endpoints

    profile = resolve_profile(job.profiles["local"], "local", running_endpoints())
    policy = privacy_policy(job, profile)
    return open_protector(policy), policy


def sink_texts(config: dict, es_client, prefix: str) -> dict[str, list[dict]]:
    """Every record that left the job, except views: the log topics and the Elasticsearch documents."""
    from ctxsync.io.kafka_io import read_topic

    es_client.indices.refresh(index="context-*")
    got = {name: [orjson.loads(m.value()) for m in read_topic(config, f"{prefix}.{name}")]
           for name in ("history", "violations", "dlq")}
    for index in ("context-history-*", "context-violations"):
        hits = es_client.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
        got[index] = [hit["_source"] | {"_id": hit["_id"]} for hit in hits]
    return got


@pytest.mark.flink
@pytest.mark.servers
def test_kafka_job_with_privacy_on_writes_no_clear_pii_and_an_authorized_reader_decrypts(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path):
    from ctxsync.commands.replay import ReplayFilter, replay
    from ctxsync.generate import GeneratorOptions, generate_lines
    from ctxsync.io.kafka_io import producer
    from ctxsync.io.keystore import new_key_text
    from tests.test_e2e_local import prepare, reference, run_local

    prefix = f"pii{unique}"
    monkeypatch.setenv("CTXSYNC_MASTER_KEY", new_key_text())
    job, config = prepare(servers, monkeypatch, prefix)
    job = with_privacy(job)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in generate_lines(
        GeneratorOptions(events=300, users=12, seed=5, invalid_rate=0.05))))
    expected = reference(events, job)  # what the job computes, in clear
    assert replay(events, producer(config), f"{prefix}.events", ReplayFilter()).sent == expected.summary.read
    run_local(job, tmp_path, servers)

    got = sink_texts(config, es_client, prefix)
    assert len(got["history"]) == len(got["context-history-*"]) == expected.summary.accepted
    assert len(got["violations"]) == len(got["context-violations"]) == \
        expected.summary.ordering_violations + expected.summary.conflicts > 0
    assert len(got["dlq"]) == expected.summary.dead_lettered > 0
    everything = orjson.dumps(got).decode()
    for clear in ("user-0", "sess-"):  # every userId and sessionId of the input starts so
        assert clear not in everything
    protector, _ = protector_of(job, servers)
    want = [orjson.loads(text) for _, text in expected.history]
    users = {h["contextDelta"]["userId"] for h in want}
    # joins by token: each user's history, found by the user's token, is the user's history
    for user in sorted(users)[:4]:
        mine = [h for h in got["context-history-*"] if h["contextDelta"]["userId"] == protector.token(user)]
        assert sorted(h["eventId"] for h in mine) == \
            sorted(h["eventId"] for h in want if h["contextDelta"]["userId"] == user)
    # an authorized reader (master key -> the user's data key) reads the clear record back
    by_id = {h["eventId"]: h for h in want}
    protected = [h for h in got["history"] if "creditScore" in h["contextDelta"]["updates"]]
    assert protected
    for record in protected[:20]:
        clear = by_id[record["eventId"]]
        key = protector.keys.existing_key(record["contextDelta"]["userId"])
        opened = reveal(record, key)
        assert opened["contextDelta"]["sessionId"] == clear["contextDelta"]["sessionId"]
        assert opened["contextDelta"]["updates"] == clear["contextDelta"]["updates"]
        assert is_encrypted(record["contextDelta"]["updates"]["creditScore"]["current"])
    want_raw = sorted(orjson.loads(text)["raw"] for _, text in expected.dead_letters)
    assert all(is_encrypted(r["raw"]) for r in got["dlq"])
    assert sorted(reveal(r, protector.keys.existing_key(r["keyId"]))["raw"] for r in got["dlq"]) == want_raw
    # views stay readable in Redis, for the models granted their category
    from ctxsync.io.redis_views import RedisViewSink

    views = RedisViewSink(redis_client).read_all()
    assert sorted(v["key"] for v in views) == sorted(expected.views)
    assert {v["userId"] for v in views} <= users


def test_a_dead_letter_of_an_erased_user_from_before_the_erase_keeps_no_payload(store):
    protector = open_protector(POLICY, store)
    token = protector.token("user-seven")
    store.erase(token, at_ms=NOW_MS)
    before = event(eventId="", contextDelta__userId="user-seven")  # 2026-11-17: before the erase
    after = event(eventId="", contextDelta__userId="user-seven", timestamp="2026-11-19T00:00:00.000Z")
    (_, old), (_, new) = outputs(protector, before, after)
    assert old["erased"] and old["raw"] is None and old["detail"] is None and old["keyId"] == token
    assert "erased" not in new and reveal(new, store.existing_key(token))["raw"] == raw(after).decode()


def test_the_privacy_lookup_opens_what_a_key_opens_and_counts_what_an_erase_shredded(store):
    from ctxsync.io.history_topic import HistoryRecord
    from ctxsync.privacy_lookup import Opened, PrivacyLookup

    lookup = PrivacyLookup(open_protector(POLICY, store), store)
    docs = [event(eventId=f"e{n}", contextDelta__userId=user,
                  contextDelta__updates={"creditScore": {"current": 700 + n, "confidence": 0.9}})
            for n, user in enumerate(("u1", "u2", "u1"))]
    history = [record for kind, record in outputs(lookup.protector, *docs) if kind == "H"]
    assert lookup.token("u1") == history[0]["contextDelta"]["userId"] != lookup.token("u2")
    records = [HistoryRecord(f"h/0/{n}", orjson.dumps(r), 0) for n, r in enumerate(history)]
    opened = Opened()
    clear = [orjson.loads(r.raw) for r in lookup.open_history(records, opened, "u1")]  # only u1's, decrypted
    assert [r["contextDelta"]["updates"]["creditScore"]["current"] for r in clear] == [700, 702]
    assert len(list(lookup.open_history(records, opened))) == 3 and opened.shredded == 0  # u2's key read too
    store.erase(lookup.token("u2"), at_ms=NOW_MS)
    lookup.forget()  # keys are read once per check: the next one sees the erase
    assert [orjson.loads(r.raw)["eventId"] for r in lookup.open_history(records, opened)] == ["e0", "e2"]
    assert opened.shredded == 1  # u2's record: its key is gone, nobody can open it
    assert lookup.readable(history[1]) == history[1]  # shown as it is, never half-opened
    letter = lookup.protector.dead_letter({"reason": "r", "detail": "d", "stage": "s", "rawEncoding": "utf-8",
                                           "raw": raw(event(eventId="", contextDelta__userId="u1")).decode()})
    assert is_encrypted(letter["raw"]) and not is_encrypted(lookup.readable(letter)["raw"])

    token_views = {f"financial:{lookup.token(u)}": {"key": f"financial:{lookup.token(u)}", "category": "financial",
                                                    "userId": lookup.token(u), "version": 1} for u in ("u1", "u2")}
    named = lookup.clear_views(token_views, ["u1", None])  # u2 named by no store: keeps its token
    assert named["financial:u1"]["userId"] == "u1" and f"financial:{lookup.token('u2')}" in named

"""Erase is a state of the system: after `ctxsync erase`, no path brings the user back, privacy on or off.

One world per privacy mode (module fixture; real Apache Kafka, redis-server, the Elasticsearch API and the
Flink job of the local profile): a witness user W and background users are processed; user X is processed
too (views, change entries a model acknowledged, history, a violation, a dead letter naming X); user Y's
events are queued but not processed yet. Then X and Y are erased and the job runs again. Each test takes
one path the data could come back by (queued events, re-drive, replay, --fresh, a savepoint from before
the erase, a snapshot and the views topic's rebuild) and then searches every store for X's and Y's ids
(clear and token) and values: every Redis key (hashes, streams, sorted sets, lists, strings), every
Elasticsearch document, and every log-topic record written since the erase (what the topics held before is
the documented limit: crypto-shredded with privacy on, in clear without, until retention or compaction).
"""
from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from ctxsync.cli import main
from ctxsync.client.changes import ChangeFeed
from ctxsync.consistency import snapshot as snap
from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.connectors import redis_connector
from ctxsync.io.erase_record import EraseRecord, ErasedViews
from ctxsync.io.kafka_io import producer, read_topic
from ctxsync.io.kafka_positions import partition_ends
from ctxsync.io.keystore import new_key_text
from ctxsync.io.redis_views import RedisViewSink, stream_key
from ctxsync.servers import LocalServers
from transforms.control import erase_command
from transforms.timestamps import format_iso_ms
from tests.fixtures_servers import servers  # noqa: F401
from tests.helpers import event, raw
from tests.test_e2e_local import prepare, run_local
from tests.test_privacy import protector_of, with_privacy

pytestmark = [pytest.mark.servers, pytest.mark.flink]
TOPICS = ("views", "history", "violations", "dlq")
# keys that name users by design: the key store (by token: the erase marker stays) and the erase record
# (by a hash of each name)
BY_DESIGN = (b"ctx:keys", b"ctx:erased")
MODEL = "churn-predictor"  # the target model of tests.helpers.event


def user_events(user: str, day: int) -> list[bytes]:
    """Four valid events of one user with values no one else has (two categories, an out-of-order event: an
    ordering violation, a wrong `previous`: a conflict) on 2026-11-<day>, and one invalid event naming the
    user and a value (a dead letter)."""
    def one(n: int, minute: int, updates: dict[str, Any], event_id: str | None = None) -> bytes:
        return raw(event(eventId=f"{user}-{n}" if event_id is None else event_id,
                         timestamp=f"2026-11-{day:02d}T10:{minute:02d}:00.000Z", contextDelta__userId=user,
                         contextDelta__sessionId=f"{user}-session", contextDelta__updates=updates))
    return [
        one(1, 10, {"segment": {"current": f"{user}-seg", "confidence": 0.9}}),
        one(2, 20, {"riskTolerance": {"current": f"{user}-risk", "confidence": 0.8}}),
        one(3, 5, {"lastAction": {"current": f"{user}-late", "confidence": 0.7}}),
        one(4, 30, {"segment": {"previous": "not-it", "current": f"{user}-conflict", "confidence": 0.6}}),
        one(5, 40, {"segment": {"current": f"{user}-invalid", "confidence": 0.5}}, event_id=""),
    ]


def secrets_of(user: str) -> list[str]:
    return [f"{user}-{kind}" for kind in ("seg", "risk", "late", "conflict", "invalid", "session")]


@dataclass
class World:
    """One privacy mode's servers, job and users after the erase (see the module docstring)."""

    servers: LocalServers
    job: Any
    config: dict[str, str]
    prefix: str
    tmp: Path
    redis: redis.Redis
    es: Any
    privacy: bool
    events: Path                       # every event produced, as one file (what `replay` would send again)
    users: dict[str, str] = field(default_factory=dict)         # W, X, Y -> userId
    names: dict[str, list[str]] = field(default_factory=dict)   # X, Y -> [userId, token with privacy on]
    since: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> its ends when X was last erased
    receipts: dict[str, str] = field(default_factory=dict)
    state_copy: Path | None = None      # the job's state (savepoint, ledger) from before the erase
    snapshots: Path | None = None       # a snapshot of every view from before the erase

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def run(self, *extra: str) -> str:
        return run_local(self.job, self.tmp, self.servers, *extra)

    def cli(self, *argv: str) -> tuple[int, str]:
        """`ctxsync ARGV --profile local` in this process: (exit code, stdout)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main([*argv, "--profile", "local", "--jobs", str(self.tmp / "jobs.yaml")])
        return code, out.getvalue()

    def erase(self, who: str) -> None:
        self.since = {name: partition_ends(self.config, self.topic(name))[1] for name in TOPICS}
        code, self.receipts[who] = self.cli("erase", "--user", self.users[who])
        assert code == 0, self.receipts[who]

    def token(self, who: str) -> str:
        return protector_of(self.job, self.servers)[0].token(self.users[who])


@pytest.fixture(scope="module", params=["privacy-off", "privacy-on"])
def world(request, servers, tmp_path_factory) -> Iterator[World]:  # noqa: F811
    from elasticsearch import Elasticsearch

    privacy = request.param == "privacy-on"
    tmp = tmp_path_factory.mktemp(request.param)
    client = redis.Redis.from_url(servers.endpoints()["redis"])
    client.flushall()  # the session's servers are shared: start clean, as the redis_client fixture does
    es = Elasticsearch(servers.endpoints()["elasticsearch"], request_timeout=30)
    indices = list(es.indices.get(index="context-*", allow_no_indices=True))
    if indices:
        es.indices.delete(index=",".join(indices))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("CTXSYNC_MASTER_KEY", new_key_text())
        prefix = f"erase{time.time_ns() % 10**9}{request.param[8]}"
        job, config = prepare(servers, monkeypatch, prefix)
        job = with_privacy(job) if privacy else job
        w = World(servers, job, config, prefix, tmp, client, es, privacy, tmp / "events.jsonl",
                  users={who: f"{prefix}-{who.lower()}" for who in "WXY"})
        background = list(generate_lines(GeneratorOptions(events=160, users=6, seed=5, invalid_rate=0.0)))
        first = background + user_events(w.users["W"], 17) + user_events(w.users["X"], 17)
        queued = user_events(w.users["Y"], 18)
        w.events.write_bytes(b"".join(line + b"\n" for line in first + queued))
        send(config, w.topic("events"), first)
        w.run()
        # a model reads its change feed to the end: its group acknowledges W's and X's versions
        feed = ChangeFeed(client, stream_key("ctx", MODEL), "g1", "c1", start="0", max_idle_s=1.0)
        assert {change.key for change in feed} >= {f"behavioral:{w.users['X']}", f"financial:{w.users['X']}"}
        w.snapshots = tmp / "snapshots"
        snap.create_from_redis(client, "ctx", config, w.topic("views"), "ctxsync-redis-views", w.snapshots, "before")
        w.state_copy = tmp / "state-before"
        shutil.copytree(state_dir(w), w.state_copy)
        send(config, w.topic("events"), queued)  # Y's events wait in the input topic
        for who in "XY":
            w.names[who] = [w.users[who]] + ([w.token(who)] if privacy else [])
        w.erase("Y")
        w.erase("X")
        w.run()  # reads Y's queued events and both erase commands
        yield w
    client.close()
    es.close()


def send(config: dict[str, str], topic: str, lines: list[bytes]) -> None:
    """Produce the lines keyed by userId (as `replay` does)."""
    out = producer(config)
    for line in lines:
        out.produce(topic, key=orjson.loads(line)["contextDelta"]["userId"].encode(), value=line)
    assert out.flush(30) == 0


def state_dir(w: World) -> Path:
    """The job's state directory of this world (its ledger names the world's input topic)."""
    for ledger in (w.servers.run_dir / "state").rglob("ledger.json"):
        if orjson.loads(ledger.read_bytes()).get("input_topic") == w.topic("events"):
            return ledger.parent
    raise AssertionError("no state directory for the world's input topic")


def leftovers(w: World, who: str = "XY", names: bool = True) -> list[str]:
    """Every place a store still holds one of the users' names (unless `names` is false) or values (empty:
    erased everywhere)."""
    needles = [text.encode() for u in who for text in (w.names[u] if names else []) + secrets_of(w.users[u])]
    found: list[str] = []

    def check(where: str, blob: bytes) -> None:
        found.extend(f"{where}: {n.decode()}" for n in needles if n in blob)

    for key in w.redis.scan_iter(count=1000):
        if key in BY_DESIGN:
            continue
        kind = w.redis.type(key).decode()
        content = {"hash": lambda: w.redis.hgetall(key), "stream": lambda: w.redis.xrange(key),
                   "zset": lambda: w.redis.zrange(key, 0, -1, withscores=True),
                   "list": lambda: w.redis.lrange(key, 0, -1), "string": lambda: w.redis.get(key)}.get(kind)
        check(f"redis {kind} {key!r}", key + repr(content() if content else b"").encode())
    w.es.indices.refresh(index="context-*")
    for hit in w.es.search(index="context-*", size=10_000, query={"match_all": {}})["hits"]["hits"]:
        check(f"elasticsearch {hit['_index']}/{hit['_id']}", hit["_id"].encode() + orjson.dumps(hit["_source"]))
    for name in TOPICS:
        for message in read_topic(w.config, w.topic(name), starts=w.since[name]):
            if name == "views" and message.value() is None:
                continue  # a tombstone names the key it ends: that is its job
            check(f"topic {name} {message.partition()}/{message.offset()}",
                  (message.key() or b"") + (message.value() or b""))
    return found


def witness_intact(w: World) -> None:
    """The erase took no one else: W's views are in Redis, W's history in Elasticsearch."""
    assert {v["category"] for v in RedisViewSink(w.redis).read_user(w.users["W"])} == {"behavioral", "financial"}
    name = w.token("W") if w.privacy else w.users["W"]
    assert w.es.count(index="context-history-*", query={"term": {"contextDelta.userId": name}})["count"] == 4


def dead_letters_since(w: World, ends: dict[int, int]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in read_topic(w.config, w.topic("dlq"), starts=ends)]


def test_queued_events_of_an_erased_user_are_dead_lettered_without_payload_and_written_nowhere(world):
    w = world
    assert leftovers(w) == []
    witness_intact(w)
    letters = dead_letters_since(w, w.since["dlq"])
    erased = [d for d in letters if d["reason"] == "erased"]
    assert len(erased) == 4  # Y's valid events: counted as dead letters (read = accepted + duplicates + dead_lettered)
    assert all(d["raw"] is None and d["erased"] and d["stage"] == "erase" for d in erased)
    assert {d["origin"].rsplit("/", 2)[0] for d in erased} == {w.topic("events")}
    invalid = [d for d in letters if d["reason"] != "erased" and d["reason"] != "refused_control"]
    assert [(d["raw"], d["detail"], d["erased"]) for d in invalid] == [(None, None, True)]  # Y's invalid event
    record = EraseRecord(w.redis, "ctx").erased_at(w.names["X"] + w.names["Y"] + [w.users["W"]])
    assert set(record) == set(w.names["X"] + w.names["Y"])


def test_a_processed_user_erased_leaves_no_view_change_entry_or_acknowledged_version(world):
    w = world
    receipt = w.receipts["X"]
    assert "erase record    ctx:erased" in receipt and "2 views deleted" in receipt
    assert "2 change-feed bookkeeping entries deleted" in receipt  # g1 had acknowledged both of X's views
    acked = {m for key in w.redis.scan_iter(match="ctx:changes:*", _type="zset") for m in w.redis.zrange(key, 0, -1)}
    acked |= {f for key in w.redis.scan_iter(match="ctx:changes:*", _type="hash") for f in w.redis.hkeys(key)}
    assert f"behavioral:{w.users['W']}".encode() in acked
    assert leftovers(w) == []
    if w.privacy:  # crypto-shredded: the data key is gone, the marker stays
        keys = protector_of(w.job, w.servers)[0].keys
        assert keys.existing_key(w.names["X"][1]) is None and keys.erased_at(w.names["X"][1]) is not None


def test_verify_after_an_erase_reports_the_users_as_erased_and_passes(world):
    code, out = world.cli("verify")
    assert code == 0, out
    assert " 2 erased (" in out and "0 mismatches" in out and "consistency: 100.00 %" in out, out


def test_dlq_redrive_never_sends_an_erased_users_payload_back(world):
    w = world
    ends = partition_ends(w.config, w.topic("events"))[1]
    code, out = w.cli("dlq", "redrive")
    assert code == 0, out
    if w.privacy:  # X's invalid event is encrypted under the deleted key; Y's dead letters carry nothing
        assert "whose payload is gone (user erased)" in out, out
    else:
        assert "1 of users erased after them (never sent back)" in out, out
    sent = [m.value() for m in read_topic(w.config, w.topic("events"), starts=ends)]
    assert len(sent) == 1 and w.users["W"].encode() in sent[0]  # W's invalid event, and nothing else
    w.run()
    assert leftovers(w) == []


def test_replay_never_sends_an_erased_users_events_and_the_job_refuses_them_from_others(world):
    w = world
    ends = partition_ends(w.config, w.topic("events"))[1]
    code, out = w.cli("replay", str(w.events))
    assert code == 0
    sent = [m.value() for m in read_topic(w.config, w.topic("events"), starts=ends)]
    assert len(sent) == len(w.events.read_bytes().splitlines()) - 10  # X's and Y's 5 lines each held back
    assert not [v for v in sent if w.users["X"].encode() in v or w.users["Y"].encode() in v]
    # a producer that does not ask (an old client, a misbehaving model) sends X's events again: refused
    send(w.config, w.topic("events"), user_events(w.users["X"], 17)[:4])
    dlq = partition_ends(w.config, w.topic("dlq"))[1]
    w.run()
    assert leftovers(w) == []
    assert sum(d["reason"] == "erased" for d in dead_letters_since(w, dlq)) == 4


def test_run_fresh_processes_every_old_event_again_and_brings_no_erased_user_back(world):
    w = world
    dlq = partition_ends(w.config, w.topic("dlq"))[1]
    w.run("--fresh")
    assert leftovers(w) == []
    witness_intact(w)
    letters = dead_letters_since(w, dlq)
    assert sum(d["reason"] == "erased" for d in letters) >= 12  # X's 4 (twice: once re-sent) and Y's 4
    invalid = [d for d in letters if d.get("erased") and d["reason"] != "erased"]  # X's and Y's invalid events
    assert len(invalid) == 2 and all(d["raw"] is None and d["detail"] is None for d in invalid)


def test_a_savepoint_from_before_the_erase_is_restored_without_the_users_state(world):
    w = world
    state = state_dir(w)
    shutil.rmtree(state)
    shutil.copytree(w.state_copy, state)  # the savepoint from before the erase: X's state, Y's events unread
    back = raw(event(eventId=f"{w.users['X']}-back", timestamp=format_iso_ms(int(time.time() * 1000)),
                     contextDelta__userId=w.users["X"],
                     contextDelta__updates={"segment": {"current": "returned", "confidence": 0.5}}))
    send(w.config, w.topic("events"), [back])  # X comes back after the erase
    w.run()
    views = RedisViewSink(w.redis).read_user(w.users["X"])
    assert [(v["key"], v["version"], list(v["attributes"])) for v in views] == \
        [(f"behavioral:{w.users['X']}", 1, ["segment"])]  # a new user's first view: nothing restored
    assert views[0]["attributes"]["segment"]["value"] == "returned"
    assert leftovers(w, "X", names=False) == [] and leftovers(w, "Y") == []
    w.erase("X")  # gone again, for the tests after this one
    w.run()
    assert leftovers(w) == []


def test_a_snapshot_from_before_the_erase_and_the_views_topic_rebuild_bring_no_erased_user_back(world):
    w = world
    refused = ErasedViews(EraseRecord(w.redis, "ctx"))
    _, written, _ = snap.restore(w.redis, "restored", w.snapshots, "before", erased=refused)
    assert refused.refused == 2 and written > 0  # X's two views; Y had none yet
    # the Redis connector rebuilds from the start of the views topic, which still holds X's old views
    stats = redis_connector(w.config, w.redis, "ctx", 10_000, w.topic("views"), w.topic("dlq"),
                            group_id=f"{w.prefix}-rebuild").run(until_caught_up=True)
    assert stats.consumed > 0 and stats.skipped > 0
    assert RedisViewSink(w.redis).read_user(w.users["X"]) == []
    assert leftovers(w) == []


def test_an_erase_command_without_the_jobs_key_is_refused_with_privacy_on(world):
    """With privacy on, only holders of the master key may erase: a forged command is dead-lettered.
    Without privacy there are no keys: anyone who may write the input topic may erase (docs/security.md),
    so a command for a user with no data is taken, not dead-lettered, and the witness is untouched."""
    w = world
    target = w.users["W"] if w.privacy else f"{w.prefix}-z"
    dlq = partition_ends(w.config, w.topic("dlq"))[1]
    out = producer(w.config)
    out.produce(w.topic("events"), key=target.encode(), value=erase_command(target, int(time.time() * 1000), None))
    assert out.flush(10) == 0
    w.run()
    assert [d["reason"] for d in dead_letters_since(w, dlq)] == (["refused_control"] if w.privacy else [])
    witness_intact(w)

"""Least privilege probed on a real redis-server (issue 24): after `ctxsync acl apply`, each model's user
tries every command its ACL allows, on its own keys and on everyone else's, and sees nothing of a category
it was not granted: not in a view, not in its change feed (whichever path wrote it: the job's writer, the
Redis connector, the sink), not through CLIENT TRACKING, not through a script; it writes nothing but its
consumer group and high-water set. A key of another type where a model's stream belongs costs only that
model its changes. A Redis whose default user is open is refused; `ctxsync dev up`'s Redis has none."""
from __future__ import annotations

import logging
import socket
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from ctxsync import cli
from ctxsync.client import ContextClient
from ctxsync.client.cache import CacheNotPermitted
from ctxsync.client.endpoints import Credentials, from_urls
from ctxsync.io.connectors import ConnectorStats, RedisViewsHandler
from ctxsync.io.redis_views import RedisViewSink, ViewWrite, access_key, ack_key, stream_key, view_key
from ctxsync.io.view_writer import JobViewWriter, ViewChanges
from ctxsync.servers import LocalServers
from tests.fixtures_tls import ADMIN, ADMIN_PASSWORD, RedisServer, acl_redis  # noqa: F401
from tests.test_acl import a_view, admin, env, jobs_file  # noqa: F401

pytestmark = pytest.mark.servers

CATEGORIES = ("financial", "behavioral", "temporal", "general")
GRANTS = """\
        risk-model: {categories: [financial, behavioral], password_env: T_RISK_PW}
        churn-predictor: {categories: [behavioral, temporal], password_env: T_CHURN_PW}
"""
GRANTED = {"risk-model": {"financial", "behavioral"}, "churn-predictor": {"behavioral", "temporal"}}
PASSWORDS = {"risk-model": "risk-pass-7Qx", "churn-predictor": "churn-pass-3Lm"}
TARGETS = ["risk-model", "churn-predictor", "session-tracker"]  # session-tracker: no grant, no user of ours
# what ctxsync.client sends (read from the client's code: client.py, changes.py, acks.py; PING is redis-py's
# health check), and the commands Redis lets any connection run (no-auth: AUTH, HELLO, QUIT, RESET)
CLIENT_COMMANDS = {"ping", "hgetall", "xgroup|create", "xreadgroup", "xautoclaim", "xack", "zadd", "zmscore",
                   "blpop"}
ALWAYS = {"auth", "hello", "quit", "reset"}


def views_of_every_category(sink: RedisViewSink, user: str, version: int) -> None:
    sink.write([ViewWrite(a_view(user, category, version, TARGETS, segment=f"{category}-{version}"))
                for category in CATEGORIES])


def entry_categories(client: redis.Redis, stream: str) -> list[str]:
    return [orjson.loads(fields[b"view"])["category"] for _, fields in client.xrange(stream)]


def as_model(server: RedisServer, model: str, **options: Any) -> redis.Redis:
    return redis.Redis(port=server.port, username=f"model-{model}", password=PASSWORDS[model], **options)


@pytest.fixture
def applied(tmp_path, acl_redis, env, admin, monkeypatch, capsys):  # noqa: F811
    """Views of every category for u1 (before the grants exist), the grants applied, then views for u2."""
    monkeypatch.setenv("T_CHURN_PW", PASSWORDS["churn-predictor"])
    sink = RedisViewSink(admin)
    views_of_every_category(sink, "u1", 1)
    path = jobs_file(tmp_path, acl_redis, GRANTS)
    path.write_text(path.read_text().replace("temporal: [timezone]}", "temporal: [timezone], general: [note]}"))
    assert cli.main(["acl", "apply", "--jobs", str(path), "--profile", "acl"]) == 0
    capsys.readouterr()
    views_of_every_category(sink, "u2", 1)
    return path


def commands_of(user: dict[str, Any]) -> set[str]:
    """The commands an ACL GETUSER reply allows, root and selectors (each rule list starts with -@all)."""
    words = [*user["commands"], *user["categories"]]  # the root permissions, as redis-py parses them
    for selector in user["selectors"]:  # each a flat list: commands, "<rules>", keys, "<patterns>", ...
        words += dict(zip(selector[::2], selector[1::2]))["commands"].split()
    assert all(word == "-@all" or word.startswith("+") and "@" not in word for word in words), words
    return {word[1:] for word in words if word.startswith("+")}


def every_command(admin: redis.Redis) -> list[tuple[list[str], int]]:
    """Every command and subcommand the server knows, with its arity."""
    found = []
    for name, info in admin.execute_command("COMMAND").items():
        if info["subcommands"]:
            found += [(sub[0].decode().split("|"), sub[1]) for sub in info["subcommands"]]
        else:
            found.append(([name], info["arity"]))
    return found


def test_a_model_user_is_allowed_exactly_the_commands_the_client_sends(applied, admin):  # noqa: F811
    keys = [view_key("ctx", c, "u1") for c in CATEGORIES] + [
        stream_key("ctx", m) for m in TARGETS] + [stream_key("ctx", "risk-model") + ":acked:g",
                                                  ack_key("ctx", "risk-model", "n"), ack_key("ctx", "x", "n"),
                                                  access_key("ctx"), "ctx:other"]
    commands = every_command(admin)
    assert len(commands) > 300
    for model in GRANTED:
        user = admin.acl_getuser(f"model-{model}")
        assert commands_of(user) == CLIENT_COMMANDS
        # ACL DRYRUN of every command the server knows, on every kind of key: nothing else passes
        allowed = {"|".join(parts) for parts, arity in commands for key in keys
                   if admin.execute_command("ACL", "DRYRUN", f"model-{model}", *parts,
                                            *[key] * max(abs(arity) - len(parts), 0)) in (b"OK", "OK")}
        assert allowed <= CLIENT_COMMANDS | ALWAYS, allowed - CLIENT_COMMANDS - ALWAYS
        assert {"eval", "evalsha", "script|load", "fcall", "function|load", "client|tracking", "subscribe",
                "psubscribe", "hset", "xadd", "del", "multi", "keys", "scan"}.isdisjoint(allowed)


def test_every_allowed_command_reaches_only_granted_data(applied, acl_redis, admin):  # noqa: F811
    nopermission = redis.exceptions.NoPermissionError
    for model, granted in GRANTED.items():
        other = next(m for m in GRANTED if m != model)
        me, stream = as_model(acl_redis, model), stream_key("ctx", model)
        assert me.ping()
        # HGETALL: the views of granted categories, nothing of the others
        for category in CATEGORIES:
            if category in granted:
                assert me.hgetall(view_key("ctx", category, "u1"))[b"category"] == category.encode()
            else:
                with pytest.raises(nopermission):
                    me.hgetall(view_key("ctx", category, "u1"))
        for key in (stream_key("ctx", other), access_key("ctx"), ack_key("ctx", other, "n")):
            with pytest.raises(nopermission):
                me.hgetall(key)
        # the change feed: XGROUP CREATE, XREADGROUP, XAUTOCLAIM, XACK hold granted categories only
        me.xgroup_create(stream, "probe", id="0")
        entries = me.xreadgroup("probe", "c1", {stream: ">"})[0][1]
        seen = [orjson.loads(fields[b"view"])["category"] for _, fields in entries]
        assert sorted(seen) == sorted([*granted, *granted])  # u1's (before the grants, purged) and u2's
        claimed = me.xautoclaim(stream, "probe", "c2", 0, "0-0")[1]
        assert {orjson.loads(fields[b"view"])["category"] for _, fields in claimed} == granted
        assert me.xack(stream, "probe", *[entry_id for entry_id, _ in claimed]) == len(claimed)
        for attempt in (lambda: me.xgroup_create(stream_key("ctx", other), "probe", id="0"),
                        lambda: me.xreadgroup("probe", "c1", {stream_key("ctx", other): "0"}),
                        lambda: me.xautoclaim(stream_key("ctx", other), "probe", "c1", 0),
                        lambda: me.xack(stream_key("ctx", other), "probe", "0-1"),
                        lambda: me.xgroup_create(view_key("ctx", "general", "u1"), "g", mkstream=True)):
            with pytest.raises(nopermission):
                attempt()
        # the high-water set: its own only, and never on the stream's own key
        assert me.zadd(stream + ":acked:probe", {"financial:u1": 1}, gt=True) == 1
        assert me.zmscore(stream + ":acked:probe", ["financial:u1"]) == [1.0]
        for attempt in (lambda: me.zadd(stream, {"x": 1}), lambda: me.zmscore(stream_key("ctx", other) + ":acked:g", ["x"]),
                        lambda: me.zadd(view_key("ctx", "financial", "u9"), {"x": 1})):
            with pytest.raises(nopermission):
                attempt()
        # BLPOP: its own events' outcomes only
        admin.lpush(ack_key("ctx", model, "n1"), b"mine")
        admin.lpush(ack_key("ctx", other, "n1"), b"theirs")
        assert me.blpop([ack_key("ctx", model, "n1")], timeout=1) == (ack_key("ctx", model, "n1").encode(), b"mine")
        with pytest.raises(nopermission):
            me.blpop([ack_key("ctx", other, "n1")], timeout=1)
        assert admin.llen(ack_key("ctx", other, "n1")) == 1
        # scripts, tracking, pub/sub and writes are refused
        for attempt in (lambda: me.eval("return 1", 0),
                        lambda: me.script_load("return 1"),
                        lambda: me.evalsha("e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0),
                        lambda: me.execute_command("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', function() return 1 end)"),
                        lambda: me.execute_command("CLIENT", "TRACKING", "ON", "BCAST"),
                        lambda: me.execute_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ctx:financial:"),
                        lambda: me.execute_command("SUBSCRIBE", "__redis__:invalidate"),
                        lambda: me.hset(view_key("ctx", "financial", "u1"), "version", "99"),
                        lambda: me.hset(access_key("ctx"), stream, ",temporal,general,"),
                        lambda: me.xadd(stream, {"view": "{}"}),
                        lambda: me.lpush(ack_key("ctx", model, "n2"), "forged"),
                        lambda: me.delete(stream),
                        lambda: me.keys("*"),
                        lambda: me.auth("x", "default")):
            with pytest.raises((nopermission, redis.exceptions.AuthenticationError)):
                attempt()
        assert admin.hget(view_key("ctx", "financial", "u1"), "version") == b"1"
        assert admin.hget(access_key("ctx"), stream) == ",".join(["", *sorted(granted, key=CATEGORIES.index), ""]).encode()


class Message:
    """The parts of a Kafka message the Redis connector's handler reads."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b""

    def topic(self) -> str:
        return "context.views"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def test_every_write_path_fans_out_only_granted_categories(applied, acl_redis, admin):  # noqa: F811
    """The issue's reproduction: risk-model is granted financial and behavioral, yet its stream got the
    temporal and general views of every event that named it. The sink, the job's writer and the
    connector all run the same script: each path writes u3..u5's views of all four categories."""
    views_of_every_category(RedisViewSink(admin), "u3", 1)
    job_writer = JobViewWriter(orjson.dumps({"url": acl_redis.url, "username": ADMIN, "password": ADMIN_PASSWORD,
                                             "prefix": "ctx"}).decode())
    job_writer.open()
    changes = ViewChanges()
    for category in CATEGORIES:
        changes.view(f"{category}:u4", orjson.dumps(a_view("u4", category, 1, TARGETS, note="x")).decode(), None,
                     "t/0/1")
    assert job_writer.apply(changes) == []
    job_writer.close()
    handler = RedisViewsHandler(RedisViewSink(admin))
    assert handler.write([Message(orjson.dumps(a_view("u5", c, 1, TARGETS, note="y")), i)
                          for i, c in enumerate(CATEGORIES)], ConnectorStats()) == []
    for model, granted in GRANTED.items():
        categories = entry_categories(admin, stream_key("ctx", model))
        assert set(categories) == granted and len(categories) == 5 * len(granted)  # u1..u5, granted ones
    # a model without a grant has no user of ours: its stream gets what it is sent, as before
    assert entry_categories(admin, stream_key("ctx", "session-tracker")).count("temporal") == 5
    assert all(admin.hget(view_key("ctx", c, "u5"), "version") == b"1" for c in CATEGORIES)  # views all written


def test_narrowed_grants_apply_to_the_feed_at_once_and_purge_what_it_held(applied, admin, capsys):  # noqa: F811
    applied.write_text(applied.read_text().replace("categories: [financial, behavioral]", "categories: [financial]"))
    assert cli.main(["acl", "apply", "--jobs", str(applied), "--profile", "acl"]) == 0
    assert "ctx:changes:risk-model (2 change(s) of other categories deleted from it)" in capsys.readouterr().out  # u1, u2
    views_of_every_category(RedisViewSink(admin), "u6", 1)  # no job restart: the script reads the grants
    assert set(entry_categories(admin, stream_key("ctx", "risk-model"))) == {"financial"}


def test_a_hostile_key_where_a_stream_belongs_costs_only_that_model(applied, acl_redis, admin, caplog):  # noqa: F811
    """The old rules let a model HSET its own stream key before the stream existed; the fan-out's XADD then
    failed and the script stopped: the view counted as refused and the models after it lost the change."""
    risk = as_model(acl_redis, "risk-model")
    with pytest.raises(redis.exceptions.NoPermissionError):  # no longer possible as a model
        risk.hset(stream_key("ctx", "risk-model"), "x", "1")
    admin.delete(stream_key("ctx", "risk-model"))
    admin.hset(stream_key("ctx", "risk-model"), "x", "1")  # what an admin mistake or the old rules left there
    before = admin.xlen(stream_key("ctx", "churn-predictor"))
    with caplog.at_level(logging.WARNING, logger="ctxsync.io.redis_views"):
        result = RedisViewSink(admin).write([ViewWrite(a_view("u7", "behavioral", 1, TARGETS, segment="a")),
                                             ViewWrite(a_view("u8", "behavioral", 1, TARGETS, segment="b"))])
    assert (result.applied, result.refused) == (2, [])
    assert result.unwritable == {stream_key("ctx", "risk-model"): 2}
    assert admin.xlen(stream_key("ctx", "churn-predictor")) == before + 2  # after the bad target: still written
    assert admin.xlen(stream_key("ctx", "session-tracker")) > 0
    assert "2 change(s) not appended to ctx:changes:risk-model: the key is not a stream" in caplog.text
    changes = ViewChanges()
    changes.view("behavioral:u9", orjson.dumps(a_view("u9", "behavioral", 1, TARGETS, segment="c")).decode(), None,
                 "t/0/9")
    job_writer = JobViewWriter(orjson.dumps({"url": acl_redis.url, "username": ADMIN, "password": ADMIN_PASSWORD,
                                             "prefix": "ctx"}).decode())
    job_writer.open()
    assert job_writer.apply(changes) == []  # the job's path: no dead letter, no failed batch
    job_writer.close()
    assert admin.hget(view_key("ctx", "behavioral", "u9"), "version") == b"1"
    assert admin.xlen(stream_key("ctx", "churn-predictor")) == before + 3


def test_apply_refuses_a_server_whose_default_user_is_open(applied, admin, capsys):  # noqa: F811
    admin.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"], keys=["*"])
    try:
        assert cli.main(["acl", "apply", "--jobs", str(applied), "--profile", "acl"]) == 1
    finally:
        admin.acl_setuser("default", reset=True, enabled=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "default user is on and has no password" in err
    assert "ACL SETUSER default off" in err and "Traceback" not in err


def test_the_dev_redis_has_no_open_default_user_and_tools_still_connect(monkeypatch, capsys):
    with tempfile.TemporaryDirectory() as folder:
        local = LocalServers(Path(folder))
        local.start("redis")
        try:
            port = local.servers["redis"].ports["redis"]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # no password
                sock.sendall(b"PING\r\n")
                assert sock.recv(64).startswith(b"-NOAUTH")
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=port, username="default", password="x").ping()
            url = local.endpoints()["redis"]
            client = redis.Redis.from_url(url)  # what every tool reads (running_endpoints)
            assert client.ping() and "nopass" not in client.acl_getuser("default")["flags"]
            password = url.split("@")[0].rsplit(":", 1)[1]
            assert password not in (Path(folder) / "servers.json").read_text()
            assert oct((Path(folder) / "redis.secret").stat().st_mode & 0o777) == "0o600"
            client.close()
            monkeypatch.setenv("CTXSYNC_DEV_DIR", folder)
            capsys.readouterr()
            assert cli.main(["dev", "status"]) == 0
            out = capsys.readouterr().out
            assert f"redis=redis://127.0.0.1:{port}/0" in out and password not in out
        finally:
            local.down()



def test_why_no_model_gets_client_tracking_redis_70_checks_no_key_for_bcast(applied, acl_redis, admin):  # noqa: F811
    """The server fact behind the rules (if a Redis checks BCAST against key patterns, this fails: then
    tracking could be granted again): a user allowed CLIENT TRACKING but only financial views receives,
    with BCAST, the key of a temporal write, userId included. Default-mode tracking reports only keys the
    connection read, but Redis cannot allow one mode without the other."""
    admin.execute_command("ACL", "SETUSER", "probe-tracker", "reset", "on", ">probe-pw-1", "%R~ctx:financial:*",
                          "+ping", "+hgetall", "+client|tracking", "+hello")
    key = view_key("ctx", "temporal", "user-00031")
    try:
        with socket.create_connection(("127.0.0.1", acl_redis.port), timeout=10) as spy:  # RESP3: pushes inline
            spy.sendall(b"HELLO 3 AUTH probe-tracker probe-pw-1\r\nCLIENT TRACKING ON BCAST PREFIX ctx:temporal:\r\n")
            received = b""
            while b"+OK\r\n" not in received:
                received += spy.recv(4096)
            admin.hset(key, "x", "1")
            while key.encode() not in received:  # the invalidation push names the key (socket timeout: fail)
                received += spy.recv(4096)
        with pytest.raises(redis.exceptions.NoPermissionError):  # while it may not read that key itself
            redis.Redis(port=acl_redis.port, username="probe-tracker", password="probe-pw-1").hgetall(key)
    finally:
        admin.acl_deluser("probe-tracker")


def test_a_snapshot_restore_fans_out_only_granted_categories(applied, admin, tmp_path):  # noqa: F811
    """Restore appends to the change streams without the script: it applies the same grants."""
    from ctxsync.consistency.snapshot import _write, restore

    _write(tmp_path, "s1", "redis", "context.views", {0: 0},
           iter([a_view("u10", category, 1, TARGETS, note="z") for category in CATEGORIES]))
    admin.flushall()
    assert cli.main(["acl", "apply", "--jobs", str(applied), "--profile", "acl"]) == 0
    restore(admin, "ctx", tmp_path, "s1")
    for model, granted in GRANTED.items():
        assert sorted(entry_categories(admin, stream_key("ctx", model))) == sorted(granted)
    assert sorted(entry_categories(admin, stream_key("ctx", "session-tracker"))) == sorted(CATEGORIES)


def test_verify_expects_in_a_stream_only_what_its_grant_lets_through(applied, admin):  # noqa: F811
    """`ctxsync verify` checks each target model's stream holds the current version of every view aimed at
    it: once the fan-out filters by grants, a view of an ungranted category is not missing there."""
    import time

    from ctxsync.consistency.verify import Sources, _stream_lags

    sink = RedisViewSink(admin)
    in_stores = [(f"{c}:u{n}", sink.read(c, f"u{n}")) for n in (1, 2) for c in CATEGORIES]
    lags, findings = _stream_lags(Sources({}, "h", "v", None, admin), in_stores, {}, int(time.time() * 1000))
    by_model = {lag.model: lag for lag in lags}
    for model, granted in GRANTED.items():
        assert by_model[model].views == 2 * len(granted) and by_model[model].behind == 0
    assert by_model["session-tracker"].views == 8 and by_model["session-tracker"].behind == 0
    assert findings == []


def test_a_model_asking_for_the_cache_is_told_why_it_cannot_have_it(applied, acl_redis):  # noqa: F811
    """Model users get no CLIENT TRACKING (above): cache=True fails at the first read with the reason and the
    fix, and the same model reads its granted views uncached."""
    url = f"redis://model-risk-model@127.0.0.1:{acl_redis.port}"
    endpoints = from_urls(url, credentials=Credentials(redis_password=PASSWORDS["risk-model"]))
    with pytest.raises(CacheNotPermitted, match="cache=False"):
        ContextClient(endpoints, "risk-model", cache=True).get("u2", ["financial"])
    context = ContextClient(endpoints, "risk-model", cache=False).get("u2", ["financial"])
    assert context.version("financial") == 1

"""`ctxsync acl apply` against a real redis-server whose `default` user is off: a model's user reads its
granted categories and its own change stream (through ctxsync.client too) and is refused (NOPERM) another
model's stream, an ungranted category and every write to views; its change stream carries only granted
categories, whichever path wrote it; applying again is exact and idempotent; --dry-run shows the rules
without the password; users no longer granted are reported, and pruned; a server whose default user is
open is refused. Every command a model's user is allowed is probed in tests/test_acl_probe.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ctxsync import cli
from ctxsync.client import ContextClient, Credentials, from_urls
from ctxsync.client.cache import CacheNotPermitted
from ctxsync.config import AccessSettings, ConfigError, ModelGrant, load_jobs
from ctxsync.io.redis_acl import grants, model_rules, model_users, stale_users
from ctxsync.io.redis_views import RedisViewSink, ViewWrite, ack_key, stream_key, view_key
from tests.fixtures_tls import ADMIN, ADMIN_PASSWORD, RedisServer, acl_redis, admin_client  # noqa: F401
from tests.helpers import SETTINGS

pytestmark = pytest.mark.servers

PASSWORDS = {"T_RISK_PW": "risk-pass-7Qx", "T_CHURN_PW": "churn-pass-3Lm"}
GRANTS = """\
        risk-model: {categories: [financial], password_env: T_RISK_PW}
        churn-predictor: {categories: [behavioral, temporal], password_env: T_CHURN_PW}
"""


def jobs_file(folder: Path, server: RedisServer, grants: str = GRANTS) -> Path:
    path = folder / "jobs.yaml"
    path.write_text(
        "version: 1\njobs:\n  context-sync:\n    type: context-sync\n    settings:\n"
        "      categories: {financial: [riskTolerance, creditScore], behavioral: [segment], temporal: [timezone]}\n"
        "    access:\n      models:\n" + grants
        + "    profiles:\n      acl:\n        source: {type: file}\n        sink: {type: files}\n"
        f'        redis: {{url: "{server.url}", username: {ADMIN}, password: "${{T_ADMIN_PW}}"}}\n')
    return path


def acl(path: Path, *extra: str) -> int:
    return cli.main(["acl", "apply", "--jobs", str(path), "--profile", "acl", *extra])


def a_view(user: str, category: str, version: int, targets: list[str], **attributes) -> dict:
    stamp = f"2026-11-17T10:00:{version:02d}.000Z"
    return {"key": f"{category}:{user}", "category": category, "userId": user, "version": version,
            "updatedAt": stamp, "targetModels": targets,
            "attributes": {name: {"value": value, "confidence": 0.9, "updatedAt": stamp, "eventId": f"e{version}",
                                  "modelId": "writer"} for name, value in attributes.items()}}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**PASSWORDS, "T_ADMIN_PW": ADMIN_PASSWORD}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def admin(acl_redis: RedisServer):  # noqa: F811
    client = admin_client(acl_redis)
    client.flushall()
    for name in client.acl_users():
        if name not in (ADMIN, "default"):
            client.acl_deluser(name)
    yield client
    client.close()


@pytest.fixture
def views(admin) -> None:
    """u1's financial and behavioral views, each sent to both models' change streams."""
    RedisViewSink(admin).write([
        ViewWrite(a_view("u1", "financial", 1, ["risk-model", "churn-predictor"], riskTolerance="low")),
        ViewWrite(a_view("u1", "behavioral", 2, ["risk-model", "churn-predictor"], segment="power"))])


def as_model(server: RedisServer, model: str, password: str) -> redis.Redis:
    return redis.Redis(port=server.port, username=f"model-{model}", password=password)


def test_rules_pair_each_command_with_the_keys_it_needs():
    rules = model_rules("ctx", "risk-model", ("financial", "behavioral"))
    assert rules == ("reset", "%R~ctx:financial:*", "%R~ctx:behavioral:*", "+ping", "+hgetall",
                     "(~ctx:changes:risk-model +xgroup|create +xreadgroup +xautoclaim +xack)",
                     "(~ctx:changes:risk-model:acked:* +zadd +zmscore)",
                     "(~ctx:ack:risk-model:* +blpop)")
    words = " ".join(rules).replace("(", " ").replace(")", " ").split()
    assert not {"+eval", "+evalsha", "+script|load", "+hset", "+client|tracking", "+subscribe", "+xadd",
                "+del", "allkeys", "allcommands", "~*", "+@all"} & set(words)
    assert "+hgetall" not in model_rules("ctx", "m", ())  # no category: no view read at all
    # glob characters in a prefix or model id cannot widen a pattern
    assert "(~p\\*:changes:m\\? +xgroup|create +xreadgroup +xautoclaim +xack)" in model_rules("p*", "m?", ())
    assert "(~p\\*:ack:m\\?:* +blpop)" in model_rules("p*", "m?", ())


def test_users_named_by_prefix_and_stale_ones_found():
    access = AccessSettings(models={"a": ModelGrant(categories=["x"], password_env="A"),
                                    "b": ModelGrant(password_env="B", user="bee")})
    assert [u.name for u in model_users(access, "ctx")] == ["model-a", "bee"]
    assert stale_users(["default", "model-a", "model-old", "admin"], access, "ctx") == ["model-old"]


def test_a_grant_of_an_unknown_category_is_a_config_error_with_its_line(tmp_path, acl_redis):  # noqa: F811
    path = jobs_file(tmp_path, acl_redis, "        risk-model: {categories: [finance], password_env: T_RISK_PW}\n")
    with pytest.raises(Exception) as caught:
        load_jobs(path)
    assert f"{path}:7: jobs.context-sync.access: " in str(caught.value) and "unknown 'finance'" in str(caught.value)


def test_dry_run_prints_the_rules_without_passwords(tmp_path, acl_redis, env, capsys):  # noqa: F811
    assert acl(jobs_file(tmp_path, acl_redis), "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("ACL SETUSER model-risk-model reset on >$T_RISK_PW %R~ctx:financial:* ")
    assert "(~ctx:changes:churn-predictor " in out.splitlines()[0]
    assert out.splitlines()[2] == ("DEL ctx:access + HSET ctx:access ctx:changes:churn-predictor ,behavioral,temporal, "
                                   "ctx:changes:risk-model ,financial,")
    assert not any(password in out for password in PASSWORDS.values())


def test_a_model_reads_its_grants_and_own_stream_and_nothing_else(tmp_path, acl_redis, env, admin, views,  # noqa: F811
                                                                  capsys):
    assert acl(jobs_file(tmp_path, acl_redis)) == 0
    out = capsys.readouterr().out
    assert "model-churn-predictor    created" in out and "model-risk-model         created" in out
    # the views fixture sent u1's behavioral view to risk-model's stream before its grant existed
    assert "ctx:changes:risk-model (1 change(s) of other categories deleted from it)" in out
    assert not any(password in out for password in PASSWORDS.values())
    risk = as_model(acl_redis, "risk-model", PASSWORDS["T_RISK_PW"])
    assert risk.hgetall(view_key("ctx", "financial", "u1"))[b"version"] == b"1"
    risk.xgroup_create(stream_key("ctx", "risk-model"), "g", id="0")
    entries = risk.xreadgroup("g", "c", {stream_key("ctx", "risk-model"): ">"})[0][1]
    assert [fields[b"key"] for _, fields in entries] == [view_key("ctx", "financial", "u1").encode()]
    admin.lpush(ack_key("ctx", "risk-model", "e1"), b'{"outcome": "applied"}')
    admin.lpush(ack_key("ctx", "churn-predictor", "e2"), b'{"outcome": "applied"}')
    assert risk.blpop([ack_key("ctx", "risk-model", "e1")], timeout=1)[1] == b'{"outcome": "applied"}'
    refused = [
        lambda: risk.blpop([ack_key("ctx", "churn-predictor", "e2")], timeout=1),   # another model's outcome
        lambda: risk.lpush(ack_key("ctx", "risk-model", "e3"), "forged"),            # forge its own outcome
        lambda: risk.hgetall(view_key("ctx", "behavioral", "u1")),                    # ungranted category
        lambda: risk.xreadgroup("g", "c", {stream_key("ctx", "churn-predictor"): "0"}),  # another model's stream
        lambda: risk.xread({stream_key("ctx", "risk-model"): "0"}),                   # a command the client never sends
        lambda: risk.hset(stream_key("ctx", "risk-model"), "x", "1"),                # a hash where its stream belongs
        lambda: risk.hset(view_key("ctx", "financial", "u1"), "version", "9"),       # write to a granted view
        lambda: risk.delete(view_key("ctx", "financial", "u1")),
        lambda: risk.xadd(stream_key("ctx", "risk-model"), {"view": "{}"}),          # forge its own changes
        lambda: risk.set("ctx:anything", "x"),
        lambda: risk.flushall(),
        lambda: risk.acl_setuser("model-risk-model", commands=["+@all"]),
    ]
    for attempt in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert admin.hget(view_key("ctx", "financial", "u1"), "version") == b"1"
    with pytest.raises(redis.exceptions.AuthenticationError):
        as_model(acl_redis, "risk-model", PASSWORDS["T_CHURN_PW"]).ping()


def test_the_model_client_with_its_user_reads_grants_and_its_change_feed(tmp_path, acl_redis, env, admin,  # noqa: F811
                                                                         views, capsys):
    assert acl(jobs_file(tmp_path, acl_redis)) == 0
    endpoints = from_urls(f"redis://model-risk-model@127.0.0.1:{acl_redis.port}/0", settings=SETTINGS,
                          credentials=Credentials(redis_password=PASSWORDS["T_RISK_PW"]))
    with ContextClient(endpoints, "risk-model") as client:
        assert client.get("u1", ["financial"]).value("riskTolerance") == "low"
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access one of the keys"):
            client.get("u1", ["behavioral"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("u1")  # all categories: behavioral and temporal are not granted
    # the client cache needs CLIENT TRACKING, which a model's user does not get (BCAST would reveal every key)
    with ContextClient(endpoints, "risk-model", cache=True) as client, \
            pytest.raises(CacheNotPermitted, match="CLIENT TRACKING"):
        client.get("u1", ["financial"])
    RedisViewSink(admin).write([ViewWrite(a_view("u1", "financial", 3, ["risk-model"], riskTolerance="high")),
                                ViewWrite(a_view("u2", "behavioral", 1, ["risk-model"], segment="new"))])
    with ContextClient(endpoints, "risk-model") as client:
        feed = client.changes("g1", start="0", max_idle_s=0.5, block_ms=100)
        received = [(change.key, change.version) for change in feed]
    assert received == [("financial:u1", 1), ("financial:u1", 3)]  # granted categories only
    assert admin.zrange(stream_key("ctx", "risk-model") + ":acked:g1", 0, -1, withscores=True) == \
        [(b"financial:u1", 3.0)]
    assert admin.xpending(stream_key("ctx", "risk-model"), "g1")["pending"] == 0  # acknowledged
    churn = ContextClient(from_urls(f"redis://model-churn-predictor@127.0.0.1:{acl_redis.port}/0",
                                    credentials=Credentials(redis_password=PASSWORDS["T_CHURN_PW"]),
                                    settings=SETTINGS), "risk-model")  # a model posing as another
    with churn, pytest.raises(redis.exceptions.NoPermissionError):
        churn.changes("g1", start="0")


def test_apply_again_is_exact_and_idempotent_and_reports_stale_users(tmp_path, acl_redis, env, admin,  # noqa: F811
                                                                     capsys):
    path = jobs_file(tmp_path, acl_redis)
    assert acl(path) == 0
    before = {name: admin.acl_getuser(name) for name in ("model-risk-model", "model-churn-predictor")}
    capsys.readouterr()
    assert acl(path) == 0
    out = capsys.readouterr().out
    assert out.count("unchanged") == 2 and "not saved: the server has no aclfile" in out
    assert {name: admin.acl_getuser(name) for name in before} == before
    # narrowed grants: the rules are replaced, not added to; the dropped model is reported, then pruned
    narrowed = jobs_file(tmp_path, acl_redis,
                         "        risk-model: {categories: [behavioral], password_env: T_RISK_PW}\n")
    assert acl(narrowed) == 0
    out = capsys.readouterr().out
    assert "model-risk-model         updated" in out
    assert "model-churn-predictor    stale     not granted in jobs.yaml (--prune deletes it)" in out
    risk = as_model(acl_redis, "risk-model", PASSWORDS["T_RISK_PW"])
    assert risk.hgetall(view_key("ctx", "behavioral", "u9")) == {}
    with pytest.raises(redis.exceptions.NoPermissionError):
        risk.hgetall(view_key("ctx", "financial", "u9"))
    assert admin.acl_getuser("model-churn-predictor") is not None
    assert acl(narrowed, "--prune") == 0
    assert "model-churn-predictor    deleted" in capsys.readouterr().out
    assert admin.acl_getuser("model-churn-predictor") is None
    assert ADMIN in admin.acl_users()  # users without the prefix are never touched


def test_missing_password_variable_or_non_admin_profile_is_one_line(tmp_path, acl_redis, env, admin, capsys,  # noqa: F811
                                                                    monkeypatch):
    monkeypatch.delenv("T_CHURN_PW")
    assert acl(jobs_file(tmp_path, acl_redis)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "environment variable T_CHURN_PW is not set" in err
    monkeypatch.setenv("T_CHURN_PW", PASSWORDS["T_CHURN_PW"])
    assert acl(jobs_file(tmp_path, acl_redis)) == 0
    capsys.readouterr()
    path = jobs_file(tmp_path, acl_redis)
    path.write_text(path.read_text().replace(f"username: {ADMIN}", "username: model-risk-model")
                    .replace("${T_ADMIN_PW}", "${T_RISK_PW}"))
    assert acl(path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "may not change ACL users" in err and "Traceback" not in err
    assert PASSWORDS["T_RISK_PW"] not in err


def test_a_category_with_a_comma_cannot_be_granted():
    access = AccessSettings(models={"a": ModelGrant(categories=["x,y"], password_env="A")})
    with pytest.raises(ConfigError, match="category with ','"):
        grants(access, "ctx")
    assert grants(AccessSettings(models={"a": ModelGrant(categories=["x", "y"], password_env="A")}), "p") == \
        {"p:changes:a": ",x,y,"}

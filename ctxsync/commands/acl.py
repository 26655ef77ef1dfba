"""`ctxsync acl apply`: write the per-model read grants of jobs.yaml (`access:`) to Redis as ACL users."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from ctxsync.config import AccessSettings, ConfigError, RedisEndpoint, resolve_job
from ctxsync.errors import RuntimeFailure

DESCRIPTION = """\
Create or update one Redis ACL user per model granted in the job's `access:` section of jobs.yaml. A
model's user may run exactly the commands ctxsync.client sends: read the views of its granted categories
(read-only) and its own change stream with a consumer group, nothing else: another model's stream, an
ungranted category, scripting, CLIENT TRACKING or any write to a view is refused by Redis (NOPERM). Each
user is written with `reset` first, so applying again is exact: rules removed from jobs.yaml are removed
from Redis. The grants also go to the hash `<prefix>:access`, which the fan-out reads: a model's change
stream gets changes of its granted categories only, and entries of other categories already in it are
deleted. Redis' `default` user must not be on without a password (anyone could AUTH as it): apply
refuses such a server. Passwords come from the environment variable each grant
names (password_env) and are never printed. Users named with access.user_prefix that jobs.yaml no longer
grants are listed; --prune deletes them. The profile's Redis user must be allowed ACL SETUSER.

Users live in the server's memory: with an `aclfile` configured, apply also runs ACL SAVE; without one,
it says so (run it again after a restart, or use CONFIG REWRITE).

examples:
  ctxsync acl apply --dry-run                  # the ACL SETUSER commands, passwords as $VARIABLE
  CTXSYNC_RISK_MODEL_PASSWORD=... ctxsync acl apply --profile prod
  ctxsync acl apply --profile prod --prune     # also delete users of models no longer granted
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("acl", help="per-model Redis access control from jobs.yaml",
                       description="Per-model Redis access control (the `access:` section of jobs.yaml).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply = actions.add_parser("apply", help="write the grants to Redis as ACL users", description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("--dry-run", action="store_true",
                       help="print the commands (no password, no connection) instead of sending them")
    apply.add_argument("--prune", action="store_true",
                       help="delete managed users (named with access.user_prefix) that jobs.yaml no longer grants")
    add_profile_args(apply, "Redis")
    apply.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.audit import record_action
    from ctxsync.io.redis_acl import grants, model_users
    from ctxsync.io.redis_views import access_key

    job = resolve_job(args.jobs, args.job, [])
    if job.access is None or not job.access.models:
        raise ConfigError(f"job {args.job!r} grants no model access", "add an `access: models:` section to jobs.yaml")
    unresolved = job.profile(args.profile)
    if unresolved.redis is None:
        raise ConfigError(f"profile {args.profile!r} has no `redis:` endpoint")
    if args.dry_run:  # the prefix only: no placeholder needs filling, no server needs to run
        prefix = unresolved.redis.prefix
        for user in model_users(job.access, prefix):
            print(user.shown())
        print(" ".join(["DEL", access_key(prefix), "+ HSET", access_key(prefix),
                        *(f"{k} {v}" for k, v in sorted(grants(job.access, prefix).items()))]))
        return 0
    profile = profile_from_args(args)
    record_action(args.profile, "acl-apply", {"job": args.job, "models": ",".join(sorted(job.access.models)),
                                              "prune": str(args.prune).lower()}, job=job, actor=args.actor)
    return _apply(profile.redis, job.access, args.prune)


def _apply(endpoint: RedisEndpoint, access: AccessSettings, prune: bool) -> int:
    import redis

    from ctxsync.io.clients import redis_client
    from ctxsync.io.redis_acl import grants, model_users, stale_users
    from ctxsync.io.redis_views import access_key

    users = model_users(access, endpoint.prefix)
    passwords = {}
    for user in users:
        password = os.environ.get(user.password_env, "")
        if not password:
            raise ConfigError(f"access.models.{user.model}.password_env: environment variable "
                              f"{user.password_env} is not set or empty", "export it, then apply again")
        passwords[user.name] = password
    client = redis_client(endpoint)
    try:
        _refuse_open_default_user(client)
        granted = grants(access, endpoint.prefix)
        pipe = client.pipeline(transaction=True)  # the fan-out never sees a half-written grants hash
        pipe.delete(access_key(endpoint.prefix))
        pipe.hset(access_key(endpoint.prefix), mapping=granted)
        pipe.execute()
        for user in users:
            before = client.acl_getuser(user.name)
            client.execute_command("ACL", "SETUSER", user.name, *user.setuser_args(passwords[user.name]))
            after = client.acl_getuser(user.name)
            state = "created" if before is None else ("unchanged" if before == after else "updated")
            purged = purge_ungranted(client, endpoint.prefix, user.model, user.categories)
            print(f"{user.name:<24} {state:<9} model {user.model}: reads "
                  f"{', '.join(user.categories) or 'no category'} and {endpoint.prefix}:changes:{user.model}"
                  + (f" ({purged} change(s) of other categories deleted from it)" if purged else ""))
        stale = stale_users([_text(name) for name in client.acl_users()], access, endpoint.prefix)
        for name in stale:
            if prune:
                client.acl_deluser(name)
            print(f"{name:<24} {'deleted' if prune else 'stale':<9} not granted in jobs.yaml"
                  + ("" if prune else " (--prune deletes it)"))
        print(_persist(client))
    except redis.exceptions.NoPermissionError as exc:
        raise RuntimeFailure(f"the profile's Redis user may not change ACL users: {exc}",
                             "use an administrator's username/password in the profile's redis: section") from exc
    except redis.exceptions.ResponseError as exc:
        if not str(exc).startswith("Error in ACL SETUSER"):
            raise
        raise RuntimeFailure(f"Redis refused a model's ACL rules: {exc}",
                             "per-model users need Redis >= 7.0 (read-only %R~ key patterns)") from exc
    return 0


def _refuse_open_default_user(client: Any) -> None:
    """Per-model users protect nothing while `default` is on without a password: `AUTH default <anything>`
    gives every command (the old `ctxsync dev up` Redis was such a server)."""
    default = client.acl_getuser("default")
    flags = {_text(flag) for flag in (default or {}).get("flags", [])}
    if "on" in flags and "nopass" in flags:
        raise RuntimeFailure("Redis' default user is on and has no password: any client can AUTH as it and "
                             "read or change everything, whatever the per-model users allow",
                             "give it a password: ACL SETUSER default resetpass >PASSWORD; or switch it off: "
                             "ACL SETUSER default off, with a named admin user in the profile's redis: "
                             "section; then apply again")


def purge_ungranted(client: Any, prefix: str, model: str, categories: tuple[str, ...], chunk: int = 1000) -> int:
    """Delete the entries of the model's change stream whose view is of a category it may not read (written
    before its grant existed or was narrowed); the fan-out adds no new ones once the grants hash is written."""
    from ctxsync.io.redis_views import stream_key

    stream, allowed, start, deleted = stream_key(prefix, model), set(categories), "-", 0
    if client.type(stream) not in (b"stream", "stream"):
        return 0
    while entries := client.xrange(stream, min=start, max="+", count=chunk):
        doomed = [entry_id for entry_id, fields in entries
                  if _category(fields.get(b"view", b"")) not in allowed]
        if doomed:
            deleted += client.xdel(stream, *doomed)
        start = "(" + _text(entries[-1][0])
    return deleted


def _category(view: bytes) -> str | None:
    """The category of a change entry's view (None when it cannot be read: such an entry goes too)."""
    import orjson

    try:
        found = orjson.loads(view).get("category")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _persist(client: Any) -> str:
    """ACL SAVE when the server keeps its users in an aclfile; otherwise say they live in memory only."""
    import redis

    try:
        client.acl_save()
    except redis.exceptions.ResponseError as exc:
        if "ACL file" not in str(exc) and "aclfile" not in str(exc):
            raise
        return "not saved: the server has no aclfile (users live in memory; apply again after a restart)"
    return "saved to the server's aclfile (ACL SAVE)"

"""Per-model Redis ACL users from the `access:` grants of jobs.yaml (pure: grants -> ACL SETUSER rules).

A model's user may read the view hashes of its granted categories (`%R~` read-only key patterns, Redis
>= 7.0) and use its own change stream the way ctxsync.client does: a consumer group (XREADGROUP, XACK,
XAUTOCLAIM, XGROUP CREATE) and the group's high-water hash `<stream>:seen:<group>`, raised by a script
(EVALSHA; Redis checks the script's HSET against the same key patterns). It gets no other key and no
write command on views, and may subscribe only to the client cache's invalidation channel. It may pop
the outcomes of its own events (`<prefix>:ack:<model>:*`, publish(wait=True)), no other model's. Every rule
list starts with `reset`, so applying it again leaves exactly these rules, whatever the user had before.
"""
from __future__ import annotations

from dataclasses import dataclass

from ctxsync.config import AccessSettings
from ctxsync.io.redis_views import ack_key, stream_key

# What ctxsync.client sends, by purpose (read it there before adding one: every command is a permission).
# (redis-py also sends CLIENT SETINFO, which Redis 7.0 does not know and redis-py lets fail quietly)
CONNECTION = ("+ping", "+hello", "+client|id", "+client|setname")
CACHE = ("+client|tracking", "+subscribe", "+unsubscribe")  # server-assisted invalidation (client/cache.py)
VIEW_READS = ("+hgetall", "+hget", "+hmget", "+exists", "+ttl", "+pttl", "+type")
CHANGE_FEED = ("+xread", "+xreadgroup", "+xack", "+xautoclaim", "+xclaim", "+xpending", "+xrange",
               "+xrevrange", "+xlen", "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers",
               "+xgroup|create", "+xgroup|createconsumer",
               "+evalsha", "+script|load", "+script|exists", "+hset")  # the high-water script (HGET, HSET)
OUTCOMES = ("+blpop",)  # publish(wait=True): the job's answer to the model's own event (client/acks.py)
INVALIDATION_CHANNEL = "__redis__:invalidate"


@dataclass(frozen=True)
class ModelUser:
    """One model's Redis user: its name, where its password comes from, and its rules (no password)."""

    model: str
    name: str
    password_env: str
    categories: tuple[str, ...]
    rules: tuple[str, ...]

    def setuser_args(self, password: str) -> list[str]:
        """ACL SETUSER arguments after the user name: the rules with the password added."""
        return [self.rules[0], "on", f">{password}", *self.rules[1:]]

    def shown(self) -> str:
        """The command as it would be sent, the password replaced by where it comes from."""
        return " ".join(["ACL SETUSER", self.name, self.rules[0], "on", f">${self.password_env}", *self.rules[1:]])


def glob_escape(text: str) -> str:
    """`text` matched literally inside a Redis key pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def model_rules(prefix: str, model: str, categories: tuple[str, ...]) -> tuple[str, ...]:
    """The user's rules after `reset` (which clears passwords, keys, channels and commands, and disables)."""
    stream = glob_escape(stream_key(prefix, model))
    keys = [f"%R~{glob_escape(prefix)}:{glob_escape(c)}:*" for c in categories]
    keys += [f"~{stream}", f"~{stream}:seen:*", f"~{glob_escape(ack_key(prefix, model, ''))}*"]
    return ("reset", *keys, f"&{INVALIDATION_CHANNEL}", *CONNECTION, *CACHE, *VIEW_READS, *CHANGE_FEED, *OUTCOMES)


def model_users(access: AccessSettings, prefix: str) -> list[ModelUser]:
    """Every granted model's user, in model order."""
    return [ModelUser(model, access.username(model), grant.password_env, tuple(grant.categories),
                      model_rules(prefix, model, tuple(grant.categories)))
            for model, grant in sorted(access.models.items())]


def stale_users(existing: list[str], access: AccessSettings, prefix: str) -> list[str]:
    """Users ctxsync manages (named with the user prefix) that the grants no longer name."""
    wanted = {user.name for user in model_users(access, prefix)}
    return sorted(name for name in existing if name.startswith(access.user_prefix) and name not in wanted)

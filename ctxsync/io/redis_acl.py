"""Per-model Redis ACL users from the `access:` grants of jobs.yaml (pure: grants -> ACL SETUSER rules).

A model's user may run exactly the commands ctxsync.client sends, each only on the keys it needs (Redis 7.0
selectors pair commands with key patterns): HGETALL on the view hashes of its granted categories (`%R~`,
read-only); its own change stream with a consumer group (XGROUP CREATE, XREADGROUP, XAUTOCLAIM, XACK); the
group's high-water sorted set `<stream>:acked:<group>` (ZADD GT, ZMSCORE); BLPOP of the outcomes of its
own events (`<prefix>:ack:<model>:*`, publish(wait=True)); PING. Nothing else: no scripting (a Lua loop
would block Redis for everyone), no write to a view or to its stream's key (a key of another type there
would make the fan-out skip it), no CLIENT TRACKING (Redis 7.0 checks no key permission for BCAST: a model
would learn the key of every write, userIds of ungranted categories included), no pub/sub. Every rule
list starts with `reset`, so applying it again leaves exactly these rules, whatever the user had before.

What the change feed carries is filtered too: `grants` below is the hash the fan-out script reads
(redis_views.CAS_SCRIPT), so a stream gets only changes of the categories its model may read.
"""
from __future__ import annotations

from dataclasses import dataclass

from ctxsync.config import AccessSettings, ConfigError
from ctxsync.io.redis_views import ack_key, grant_value, high_water_key, stream_key

# What ctxsync.client sends, by purpose (read it there before adding one: every command is a permission).
# (redis-py also sends AUTH, always allowed, and CLIENT SETINFO, which Redis 7.0 does not know and redis-py
# lets fail quietly; PING is its health check of an idle connection)
CONNECTION = ("+ping",)
VIEW_READS = ("+hgetall",)  # get/get_many (client/client.py), pipelined without MULTI
CHANGE_FEED = ("+xgroup|create", "+xreadgroup", "+xautoclaim", "+xack")  # client/changes.py
HIGH_WATER = ("+zadd", "+zmscore")  # the group's acknowledged versions (client/changes.py)
OUTCOMES = ("+blpop",)  # publish(wait=True): the job's answer to the model's own event (client/acks.py)


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


def _selector(pattern: str, commands: tuple[str, ...]) -> str:
    """A Redis 7.0 selector: these commands, on keys of this pattern only."""
    return f"({pattern} {' '.join(commands)})"


def model_rules(prefix: str, model: str, categories: tuple[str, ...]) -> tuple[str, ...]:
    """The user's rules after `reset` (which clears passwords, keys, channels, commands and selectors, and
    disables). The root permissions read views; each selector allows a few commands on one key pattern."""
    stream = stream_key(prefix, model)
    views = [f"%R~{glob_escape(prefix)}:{glob_escape(c)}:*" for c in categories]
    return ("reset", *views, *CONNECTION, *(VIEW_READS if categories else ()),
            _selector(f"~{glob_escape(stream)}", CHANGE_FEED),
            _selector(f"~{glob_escape(high_water_key(stream, ''))}*", HIGH_WATER),
            _selector(f"~{glob_escape(ack_key(prefix, model, ''))}*", OUTCOMES))


def grants(access: AccessSettings, prefix: str) -> dict[str, str]:
    """The fan-out's grants hash (redis_views.access_key): each granted model's change stream -> the
    categories whose changes it may carry (comma-delimited, so a category with a comma cannot be granted)."""
    for model, grant in access.models.items():
        if any("," in category for category in grant.categories):
            raise ConfigError(f"access.models.{model}.categories: a category with ',' in its name cannot be "
                              "granted (the fan-out's grant lists categories between commas)", "rename it")
    return {stream_key(prefix, model): grant_value(grant.categories) for model, grant in access.models.items()}


def model_users(access: AccessSettings, prefix: str) -> list[ModelUser]:
    """Every granted model's user, in model order."""
    return [ModelUser(model, access.username(model), grant.password_env, tuple(grant.categories),
                      model_rules(prefix, model, tuple(grant.categories)))
            for model, grant in sorted(access.models.items())]


def stale_users(existing: list[str], access: AccessSettings, prefix: str) -> list[str]:
    """Users ctxsync manages (named with the user prefix) that the grants no longer name."""
    wanted = {user.name for user in model_users(access, prefix)}
    return sorted(name for name in existing if name.startswith(access.user_prefix) and name not in wanted)

"""Redis view sink: one hash per context aggregate, written only when the incoming version is newer.

The compare-and-set runs as one Lua script per view, so a replayed or retried view (same or older
version) changes nothing: the sink is idempotent and the connector may retry a whole batch after a
failure. An applied view also appends to a change stream per target model (XADD MAXLEN ~), so a model
learns of updates without polling.

Layout (prefix `ctx`): hash `ctx:<category>:{<userId>}` (the userId is the Redis Cluster hash tag, so
one user's views share a slot) with fields key, category, userId, version,
updatedAt, targetModels (JSON) and `a:<attribute>` (JSON of value, confidence, updatedAt, eventId,
modelId); stream `ctx:changes:<modelId>` with entries key, version, view (JSON).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

ATTR_PREFIX = "a:"

# KEYS[1] view hash, KEYS[2..] change streams. ARGV[1] version, ARGV[2] ttl seconds (0 = keep),
# ARGV[3] stream max length, ARGV[4] view JSON, ARGV[5..] hash field/value pairs.
CAS_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local incoming = tonumber(ARGV[1])
if current >= incoming then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
for i = 2, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[3], '*', 'key', KEYS[1], 'version', ARGV[1], 'view', ARGV[4])
end
return 1
"""


def view_key(prefix: str, category: str, user_id: str) -> str:
    return f"{prefix}:{category}:{{{user_id}}}"


def stream_key(prefix: str, model_id: str) -> str:
    return f"{prefix}:changes:{model_id}"


def hash_fields(view: dict[str, Any]) -> dict[str, str]:
    fields = {
        "key": view["key"], "category": view["category"], "userId": view["userId"],
        "version": str(view["version"]), "updatedAt": view["updatedAt"],
        "targetModels": orjson.dumps(view["targetModels"]).decode(),
    }
    for name, attribute in view["attributes"].items():
        fields[ATTR_PREFIX + name] = orjson.dumps(attribute).decode()
    return fields


def view_from_hash(fields: dict[str, str]) -> dict[str, Any]:
    """The view record (contract v1 section 5) stored in one hash."""
    attributes = {name[len(ATTR_PREFIX):]: orjson.loads(value)
                  for name, value in sorted(fields.items()) if name.startswith(ATTR_PREFIX)}
    return {
        "key": fields["key"], "category": fields["category"], "userId": fields["userId"],
        "version": int(fields["version"]), "updatedAt": fields["updatedAt"], "attributes": attributes,
        "targetModels": orjson.loads(fields["targetModels"]),
    }


@dataclass
class ViewWrite:
    """A view to write and the TTL (seconds, None = no expiry) of the event that produced it."""

    view: dict[str, Any]
    ttl: int | None = None


class RedisViewSink:
    """Writes batches of views with the CAS script in one pipeline (one round trip per batch)."""

    def __init__(self, client: Any, prefix: str = "ctx", stream_maxlen: int = 10_000) -> None:
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.script = client.register_script(CAS_SCRIPT)

    def write(self, writes: Iterable[ViewWrite]) -> tuple[int, int]:
        """(applied, skipped as not newer). Raises redis errors; the caller retries the whole batch."""
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for item in writes:
            view = item.view
            keys = [view_key(self.prefix, view["category"], view["userId"])]
            keys += [stream_key(self.prefix, model) for model in view["targetModels"]]
            args: list[Any] = [view["version"], item.ttl or 0, self.stream_maxlen, orjson.dumps(view)]
            for field, value in hash_fields(view).items():
                args += [field, value]
            self.script(keys=keys, args=args, client=pipe)
            count += 1
        if count == 0:
            return 0, 0
        results = pipe.execute()
        applied = sum(1 for r in results if r == 1)
        return applied, count - applied

    def delete(self, aggregate_key: str) -> int:
        """Remove the view of `<category>:<userId>` (a tombstone on the views topic); 1 if there was one."""
        category, _, user_id = aggregate_key.partition(":")
        return int(self.client.delete(view_key(self.prefix, category, user_id)))

    def read(self, category: str, user_id: str) -> dict[str, Any] | None:
        fields = self.client.hgetall(view_key(self.prefix, category, user_id))
        return view_from_hash(_text(fields)) if fields else None

    def read_user(self, user_id: str) -> list[dict[str, Any]]:
        """Every view of a user (all categories), sorted by key."""
        views = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*:{{{_glob_escape(user_id)}}}", count=1000):
            fields = self.client.hgetall(key)
            if fields:
                views.append(view_from_hash(_text(fields)))
        return sorted(views, key=lambda v: v["key"])

    def read_all(self) -> list[dict[str, Any]]:
        """Every view under the prefix, sorted by key (for tests and small exports)."""
        views = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*:{{*}}", count=1000):
            if self.client.type(key) in (b"hash", "hash"):
                views.append(view_from_hash(_text(self.client.hgetall(key))))
        return sorted(views, key=lambda v: v["key"])


def _text(fields: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

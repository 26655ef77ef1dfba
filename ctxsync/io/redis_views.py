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

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import ResponseError

from ctxsync.io.erase_record import erased_key, name_field
from transforms.erasure import oldest_stamp
from transforms.validate import MAX_TTL_SECONDS

ATTR_PREFIX = "a:"
VIEW_FIELDS = ("key", "category", "userId", "version", "updatedAt", "attributes", "targetModels")

# KEYS[1] view hash, KEYS[2] its version floor, KEYS[3] the models' grants (access_key), KEYS[4] the erase
# record (erase_record.erased_key), KEYS[5..] change streams. ARGV[1] version, ARGV[2] TTL
# seconds (0 = the event gave none), ARGV[3] stream max length, ARGV[4] view JSON, ARGV[5] mode,
# ARGV[6] the user's field in the erase record, ARGV[7] the oldest time the view holds (ISO text),
# ARGV[8..] hash field/value pairs.
# Erase (ctxsync/io/erase_record.py): a view holding anything from at or before its user's erase is never
# written, in any mode, so no writer (the job, the connector, a replay) brings an erased user back; returns 4.
# Both times are ISO texts of one format: their digits, of equal length, order as the times do (a text of
# another length is refused too); the check costs one HGET, the comparison runs only for erased users.
# Mode "cas": applied only when the version is newer (replays and retries are no-ops). Mode "sync": also
# when Redis holds the same or a newer version with other content (its `digest`, SHA-1 of the view JSON):
# the job writes views before its checkpoint commits, so after a restore Redis may hold versions that the
# restored state never produced; a write of the restored job puts Redis back in line with its state.
# Expiry (contract proposal, docs/local-profile.md "View expiry"): a view expires TTL seconds after the write of the
# latest event that carried a `ttl`; an event without one keeps the expiry the view had (a view none of
# whose events had a TTL does not expire). Each view written with an expiry leaves its version in the
# floor key, which outlives the view by FLOOR_KEEP_S: after the view expired, no version up to the floor
# is written again (in either mode), so a replay never resurrects an expired view.
# Returns 0 (not applied), 1 (applied), 2 (applied over diverged content) or 3 (expired: not resurrected);
# an applied view whose change could not be appended to some streams (a key of another type there) returns
# {result, stream, ...}: the other streams still get theirs.
# Fan-out by grants (docs/security.md "What a model can read"): a model whose stream is named in the grants
# hash (written by `ctxsync acl apply`: stream key -> ",cat1,cat2,") gets a change only of a category it
# may read; a model not named there has no user of ours and gets every change it is targeted with.
# Fields go to HSET in chunks: Lua's unpack() fails beyond ~8,000 values (a view of ~4,000 attributes).
HSET_CHUNK = 1000  # even, so a chunk that starts at a field name ends at a value
FLOOR_KEEP_S = 7 * 24 * 3600  # how long after its view a floor is kept (replays later than that resurrect)
CAS_SCRIPT = f"""
local erased = redis.call('HGET', KEYS[4], ARGV[6])
if erased then
  local oldest, at = string.gsub(ARGV[7], '%D', ''), string.gsub(erased, '%D', '')
  if #oldest ~= #at or oldest <= at then return 4 end
end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local incoming = tonumber(ARGV[1])
if current < 0 and tonumber(redis.call('GET', KEYS[2]) or '-1') >= incoming then return 3 end
if current >= incoming and ARGV[5] ~= 'sync' then return 0 end
local digest = redis.sha1hex(ARGV[4])
local result = 1
if current >= incoming then
  if current == incoming and redis.call('HGET', KEYS[1], 'digest') == digest then return 0 end
  result = 2
end
local ttl_ms = tonumber(ARGV[2]) * 1000
if ttl_ms == 0 and current >= 0 then ttl_ms = math.max(redis.call('PTTL', KEYS[1]), 0) end
redis.call('DEL', KEYS[1])
for i = 8, #ARGV, {HSET_CHUNK} do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + {HSET_CHUNK - 1}, #ARGV)))
end
redis.call('HSET', KEYS[1], 'digest', digest)
if ttl_ms > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl_ms + {FLOOR_KEEP_S * 1000})
end
local category, unwritable = ',' .. redis.call('HGET', KEYS[1], 'category') .. ',', {{}}
for i = 5, #KEYS do
  local grant = redis.call('HGET', KEYS[3], KEYS[i])
  if not grant or string.find(grant, category, 1, true) then
    local added = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', ARGV[3], '*', 'key', KEYS[1], 'version', ARGV[1],
                              'view', ARGV[4])
    if type(added) == 'table' and added.err then table.insert(unwritable, KEYS[i]) end
  end
end
if #unwritable > 0 then return {{result, unpack(unwritable)}} end
return result
"""
log = logging.getLogger(__name__)
ACK_TTL_S = 60  # an outcome nobody waits for any more goes away
MAX_DETAIL_CHARS = 300  # a refused view's reason: Redis quotes the script's arguments, a whole view


def view_key(prefix: str, category: str, user_id: str) -> str:
    return f"{prefix}:{category}:{{{user_id}}}"


def floor_key(hash_key: str) -> str:
    """The version floor of a view hash (see CAS_SCRIPT); same hash tag, so the same Redis Cluster slot."""
    return hash_key + ":floor"


def stream_key(prefix: str, model_id: str) -> str:
    return f"{prefix}:changes:{model_id}"


def high_water_key(stream: str, group: str) -> str:
    """A consumer group's acknowledged versions (client/changes.py): a sorted set, aggregate key -> version,
    next to its stream so a model's Redis user can be allowed exactly its own (the `:seen:` hash of older
    releases is no longer read)."""
    return f"{stream}:acked:{group}"


def access_key(prefix: str) -> str:
    """The grants hash the fan-out reads: change stream key -> ",category,...," (`ctxsync acl apply`)."""
    return f"{prefix}:access"


def grant_value(categories: Iterable[str]) -> str:
    """A grant as CAS_SCRIPT matches it: each category between commas (",," grants none)."""
    return "," + ",".join(categories) + ","


def read_grants(client: Any, prefix: str) -> dict[str, str]:
    """The grants hash as text (empty before any `ctxsync acl apply`)."""
    return _text(client.hgetall(access_key(prefix)))


def grant_allows(grants: dict[str, str], stream: str, category: str) -> bool:
    """CAS_SCRIPT's fan-out rule, for a writer that appends changes without it (snapshot restore)."""
    grant = grants.get(stream)
    return grant is None or grant_value([category]) in grant


def ack_key(prefix: str, model_id: str, ack: str) -> str:
    """The list the job pushes an event's outcome to, when the event asked for it (`"ack": "<nonce>"`, new
    for every publish: a retried batch or a re-sent eventId never answers another wait); the model id in
    the key lets a model's Redis user read only its own events' outcomes."""
    return f"{prefix}:ack:{model_id}:{ack}"


def view_problem(view: Any) -> str | None:
    """Why a record read from the views topic cannot be written as a view (None if it can): the topic is
    open to any producer, and a malformed record must be dead-lettered, not stop the connector."""
    if not isinstance(view, dict):
        return f"a view is a JSON object, got {type(view).__name__}"
    missing = [name for name in VIEW_FIELDS if name not in view]
    if missing:
        return f"fields missing: {', '.join(missing)}"
    if not all(isinstance(view[name], str) for name in ("key", "category", "userId", "updatedAt")):
        return "key, category, userId and updatedAt must be strings"
    if type(view["version"]) is not int or view["version"] < 0:
        return "version must be an integer >= 0"
    if not isinstance(view["attributes"], dict):
        return "attributes must be an object"
    targets = view["targetModels"]
    if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
        return "targetModels must be a list of non-empty strings"
    ttl = view.get("ttl")
    if ttl is not None and (type(ttl) is not int or not 0 <= ttl <= MAX_TTL_SECONDS):
        return f"ttl must be an integer number of seconds up to {MAX_TTL_SECONDS}"
    return None


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
    """A view to write, the TTL (seconds, None = no expiry) of the event that produced it, and whether it
    may replace diverged content (mode "sync" of CAS_SCRIPT)."""

    view: dict[str, Any]
    ttl: int | None = None
    sync: bool = False


@dataclass
class WriteResult:
    """What one batch did: views applied (`repaired` of them over diverged content), skipped as not newer,
    and refused by Redis (each with a short reason), so one bad view never fails the others."""

    applied: int = 0
    skipped: int = 0
    repaired: int = 0
    expired: int = 0  # versions of a view that expired: not written again
    erased: int = 0  # views holding data from before their user's erase: never written
    refused: list[tuple[ViewWrite, str]] = field(default_factory=list)
    unwritable: dict[str, int] = field(default_factory=dict)  # change stream -> changes it could not take


class RedisViewSink:
    """Writes batches of views with the CAS script in one pipeline (one round trip per batch).

    The batch is packed into Redis' wire protocol here and sent in one write, its replies read in order:
    redis-py's pipeline spent ~140 µs per batch and ~40 µs per view on its own bookkeeping, as much as the
    job's logic per event."""

    def __init__(self, client: Any, prefix: str = "ctx", stream_maxlen: int = 10_000) -> None:
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.access = access_key(prefix)
        self.erased = erased_key(prefix)
        self.sha = hashlib.sha1(CAS_SCRIPT.encode()).hexdigest().encode()
        self.load_script = resp(b"SCRIPT", b"LOAD", CAS_SCRIPT)

    def write(self, writes: Iterable[ViewWrite], deletes: Iterable[str] = (),
              acks: Iterable[tuple[str, str, bytes]] = ()) -> WriteResult:
        """Delete the views of `deletes` (aggregate keys), write `writes`, then push `acks` (model id,
        the event's ack nonce, outcome JSON: what `publish(wait=True)` waits for, so it sees its view
        applied), in one round trip.

        Raises redis connection errors (the caller retries the whole batch: writes are idempotent);
        a view Redis refuses (a script error) is returned in `refused`."""
        return self.send(writes, deletes, acks).result()

    def send(self, writes: Iterable[ViewWrite], deletes: Iterable[str] = (),
             acks: Iterable[tuple[str, str, bytes]] = ()) -> "SentBatch":
        """`write`, split in two: the batch is sent now and its replies read by `.result()`, so the caller
        can do other work while Redis runs the scripts (the job: its state writes)."""
        items = list(writes)
        # every batch loads the script first (Redis hashes 1.5 KB: a few µs): a Redis that restarted or
        # flushed its scripts never answers NOSCRIPT halfway through a batch
        commands: list[bytes] = [self.load_script]
        removed = [name for key in deletes for name in (self._hash_key(key), floor_key(self._hash_key(key)))]
        if removed:
            commands.append(resp(b"DEL", *removed))
        first = len(commands)
        for item in items:
            if item.ttl is not None and not 0 <= item.ttl <= MAX_TTL_SECONDS:  # validation bounds event TTLs
                raise ValueError(f"ttl {item.ttl} out of range (0..{MAX_TTL_SECONDS} s)")
            view = item.view
            hash_key = view_key(self.prefix, view["category"], view["userId"])
            keys = [hash_key, floor_key(hash_key), self.access, self.erased,
                    *(stream_key(self.prefix, m) for m in view["targetModels"])]
            args: list[Any] = [view["version"], item.ttl or 0, self.stream_maxlen, orjson.dumps(view),
                               b"sync" if item.sync else b"cas", name_field(view["userId"]), oldest_stamp(view)]
            for name, value in hash_fields(view).items():
                args += [name, value]
            commands.append(resp(b"EVALSHA", self.sha, len(keys), *keys, *args))
        for model, nonce, outcome in acks:
            key = ack_key(self.prefix, model, nonce)
            commands += [resp(b"LPUSH", key, outcome), resp(b"EXPIRE", key, ACK_TTL_S)]
        return SentBatch(self, items, commands, first)

    def delete(self, aggregate_key: str) -> int:
        """Remove the view of `<category>:<userId>` (a tombstone on the views topic); 1 if there was one."""
        hash_key = self._hash_key(aggregate_key)
        return int(self.client.delete(hash_key, floor_key(hash_key)) > 0)

    def _hash_key(self, aggregate_key: str) -> str:
        category, _, user_id = aggregate_key.partition(":")
        return view_key(self.prefix, category, user_id)

    def read(self, category: str, user_id: str) -> dict[str, Any] | None:
        fields = self.client.hgetall(view_key(self.prefix, category, user_id))
        return view_from_hash(_text(fields)) if fields else None

    def read_user(self, user_id: str) -> list[dict[str, Any]]:
        """Every view of a user (all categories), sorted by key. The pattern also matches other users whose
        id embeds this one's tag (a user `x}:general:{bob` for `bob`): only the user's own views are kept."""
        views = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*:{{{_glob_escape(user_id)}}}", count=1000,
                                         _type="hash"):
            fields = self.client.hgetall(key)
            if fields:
                view = view_from_hash(_text(fields))
                if view["userId"] == user_id:
                    views.append(view)
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


class SentBatch:
    """A batch on its way to Redis (RedisViewSink.send): `result()` reads the replies, once."""

    def __init__(self, sink: RedisViewSink, items: list[ViewWrite], commands: list[bytes], first: int) -> None:
        self.sink, self.items, self.commands, self.first = sink, items, commands, first
        self.connection = sink.client.connection_pool.get_connection()
        try:
            self.connection.send_packed_command([b"".join(commands)])
        except BaseException:
            self._release(broken=True)
            raise

    def result(self) -> WriteResult:
        """Raises redis connection errors (send the batch again: every command is idempotent)."""
        replies = self._replies()
        result = WriteResult()
        for item, outcome in zip(self.items, replies[self.first:self.first + len(self.items)]):
            if isinstance(outcome, list):  # applied, but some change streams refused their entry
                for stream in outcome[1:]:
                    name = stream.decode() if isinstance(stream, bytes) else stream
                    result.unwritable[name] = result.unwritable.get(name, 0) + 1
                outcome = outcome[0]
            if isinstance(outcome, Exception):
                result.refused.append((item, short_reason(outcome)))
            elif outcome == 0:
                result.skipped += 1
            elif outcome == 3:
                result.expired += 1
            elif outcome == 4:
                result.erased += 1
            else:
                result.applied += 1
                result.repaired += outcome == 2
        for stream, count in result.unwritable.items():  # a key of another type where the stream belongs
            log.warning("redis: %d change(s) not appended to %s: the key is not a stream (the other targets "
                        "got theirs); delete the key to restore that model's change feed", count, stream)
        return result

    def _replies(self) -> list[Any]:
        """Every reply in order (an error reply is returned, not raised)."""
        replies: list[Any] = []
        try:
            for _ in self.commands:
                try:
                    replies.append(self.connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            self._release(broken=True)  # replies may be left unread: the connection cannot be reused
            raise
        self._release()
        return replies

    def _release(self, broken: bool = False) -> None:
        if broken:
            self.connection.disconnect()
        self.sink.client.connection_pool.release(self.connection)


def resp(*args: Any) -> bytes:
    """One command in Redis' wire protocol (RESP): an array of bulk strings."""
    datas = [arg if type(arg) is bytes else (arg if type(arg) is str else str(arg)).encode() for arg in args]
    return b"*%d\r\n" % len(datas) + b"".join([b"$%d\r\n%s\r\n" % (len(data), data) for data in datas])


def short_reason(error: BaseException) -> str:
    """Redis' error without the script arguments it quotes (they hold the whole view), bounded."""
    text = str(error).split(" script: ", 1)[0]
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS - 3] + "..."

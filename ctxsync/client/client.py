"""`ContextClient`: how a model reads, subscribes to and publishes shared context.

Reads go straight to the view hashes the connector writes (ctxsync/io/redis_views.py), optionally
through a cache kept correct by server-assisted invalidation; subscriptions read the model's change
stream with a consumer group; publishing builds a contract-valid event, validates it with the job's own
rules and produces it keyed by userId exactly like `ctxsync replay`.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, overload

import orjson

from ctxsync.client.acks import Outcome, new_nonce, wait_outcome
from ctxsync.client.cache import TrackedCache
from ctxsync.client.changes import ChangeFeed
from ctxsync.client.clock import PROCESS_CLOCK, EventClock
from ctxsync.client.endpoints import Credentials, Endpoints, from_profile
from ctxsync.client.model import Context, View
from ctxsync.client.publish import InvalidEvent, Published, Publisher, build_event
from ctxsync.config import ConfigError
from ctxsync.io.clients import redis_client
from ctxsync.io.kafka_io import read_topic
from ctxsync.io.redis_views import stream_key, view_from_hash, view_key


def _view(fields: dict[str, str]) -> View | None:
    """A view hash (the connector's layout, read by redis_views) as a View; None for a missing key."""
    return View.from_record(view_from_hash(fields)) if fields else None


class ContextClient:
    """One model's handle on the shared context (thread-safe for reads; one feed per thread)."""

    def __init__(self, endpoints: Endpoints, model_id: str, *, instance_id: str | None = None,
                 cache: bool = False, cache_size: int = 100_000, clock: EventClock = PROCESS_CLOCK) -> None:
        self.endpoints = endpoints
        self.clock = clock  # stamps this process's events in publish order (clock.py)
        self.model_id = model_id
        self.instance_id = instance_id or f"{model_id}@{socket.gethostname()}"
        self.prefix = endpoints.redis.prefix
        self.settings = endpoints.settings
        self.redis = redis_client(endpoints.redis)
        self.cache: TrackedCache[View | None] | None = (
            TrackedCache(self.redis.connection_pool, _view, cache_size) if cache else None)
        self.categories = tuple(sorted({*self.settings.categories.values(), self.settings.default_category}))
        self._publisher: Publisher | None = None

    @classmethod
    def from_profile(cls, model_id: str, profile: str = "local", *, jobs: Path = Path("jobs.yaml"),
                     job: str = "context-sync", credentials: Credentials | None = None,
                     **options: Any) -> "ContextClient":
        """A client for a jobs.yaml profile (`local` needs `ctxsync dev up`)."""
        return cls(from_profile(profile, jobs, job, credentials), model_id, **options)

    # -- read ---------------------------------------------------------------------------------------

    def get(self, user_id: str, categories: Iterable[str] | None = None) -> Context:
        """The user's views (all known categories, or these): one pipelined round trip, or none on a
        cache hit."""
        return self.get_many([user_id], categories)[user_id]

    def get_many(self, user_ids: Iterable[str], categories: Iterable[str] | None = None) -> dict[str, Context]:
        """Contexts of many users in one pipelined round trip (cache misses only, when caching)."""
        users = list(dict.fromkeys(user_ids))
        wanted = tuple(categories) if categories is not None else self.categories
        keys = [view_key(self.prefix, category, user) for user in users for category in wanted]
        found = self._read_views(keys)
        read_at = time.time_ns() // 1_000_000
        width = len(wanted)
        return {user: Context(user, {c: v for c, v in zip(wanted, found[i * width:(i + 1) * width]) if v},
                              read_at)
                for i, user in enumerate(users)}

    def _read_views(self, keys: list[str]) -> list[View | None]:
        if self.cache is not None:
            return self.cache.read(keys)
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [_view({k.decode(): v.decode() for k, v in fields.items()}) for fields in pipe.execute()]

    @property
    def hit_rate(self) -> float:
        """Share of view reads answered by the client cache (0.0 without a cache)."""
        return self.cache.hit_rate if self.cache is not None else 0.0

    # -- subscribe ----------------------------------------------------------------------------------

    def changes(self, group: str, consumer: str | None = None, **options: Any) -> ChangeFeed:
        """Iterate over the views changed for this model, shared by every client of `group` (see
        ChangeFeed: at-least-once, acknowledged when the loop asks for the next change)."""
        return ChangeFeed(self.redis, stream_key(self.prefix, self.model_id), group,
                          consumer or self.instance_id, **options)

    # -- publish ------------------------------------------------------------------------------------

    @overload
    def publish(self, user_id: str, updates: Mapping[str, Any], *, wait: Literal[False] = False,
                **options: Any) -> str: ...

    @overload
    def publish(self, user_id: str, updates: Mapping[str, Any], *, wait: Literal[True],
                **options: Any) -> Outcome: ...

    def publish(self, user_id: str, updates: Mapping[str, Any], *, expected_version: int | None = None,
                targets: Iterable[str] | None = None, ttl: int | None = None, priority: str | None = None,
                event_type: str = "context.updated", session_id: str | None = None,
                event_id: str | None = None, wait: bool = False, timeout_s: float = 5.0) -> str | Outcome:
        """Send one context event for the user and return its eventId once Kafka has it; with `wait`,
        return the job's Outcome once the event's views are applied in Redis (a `get` then reads them),
        or once the job found it a duplicate, stale or rejected; OutcomeTimeout after `timeout_s`.

        `updates` maps attribute -> value (confidence 1.0) or `Update(value, confidence, previous)`.
        Raises InvalidEvent (nothing sent) when the event breaks a contract rule.
        """
        started = time.perf_counter()
        now_ms, event_id = self.clock.stamp(event_id)
        event = build_event(self.model_id, self.instance_id, user_id, updates, expected_version=expected_version,
                            targets=targets, ttl=ttl, priority=priority, event_type=event_type,
                            session_id=session_id, event_id=event_id, now_ms=now_ms)
        if not wait:
            return self._publisher_for().send(event).event_id
        event["ack"] = nonce = new_nonce()  # the job pushes the outcome (transforms/outcome.py) after the views
        sent = self._publisher_for().send(event)
        return wait_outcome(self.redis, self.prefix, self.model_id, sent.event_id, nonce, timeout_s, started)

    def update(self, user_id: str, change: Callable[[Context], Mapping[str, Any]] | Mapping[str, Any],
               **options: Any) -> Published:
        """Read -> modify -> publish with `expectedVersion` = the version read, so a concurrent writer is
        detected by the job (a `conflict` in context.violations; see `conflicts`).

        `change` is the updates, or a function of the context read that returns them; all of them must
        belong to one category (an aggregate has one version).
        """
        context = self.get(user_id)
        updates = change(context) if callable(change) else change
        categories = {self.settings.category_of(name) for name in updates}
        if len(categories) != 1:
            raise InvalidEvent("multi_category_expected_version",
                               "update() needs attributes of one category, got "
                               + (", ".join(sorted(categories)) or "none"))
        (category,) = categories
        now_ms, event_id = self.clock.stamp(options.pop("event_id", None))
        event = build_event(self.model_id, self.instance_id, user_id, updates, event_id=event_id, now_ms=now_ms,
                            expected_version=context.version(category), **options)
        return self._publisher_for().send(event)

    def conflicts(self, event_ids: Iterable[str], timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The violations the job recorded for these events (conflicts and ordering). The job writes
        violations unkeyed, so this reads the whole violations topic up to its current end: meant for
        checking a few writes, not for following every conflict."""
        wanted = set(event_ids)
        found = []
        for message in read_topic(self._kafka(), self.endpoints.violations_topic, timeout_s):
            record = orjson.loads(message.value())
            if isinstance(record, dict) and record.get("eventId") in wanted:
                found.append(record)
        return found

    def _kafka(self) -> dict[str, Any]:
        if self.endpoints.kafka is None:
            raise ConfigError("this client has no Kafka endpoint: it can read and subscribe, not publish")
        return self.endpoints.kafka

    def _publisher_for(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(self._kafka(), self.endpoints, self.settings)
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        if self.cache is not None:
            self.cache.close()
        self.redis.close()

    def __enter__(self) -> "ContextClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

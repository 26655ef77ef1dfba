"""Where a model's client connects, taken from a jobs.yaml profile or given as URLs.

Both ways end in the same config models the job and the connectors use (RedisEndpoint, KafkaSecurity),
so a model reads the views and writes events with exactly the settings (prefix, topics, TLS, SASL) the
pipeline was deployed with. Per-model credentials override the profile's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ctxsync.config import ConfigError, KafkaSecurity, Profile, RedisEndpoint, resolve_job, resolve_profile
from ctxsync.io.clients import kafka_config, kafka_sink, kafka_source
from ctxsync.io.kafka_io import EVENTS, VIOLATIONS
from ctxsync.servers import running_endpoints
from transforms.settings import SyncSettings


@dataclass(frozen=True)
class Credentials:
    """A model's own secrets; None keeps the profile's value. Never printed (repr hides them)."""

    redis_password: str | None = field(default=None, repr=False)
    redis_ca: str | None = None
    kafka_username: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    kafka_mechanism: str | None = None
    kafka_protocol: str | None = None
    kafka_ca: str | None = None


@dataclass(frozen=True)
class Endpoints:
    """Everything the client connects to, and the job settings it validates events with."""

    redis: RedisEndpoint
    # confluent-kafka settings (bootstrap + security, so kept out of repr); None: a read-only client
    kafka: dict[str, Any] | None = field(repr=False)
    events_topic: str = EVENTS
    violations_topic: str = VIOLATIONS
    partitions: int = 4
    create_topics: bool = False
    settings: SyncSettings = field(default_factory=SyncSettings)


def _with_redis_credentials(endpoint: RedisEndpoint, credentials: Credentials | None) -> RedisEndpoint:
    if credentials is None:
        return endpoint
    changes: dict[str, Any] = {}
    if credentials.redis_password is not None:
        changes["password"] = SecretStr(credentials.redis_password)
    if credentials.redis_ca is not None:
        changes["ca_location"] = credentials.redis_ca
    return endpoint.model_copy(update=changes)


def _with_kafka_credentials(security: KafkaSecurity, credentials: Credentials | None) -> KafkaSecurity:
    if credentials is None:
        return security
    given = {"username": credentials.kafka_username, "sasl_mechanism": credentials.kafka_mechanism,
             "protocol": credentials.kafka_protocol, "ca_location": credentials.kafka_ca,
             "password": credentials.kafka_password}
    data = {**security.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    if isinstance(data["password"], SecretStr):
        data["password"] = data["password"].get_secret_value()
    return KafkaSecurity.model_validate(data)  # a bad protocol/mechanism name fails here, clearly


def from_profile(profile: str = "local", jobs: Path = Path("jobs.yaml"), job: str = "context-sync",
                 credentials: Credentials | None = None, dev_endpoints: dict[str, str] | None = None
                 ) -> Endpoints:
    """The endpoints of a job's profile, placeholders filled as `ctxsync run` fills them.

    `dev_endpoints` defaults to the running `ctxsync dev` servers (for `${dev:...}`).
    """
    if dev_endpoints is None:
        dev_endpoints = running_endpoints()
    config = resolve_job(jobs, job, [])
    resolved: Profile = resolve_profile(config.profile(profile), profile, dev_endpoints)
    if resolved.redis is None:
        raise ConfigError(f"profile {profile!r} has no `redis:` endpoint: a client reads views from Redis")
    kafka = None
    events, violations, partitions, create = EVENTS, VIOLATIONS, 4, False
    if resolved.source.type == "kafka":
        source, sink = kafka_source(resolved), kafka_sink(resolved)
        security = _with_kafka_credentials(sink.security or source.security, credentials)
        kafka = {"bootstrap.servers": kafka_config(resolved)["bootstrap.servers"], **security.client_config()}
        events, violations = source.topic, sink.topics.violations
        partitions, create = sink.partitions, sink.create_topics
    return Endpoints(_with_redis_credentials(resolved.redis, credentials), kafka, events, violations,
                     partitions, create, config.settings.to_settings())


def from_urls(redis_url: str, kafka_bootstrap: str | None = None, credentials: Credentials | None = None,
              settings: SyncSettings | None = None, prefix: str = "ctx", events_topic: str = EVENTS,
              violations_topic: str = VIOLATIONS, partitions: int = 4, create_topics: bool = False,
              kafka_options: dict[str, Any] | None = None) -> Endpoints:
    """Endpoints given directly: `redis://` or `rediss://` (TLS) URL, a Kafka bootstrap, and any extra
    confluent-kafka options (passed through as they are, e.g. ssl.* settings)."""
    redis = _with_redis_credentials(RedisEndpoint(url=redis_url, prefix=prefix), credentials)
    kafka = None
    if kafka_bootstrap is not None:
        security = _with_kafka_credentials(KafkaSecurity(), credentials)
        kafka = {"bootstrap.servers": kafka_bootstrap, **security.client_config(), **(kafka_options or {})}
    return Endpoints(redis, kafka, events_topic, violations_topic, partitions, create_topics,
                     settings or SyncSettings())

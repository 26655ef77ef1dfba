"""Clients built from a resolved jobs.yaml profile (ctxsync.config.resolve_profile): one place where
credentials leave their SecretStr, straight into the client, never into a message or a log line."""
from __future__ import annotations

from typing import Any

from ctxsync.config import (
    ConfigError, ElasticsearchEndpoint, KafkaSinkEndpoint, KafkaSourceEndpoint, Profile, RedisEndpoint,
)


def kafka_source(profile: Profile) -> KafkaSourceEndpoint:
    if not isinstance(profile.source, KafkaSourceEndpoint):
        raise ConfigError("this profile's source is not Kafka (type: kafka)")
    return profile.source


def kafka_sink(profile: Profile) -> KafkaSinkEndpoint:
    if not isinstance(profile.sink, KafkaSinkEndpoint):
        raise ConfigError("this profile's sink is not Kafka (type: kafka)")
    return profile.sink


def kafka_config(profile: Profile) -> dict[str, Any]:
    """confluent-kafka settings for the output side (the source's bootstrap and security by default)."""
    source, sink = kafka_source(profile), kafka_sink(profile)
    security = sink.security or source.security
    return {"bootstrap.servers": sink.bootstrap or source.bootstrap, **security.client_config()}


def redis_client(endpoint: RedisEndpoint | None) -> Any:
    import redis

    if endpoint is None:
        raise ConfigError("this profile has no `redis:` endpoint")
    options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
    if endpoint.password is not None:
        options["password"] = endpoint.password.get_secret_value()
    if endpoint.ca_location:
        options["ssl_ca_certs"] = endpoint.ca_location
    return redis.Redis.from_url(endpoint.url, **options)


def es_client(endpoint: ElasticsearchEndpoint | None) -> Any:
    from elasticsearch import Elasticsearch

    if endpoint is None:
        raise ConfigError("this profile has no `elasticsearch:` endpoint")
    options: dict[str, Any] = {"request_timeout": 30, "max_retries": 0, "verify_certs": endpoint.verify_certs}
    if endpoint.api_key is not None:
        options["api_key"] = endpoint.api_key.get_secret_value()
    elif endpoint.username is not None:
        password = endpoint.password.get_secret_value() if endpoint.password else ""
        options["basic_auth"] = (endpoint.username, password)
    if endpoint.ca_location:
        options["ca_certs"] = endpoint.ca_location
    return Elasticsearch([h.strip() for h in endpoint.hosts.split(",") if h.strip()], **options)

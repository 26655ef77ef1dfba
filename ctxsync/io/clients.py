"""Clients built from a resolved jobs.yaml profile (ctxsync.config.resolve_profile): one place where
credentials leave their SecretStr, straight into the client, never into a message or a log line."""
from __future__ import annotations

from typing import Any

from ctxsync.config import (
    ConfigError, ElasticsearchEndpoint, KafkaSecurity, KafkaSinkEndpoint, KafkaSourceEndpoint, Profile,
    RedisEndpoint,
)


def kafka_source(profile: Profile) -> KafkaSourceEndpoint:
    if not isinstance(profile.source, KafkaSourceEndpoint):
        raise ConfigError("this profile's source is not Kafka (type: kafka)")
    return profile.source


def kafka_sink(profile: Profile) -> KafkaSinkEndpoint:
    if not isinstance(profile.sink, KafkaSinkEndpoint):
        raise ConfigError("this profile's sink is not Kafka (type: kafka)")
    return profile.sink


def sink_cluster(profile: Profile) -> tuple[str, KafkaSecurity]:
    """(bootstrap, security) of the output side: the sink's own, else the source's. One rule for every
    client that writes or reads the outputs (connectors, replay, the Flink job's sink)."""
    source, sink = kafka_source(profile), kafka_sink(profile)
    return sink.bootstrap or source.bootstrap, sink.security or source.security


def kafka_config(profile: Profile) -> dict[str, Any]:
    """confluent-kafka settings for the output side (the source's bootstrap and security by default)."""
    bootstrap, security = sink_cluster(profile)
    return {"bootstrap.servers": bootstrap, **security.client_config()}


def redis_client(endpoint: RedisEndpoint | None) -> Any:
    import redis

    if endpoint is None:
        raise ConfigError("this profile has no `redis:` endpoint")
    options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
    if endpoint.username is not None:
        options["username"] = endpoint.username
    if endpoint.password is not None:
        options["password"] = endpoint.password.get_secret_value()
    options.update(_redis_tls(endpoint))
    return redis.Redis.from_url(endpoint.url, **options)


def _redis_tls(endpoint: RedisEndpoint) -> dict[str, Any]:
    """TLS options of a `rediss://` endpoint: the CA and the host name are always verified (redis-py checks
    no host name by default); TLS files with a plain `redis://` URL are a mistake, said up front."""
    files = {"ca_location": endpoint.ca_location, "cert_location": endpoint.cert_location,
             "key_location": endpoint.key_location}
    if not endpoint.url.startswith("rediss://"):
        given = [name for name, value in files.items() if value]
        if given:
            raise ConfigError(f"redis: {', '.join(given)} needs a rediss:// url (TLS), got a plain one",
                              "write the url as rediss://host:port/db")
        return {}
    if bool(endpoint.cert_location) != bool(endpoint.key_location):
        raise ConfigError("redis: cert_location and key_location go together")
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if endpoint.ca_location:
        options["ssl_ca_certs"] = endpoint.ca_location
    if endpoint.cert_location:
        options["ssl_certfile"] = endpoint.cert_location
        options["ssl_keyfile"] = endpoint.key_location
    return options


def search_client(profile: Profile) -> Any:
    """The client of the profile's history endpoint, for the engine its `search.engine` names."""
    return es_client(profile.elasticsearch, profile.search.engine)


def es_client(endpoint: ElasticsearchEndpoint | None, engine: str = "elasticsearch") -> Any:
    """An `elasticsearch` client, or with engine `opensearch` an `opensearch-py` one (the Elasticsearch client
    refuses other servers); either goes behind ctxsync.io.search.as_backend."""
    from ctxsync.io.search import elasticsearch, opensearch

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
    hosts = [h.strip() for h in endpoint.hosts.split(",") if h.strip()]
    return (opensearch if engine == "opensearch" else elasticsearch).connect(hosts, options)

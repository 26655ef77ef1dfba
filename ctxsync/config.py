"""Typed models of jobs.yaml. Errors name the bad key and its line, because a job that fails at
submit time on a typo costs a data engineer far more than a clear message up front."""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator,
    model_validator,
)

from ctxsync.config_yaml import YamlLimitError, compose_bounded, read_bounded
from ctxsync.errors import UsageError
from transforms.batching import Batching
from transforms.drift import DriftSettings
from transforms.expectations import load_compiled
from transforms.settings import USER_FIELD, Mode, PrivacyPolicy, SyncSettings

_DURATION = re.compile(r"([0-9]+)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ConfigError(UsageError):
    """jobs.yaml (or a --set override) is wrong; the message says where and how to fix it."""


MAX_DURATION_MS = 3650 * _UNIT_MS["d"]  # ten years: far beyond any retention, and safe in Java's long


def duration_ms(value: Any) -> int:
    """'24h', '5m', '90s', '250ms', '2d' or a plain number of milliseconds (not a bool, not a float)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        ms = value
    else:
        match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a duration like 24h, 5m, 90s or 250ms, got {value!r}")
        ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms > MAX_DURATION_MS:
        raise ValueError(f"{value!r} is longer than 3650d, the longest duration allowed")
    return ms


_ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1  # what Kafka, Java and Redis take


class _Strict(BaseModel):
    """No unknown keys, and no coercion: `true` is not the number 1, `"8"` not the number 8."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SyncSettingsModel(_Strict):
    conflict_policy: Literal["last-writer-wins", "reject"] = "last-writer-wins"
    dedup_retention: int = Field(default=24 * 3_600_000, description="milliseconds")
    state_ttl: int | None = Field(default=None, description="milliseconds of event time; null = never")
    future_skew: int = Field(default=300_000, description="milliseconds")
    max_event_bytes: int = Field(default=1_000_000, gt=0, le=_INT32_MAX, description="bytes")
    default_category: str = Field(default="general", min_length=1)
    categories: dict[str, list[str]] = Field(default_factory=dict)
    expectations: str | None = Field(default=None, description="GE suite name or path; null = off")

    @field_validator("expectations")
    @classmethod
    def _suite_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            load_compiled(value)  # a missing or non-row-level suite fails here, with the key's line
        return value

    @field_validator("dedup_retention", "future_skew", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_ms(value)

    @field_validator("state_ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> int | None:
        if value is None:
            return None
        ms = duration_ms(value)
        if ms == 0:
            raise ValueError("a state TTL must be longer than 0 (null keeps state forever)")
        return ms

    @field_validator("categories")
    @classmethod
    def _each_attribute_once(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for category, attributes in value.items():
            for attribute in attributes:
                if attribute in seen:
                    raise ValueError(
                        f"attribute {attribute!r} is in both {seen[attribute]!r} and {category!r}"
                    )
                seen[attribute] = category
        return value

    def to_settings(self) -> SyncSettings:
        return SyncSettings(
            categories={a: c for c, attrs in self.categories.items() for a in attrs},
            default_category=self.default_category,
            conflict_policy=self.conflict_policy,
            dedup_retention_ms=self.dedup_retention,
            state_ttl_ms=self.state_ttl,
            future_skew_ms=self.future_skew,
            max_event_bytes=self.max_event_bytes,
            expectations=load_compiled(self.expectations) if self.expectations else None,
        )


class BatchingModel(_Strict):
    """The `batching:` section: how the PyFlink job hands events to Python (transforms/batching.py)."""

    window: int = Field(default=20, gt=0, description="batch window, milliseconds")
    buckets: int = Field(default=4, ge=1, le=65_536, description="at least the job's parallelism; fixed for the "
                         "life of a job's state")
    max_events: int = Field(default=2_000, ge=1, description="most events per emitted output record")

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_ms(value)

    def to_batching(self) -> Batching:
        return Batching(window_ms=self.window, buckets=self.buckets, max_events=self.max_events)


class DriftSettingsModel(_Strict):
    """The `drift:` section of a context-drift job (windows, watermark, reference, alert thresholds)."""

    window: int = Field(default=900_000, description="tumbling event-time window, milliseconds")
    out_of_orderness: int = Field(default=120_000, description="watermark delay, milliseconds")
    reference: Literal["previous", "baseline"] = "previous"
    baseline: str | None = Field(default=None, description="drift.jsonl whose windows form the baseline")
    top_k: int = Field(default=8, ge=1, le=100)
    quantile_bins: int = Field(default=5, ge=2, le=50)
    sketch_size: int = Field(default=512, ge=16, le=1_000_000)
    min_count: int = Field(default=200, ge=1, description="windows with fewer rows get no score")
    spc_windows: int = Field(default=8, ge=2)
    thresholds: dict[Literal["psi", "js", "spc_sigma"], Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"psi": 0.25, "js": 0.1, "spc_sigma": 3.0})

    @field_validator("window", "out_of_orderness", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_ms(value)

    @model_validator(mode="after")
    def _baseline_named(self) -> "DriftSettingsModel":
        if self.reference == "baseline" and not self.baseline:
            raise ValueError("reference: baseline needs `baseline: <drift.jsonl of a known-good run>`")
        if self.window <= 0:
            raise ValueError("window must be > 0")
        return self

    def to_settings(self) -> DriftSettings:
        defaults = DriftSettingsModel.model_fields["thresholds"].default_factory()
        return DriftSettings(
            window_ms=self.window, out_of_orderness_ms=self.out_of_orderness, top_k=self.top_k,
            quantile_bins=self.quantile_bins, sketch_size=self.sketch_size, min_count=self.min_count,
            spc_windows=self.spc_windows, thresholds={**defaults, **self.thresholds},
        )


class Endpoint(_Strict):
    type: Literal["file", "files"]


class KafkaSecurity(_Strict):
    """Client security settings (librdkafka/Java property names are derived from these)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_location: str | None = Field(default=None, description="PEM file of the CA that signed the brokers")

    def client_config(self) -> dict[str, str]:
        """confluent-kafka (librdkafka) properties; the password only leaves here, never into logs."""
        config = {"security.protocol": self.protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None:
            config["sasl.username"] = self.username
        if self.password is not None:
            config["sasl.password"] = self.password.get_secret_value()
        if self.ca_location:
            config["ssl.ca.location"] = self.ca_location
        return config

    def java_properties(self) -> dict[str, str]:
        """The same settings as Java client properties (Flink's Kafka connector)."""
        props = {"security.protocol": self.protocol}
        if self.sasl_mechanism:
            props["sasl.mechanism"] = self.sasl_mechanism
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if self.sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            user = (self.username or "").replace('"', '\\"')
            password = (self.password.get_secret_value() if self.password else "").replace('"', '\\"')
            props["sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
        if self.ca_location:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = self.ca_location
        return props


class KafkaSourceEndpoint(_Strict):
    """Flink reads context events from Kafka; `committed` resumes from the group's offsets (else earliest)."""

    type: Literal["kafka"]
    bootstrap: str
    topic: str = "context.events"
    group_id: str = "ctxsync-context-sync"
    start: Literal["committed", "earliest", "latest", "timestamp"] = "committed"
    start_timestamp: str | None = Field(default=None, description="ISO-8601, for start: timestamp")
    bounded: bool = Field(default=False, description="stop at the latest offsets seen at start (replays, tests)")
    format: Literal["json", "avro"] = "json"
    schema_id: int | None = Field(default=None, ge=0, le=_INT32_MAX,
                                  description="Avro: accept only this Confluent schema id")
    registry: str | None = Field(default=None, description="Avro: schema registry URL (Confluent API, e.g. "
                                 "${dev:registry}) that resolves each record's writer schema by its id; "
                                 "default: the shipped schema writes every id")
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)


class OutputTopics(_Strict):
    views: str = "context.views"
    history: str = "context.history"
    violations: str = "context.violations"
    dlq: str = "context.dlq"


class KafkaSinkEndpoint(_Strict):
    """Flink writes every output kind to Kafka; connectors move them on to Redis and Elasticsearch."""

    type: Literal["kafka"]
    bootstrap: str | None = Field(default=None, description="default: the source's bootstrap")
    topics: OutputTopics = Field(default_factory=OutputTopics)
    delivery: Literal["exactly-once", "at-least-once", "none"] = "exactly-once"
    transactional_id_prefix: str = "ctxsync-context-sync"
    checkpoint_interval: int = Field(default=2000, description="milliseconds; exactly-once commits at checkpoints")
    partitions: int = Field(default=4, ge=1, le=_INT32_MAX, description="partitions of topics ctxsync creates")
    create_topics: bool = Field(default=False, description="create missing topics (local servers)")
    security: KafkaSecurity | None = Field(default=None, description="default: the source's")

    @field_validator("checkpoint_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_ms(value)


class RedisEndpoint(_Strict):
    """Redis for views: `rediss://` URLs use TLS (the server's certificate and host name are verified)."""

    url: str
    username: str | None = Field(default=None, description="Redis ACL user; default: the URL's, else `default`")
    password: SecretStr | None = None
    ca_location: str | None = Field(default=None, description="PEM file of the CA that signed the server "
                                    "(rediss:// only; default: the system's CAs)")
    cert_location: str | None = Field(default=None, description="PEM client certificate, for servers that "
                                      "require one (tls-auth-clients yes); rediss:// only")
    key_location: str | None = Field(default=None, description="PEM private key of cert_location")
    prefix: str = "ctx"
    stream_maxlen: int = Field(default=10_000, ge=1, le=_INT64_MAX,
                               description="entries kept per change stream (approx.)")


class ElasticsearchEndpoint(_Strict):
    """Elasticsearch for history and violations (API key, or username and password)."""

    hosts: str = Field(description="comma-separated URLs")
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_location: str | None = None
    verify_certs: bool = True


def _port_off(value: Any) -> Any:
    """YAML reads `off` as false: that, and null, mean no endpoint."""
    return None if value is False else value


Port = Annotated[Annotated[int, Field(ge=0, le=65535)] | None, BeforeValidator(_port_off)]


class MetricsEndpoints(_Strict):
    """Where the running job and the connectors expose Prometheus metrics (docs/observability.md).

    A fixed port lets Prometheus and the Grafana dashboard find an endpoint without discovery; 0 takes a free
    port at start (two jobs or several connector copies never collide) and announces it where `ctxsync
    signals` finds it (ctxsync/observe/announce.py); `off` (or null) serves none."""

    host: str = Field(default="127.0.0.1", description="interface the endpoints bind to and are scraped on")
    job_port: Port = Field(default=9249, description="Flink's Prometheus reporter (the job); 0 = a free port, "
                           "off = none")
    connector_ports: dict[str, Port] = Field(
        default_factory=lambda: {"redis": 9251, "elasticsearch": 9252},
        description="connector kind -> port of its `ctxsync connect` process; 0 = a free port, off = none")


class AuditSettings(_Strict):
    """Where operator actions are recorded, and whether they may run unrecorded (docs/security.md, Audit log)."""

    required: bool = Field(default=False, description="refuse audited actions (replay, run --fresh, submit, "
                           "acl apply, ...) when no audit key is configured; else run them unrecorded")
    topic: str = Field(default="context.audit", description="Kafka profiles: the log's topic (one partition)")


class ProfilePrivacy(_Strict):
    """A profile's `privacy:` section: turns the job's PII protection on and says where its keys are
    (docs/security.md, PII protection). The master key itself is never in jobs.yaml."""

    enabled: bool = True
    master_key_env: str | None = Field(default="CTXSYNC_MASTER_KEY", pattern=_ENV_NAME_PATTERN,
                                       description="environment variable with the base64 master key")
    master_key_file: str | None = Field(default=None, description="file with the base64 master key (used "
                                        "when the variable is unset)")
    keystore: Literal["redis", "file"] = Field(default="redis", description="where the wrapped per-user data "
                                               "keys live: the profile's Redis (hash <prefix>:keys) or files")
    keystore_path: str | None = Field(default=None, description="directory of the file key store")

    @model_validator(mode="after")
    def _store_located(self) -> "ProfilePrivacy":
        if self.keystore == "file" and not self.keystore_path:
            raise ValueError("keystore: file needs keystore_path")
        return self


class SearchSettings(_Strict):
    """A profile's `search:` section: which engine serves its `elasticsearch:` endpoint (docs/search.md). The
    history's documents, ids and queries are the same on both; the client and one mapping type differ."""

    engine: Literal["elasticsearch", "opensearch"] = Field(default="elasticsearch", description="the "
                                                           "history's search engine: Elasticsearch 8 or OpenSearch 2")


class Profile(_Strict):
    source: Endpoint | KafkaSourceEndpoint = Field(discriminator="type")
    sink: Endpoint | KafkaSinkEndpoint = Field(discriminator="type")
    redis: RedisEndpoint | None = None
    elasticsearch: ElasticsearchEndpoint | None = None
    search: SearchSettings = Field(default_factory=SearchSettings)
    state_dir: str | None = Field(default=None, description="where Kafka runs keep the savepoint and input "
                                  "position the next run continues from; default: $CTXSYNC_HOME/state or "
                                  "~/.cache/ctxsync/state")
    metrics: MetricsEndpoints = Field(default_factory=MetricsEndpoints)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    privacy: ProfilePrivacy | None = Field(default=None, description="PII protection on, and its keys")


_MODEL_ID = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = _ENV_NAME_PATTERN


class ModelGrant(_Strict):
    """What one model may read in Redis: the views of these categories and its own change stream."""

    categories: list[str] = Field(default_factory=list, description="categories whose views it may read")
    password_env: str = Field(pattern=_ENV_NAME, description="environment variable that holds the password "
                              "of the model's Redis user (read by `ctxsync acl apply`, never printed)")
    user: str | None = Field(default=None, pattern=r"^[^\s]+$",
                             description="Redis user name; default: <access.user_prefix><model>")


class AccessSettings(_Strict):
    """The `access:` section: per-model Redis ACL users written by `ctxsync acl apply`."""

    user_prefix: str = Field(default="model-", pattern=r"^[^\s]+$",
                             description="names of the users ctxsync manages start with this (--prune "
                             "removes such users that jobs.yaml no longer grants)")
    models: dict[str, ModelGrant] = Field(default_factory=dict, description="model id -> grant")

    @field_validator("models")
    @classmethod
    def _model_ids(cls, value: dict[str, ModelGrant]) -> dict[str, ModelGrant]:
        for model in value:
            if not _MODEL_ID.fullmatch(model):
                raise ValueError(f"model id {model!r}: use letters, digits, '.', '_' and '-' only")
        return value

    def username(self, model: str) -> str:
        return self.models[model].user or f"{self.user_prefix}{model}"


class PrivacySettings(_Strict):
    """The job's `privacy:` section: which fields and attributes are PII and how each is protected."""

    fields: dict[str, Mode] = Field(default_factory=lambda: {USER_FIELD: "pseudonymize"},
                                    description="dotted event paths -> pseudonymize or encrypt")
    attributes: dict[str, Mode] = Field(default_factory=dict, description="attribute names whose values "
                                        "are protected -> pseudonymize or encrypt")

    @field_validator("fields")
    @classmethod
    def _user_pseudonymized(cls, value: dict[str, Mode]) -> dict[str, Mode]:
        if value.get(USER_FIELD, "pseudonymize") != "pseudonymize":
            raise ValueError(f"{USER_FIELD} must be pseudonymize: history joins, Elasticsearch ids and erase "
                             "find a user by the stable token")
        return {USER_FIELD: "pseudonymize", **value}

    def policy(self, keys: dict[str, str]) -> PrivacyPolicy:
        return PrivacyPolicy(dict(self.fields), dict(self.attributes), keys)


class JobConfig(_Strict):
    type: Literal["context-sync", "context-drift"]
    description: str = ""
    parallelism: int = Field(default=1, ge=1, le=64)
    settings: SyncSettingsModel = Field(default_factory=SyncSettingsModel)
    drift: DriftSettingsModel | None = None  # context-drift jobs only
    batching: BatchingModel = Field(default_factory=BatchingModel)
    flink: dict[str, str] = Field(default_factory=dict)
    access: AccessSettings | None = Field(default=None, description="per-model Redis read grants")
    privacy: PrivacySettings = Field(default_factory=PrivacySettings, description="PII fields; protected "
                                     "where the profile turns privacy on")
    profiles: dict[str, Profile]

    @field_validator("access")
    @classmethod
    def _granted_categories_exist(cls, value: AccessSettings | None, info: ValidationInfo) -> AccessSettings | None:
        settings = info.data.get("settings")  # absent when settings itself failed: that error is reported
        if value is None or settings is None:
            return value
        known = {*settings.categories, settings.default_category}
        for model, grant in value.models.items():
            unknown = [c for c in grant.categories if c not in known]
            if unknown:
                raise ValueError(f"models.{model}.categories: unknown {', '.join(map(repr, unknown))}; "
                                 f"the job's categories: {', '.join(sorted(known))}")
        return value

    def profile(self, name: str) -> Profile:
        """The named profile, or a ConfigError that lists the ones there are."""
        if name not in self.profiles:
            raise ConfigError(f"the job has no profile {name!r}", f"profiles: {', '.join(self.profiles)}")
        return self.profiles[name]

    @field_validator("flink", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class JobsFile(_Strict):
    version: Literal[1]
    jobs: dict[str, JobConfig]

    @field_validator("version", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1, so Literal[1] alone would take it
            raise ValueError("expected the number 1, got a boolean")
        return value


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path of a YAML document to its 1-based line, for error messages."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[path + (key.value,)] = key.start_mark.line + 1
            lines.update({p: n for p, n in _line_index(value, path + (key.value,)).items() if p != path + (key.value,)})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, path + (i,)))
    return lines


def _format_errors(exc: ValidationError, source: str, lines: dict[tuple[Any, ...], int],
                   what: str = "invalid jobs file") -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(str(p) if not isinstance(p, int) else p for p in error["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        key = ".".join(str(p) for p in loc) or "(top level)"
        # a boolean is safe to echo (other inputs may be secrets) and is the usual surprise: `true` for 1
        said = f", not {str(error['input']).lower()}" if isinstance(error.get("input"), bool) else ""
        messages.append(f"{where}: {key}: {error['msg']}{said}")
    return f"{what}: " + "; ".join(messages)


def load_jobs(path: Path) -> JobsFile:
    """Read and validate jobs.yaml, raising ConfigError with file:line for every problem."""
    try:
        text = read_bounded(path)
    except YamlLimitError as exc:
        raise ConfigError(f"{path}: {exc}", exc.hint) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read jobs file {path}: {exc.strerror}",
                          "give the right path with --jobs, or run from the project folder") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})",
                          "save the file as UTF-8") from exc
    try:
        node, data = compose_bounded(text)
    except YamlLimitError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc}", exc.hint) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if node is None:
        raise ConfigError(f"{path}: the file is empty")
    try:
        return JobsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), _line_index(node))) from exc


# Keys of `flink:` that ctxsync sets itself (the worker's interpreter, jars, where checkpoints go): an
# override would break the job or be overwritten, so it is refused instead of silently ignored.
MANAGED_FLINK_KEYS = ("python.executable", "python.client.executable", "python.pythonpath", "pipeline.jars",
                      "execution.checkpointing.dir", "execution.checkpointing.storage",
                      "execution.state-recovery.path")
_FLINK_KEY = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


def _duration_text(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def override_keys_help() -> str:
    """The `--set` keys, with defaults and units, for `ctxsync run --help` (defaults read off the model)."""
    d, b = SyncSettingsModel(), BatchingModel()
    rows = [
        ("conflict_policy", f"last-writer-wins or reject (default {d.conflict_policy})"),
        ("dedup_retention", f"how long an eventId is remembered, a duration like 90s, 5m, 24h, 2d "
                            f"(default {_duration_text(d.dedup_retention)})"),
        ("state_ttl", "a user idle longer (event time) leaves state, a duration like 30d (default: never)"),
        ("future_skew", f"how far past the wall clock an event time may be, a duration "
                        f"(default {_duration_text(d.future_skew)})"),
        ("max_event_bytes", f"larger events are dead-lettered, bytes (default {d.max_event_bytes:,})"),
        ("default_category", f"category of unmapped attributes (default {d.default_category})"),
        ("expectations", "a GE suite enforced in the stream, name or path (default: off)"),
        ("parallelism", "engine parallelism, 1..64 (default: the job's)"),
        ("batching.window", f"PyFlink batch window, a duration; bounds added latency (default {b.window}ms)"),
        ("batching.buckets", f"user buckets, the batched job's key space; fixed for the life of a Kafka "
                             f"run's state (default {b.buckets})"),
        ("flink.<key>", "a Flink configuration key, passed to Flink as is; Flink ignores keys it does not"),
        ("", "know, so check the spelling in Flink's docs; keys ctxsync sets itself are refused"),
        ("profiles.<p>.<key>", "a key of a profile, e.g. profiles.local.source.bounded=false"),
    ]
    return "\n".join(f"  {key:<19} {text}" for key, text in rows)


def _known_paths(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key path of the job, for suggestions; settings keys also by their bare name."""
    found = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        found.append(path)
        if isinstance(value, dict) and key != "categories":
            found.extend(_known_paths(value, path + "."))
    return found + (list(SyncSettingsModel.model_fields) if not prefix else [])


def _unknown_key(key: str, data: dict[str, Any]) -> ConfigError:
    close = difflib.get_close_matches(key, _known_paths(data), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "`ctxsync run --help` lists the keys"
    return ConfigError(f"--set {key}: unknown key", hint)


def _check_flink_key(key: str) -> None:
    if not _FLINK_KEY.fullmatch(key):
        raise ConfigError(f"--set flink.{key}: not a Flink configuration key (they look like "
                          "python.state.cache-size)", "see Flink's configuration docs")
    if key in MANAGED_FLINK_KEYS:
        raise ConfigError(f"--set flink.{key}: ctxsync sets this key itself", "leave it out")


def _override_value(key: str, raw: str) -> Any:
    """A `--set` value as a YAML scalar (or flow collection), with the same bounds as jobs.yaml."""
    if not raw:
        return ""
    try:
        return compose_bounded(raw)[1]
    except YamlLimitError as exc:
        raise ConfigError(f"--set {key}: {exc}", exc.hint) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: not a YAML value: {' '.join(str(exc).split())}") from exc


def apply_overrides(job: JobConfig, overrides: list[str]) -> JobConfig:
    """Apply `--set key=value` overrides; a bare key is looked up in `settings` first, then the job.

    Values are parsed as YAML scalars, so `parallelism=2` is a number and `conflict_policy=reject` a string.
    """
    data = job.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}", "e.g. --set conflict_policy=reject")
        path = key.split(".")
        if len(path) == 1 and path[0] in SyncSettingsModel.model_fields:
            path = ["settings", path[0]]
        if path[0] == "flink":  # flink.<dotted Flink key>: one key, not a path
            if len(path) < 2:
                raise ConfigError("--set flink needs a key: flink.<Flink key>=<value>")
            flink_key = ".".join(path[1:])
            _check_flink_key(flink_key)
            data["flink"][flink_key] = raw
            continue
        target = data
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                raise _unknown_key(key, data)
            target = target[part]
        known = path[-1] in target or (path[0] == "settings" and path[-1] in SyncSettingsModel.model_fields)
        if not known:
            raise _unknown_key(key, data)
        target[path[-1]] = _override_value(key, raw)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, "--set", {}, "invalid override")) from exc


def resolve_job(jobs_path: Path, name: str, overrides: list[str]) -> JobConfig:
    jobs = load_jobs(jobs_path)
    if name not in jobs.jobs:
        raise ConfigError(f"no job {name!r} in {jobs_path}; jobs: {', '.join(jobs.jobs)}")
    return apply_overrides(jobs.jobs[name], overrides)


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|dev:[a-z]+)(?::-([^}]*))?\}")


def _expand(value: str, where: str, dev_endpoints: dict[str, str] | None) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name.startswith("dev:"):
            service = name[4:]
            if dev_endpoints is None or service not in dev_endpoints:
                raise ConfigError(f"{where}: needs the local servers ({service})", "run `ctxsync dev up` first")
            return dev_endpoints[service]
        found = os.environ.get(name, default)
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found

    return _PLACEHOLDER.sub(replace, value)


def resolve_profile(profile: Profile, name: str, dev_endpoints: dict[str, str] | None = None) -> Profile:
    """The profile with `${VAR}`, `${VAR:-default}` and `${dev:service}` placeholders filled in.

    Done at run time for the chosen profile only, so `ctxsync jobs` works without any variables set. A
    placeholder that expands to "" leaves an optional field unset. Secrets stay SecretStr ('**********').
    """

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, SecretStr):
            node = node.get_secret_value()
        if isinstance(node, str):
            expanded = _expand(node, path, dev_endpoints)
            return None if expanded == "" and _PLACEHOLDER.search(node) else expanded  # "${X:-}": unset
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}") for k, v in node.items()}
        return node

    data = walk(profile.model_dump(), f"profiles.{name}")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, f"profile {name}", {}, "invalid profile")) from exc


def privacy_policy(job: JobConfig, profile: Profile) -> PrivacyPolicy | None:
    """The job's PII policy with the (resolved) profile's key locations, or None where privacy is off."""
    keys = profile.privacy
    if keys is None or not keys.enabled:
        return None
    located: dict[str, str] = {"store": keys.keystore}
    if keys.master_key_env:
        located["master_key_env"] = keys.master_key_env
    if keys.master_key_file:
        located["master_key_file"] = keys.master_key_file
    if keys.keystore == "file":
        located["path"] = str(keys.keystore_path)
    else:
        if profile.redis is None:
            raise ConfigError("privacy.keystore: redis needs the profile's redis:", "or use keystore: file")
        redis = profile.redis.model_dump(mode="json")
        if profile.redis.password is not None:
            redis["password"] = profile.redis.password.get_secret_value()
        located["redis"] = json.dumps(redis)
    return job.privacy.policy(located)


def sync_settings(job: JobConfig, profile: Profile) -> SyncSettings:
    """The operators' settings for a run of `job` on a resolved `profile` (privacy is per profile)."""
    return replace(job.settings.to_settings(), privacy=privacy_policy(job, profile))

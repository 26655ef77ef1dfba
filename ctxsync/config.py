"""Typed models of jobs.yaml. Errors name the bad key and its line, because a job that fails at
submit time on a typo costs a data engineer far more than a clear message up front."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transforms.drift import DriftSettings
from transforms.expectations import load_compiled
from transforms.settings import SyncSettings

_DURATION = re.compile(r"([0-9]+)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ConfigError(Exception):
    """jobs.yaml (or a --set override) is wrong; the message says where and how to fix it."""


def duration_ms(value: Any) -> int:
    """'24h', '5m', '90s', '250ms', '2d' or a plain number of milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"expected a duration like 24h, 5m, 90s or 250ms, got {value!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyncSettingsModel(_Strict):
    conflict_policy: Literal["last-writer-wins", "reject"] = "last-writer-wins"
    dedup_retention: int = Field(default=24 * 3_600_000, description="milliseconds")
    future_skew: int = Field(default=300_000, description="milliseconds")
    max_event_bytes: int = Field(default=1_000_000, gt=0)
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
            future_skew_ms=self.future_skew,
            max_event_bytes=self.max_event_bytes,
            expectations=load_compiled(self.expectations) if self.expectations else None,
        )


class DriftSettingsModel(_Strict):
    """The `drift:` section of a context-drift job (windows, watermark, reference, alert thresholds)."""

    window: int = Field(default=900_000, description="tumbling event-time window, milliseconds")
    out_of_orderness: int = Field(default=120_000, description="watermark delay, milliseconds")
    reference: Literal["previous", "baseline"] = "previous"
    baseline: str | None = Field(default=None, description="drift.jsonl whose windows form the baseline")
    top_k: int = Field(default=8, ge=1, le=100)
    quantile_bins: int = Field(default=5, ge=2, le=50)
    sketch_size: int = Field(default=512, ge=16)
    min_count: int = Field(default=200, ge=1, description="windows with fewer rows get no score")
    spc_windows: int = Field(default=8, ge=2)
    thresholds: dict[Literal["psi", "js", "spc_sigma"], float] = Field(
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


class Profile(_Strict):
    source: Endpoint
    sink: Endpoint


class JobConfig(_Strict):
    type: Literal["context-sync", "context-drift"]
    description: str = ""
    parallelism: int = Field(default=1, ge=1, le=64)
    settings: SyncSettingsModel = Field(default_factory=SyncSettingsModel)
    drift: DriftSettingsModel | None = None  # context-drift jobs only
    flink: dict[str, str] = Field(default_factory=dict)
    profiles: dict[str, Profile]

    @field_validator("flink", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class JobsFile(_Strict):
    version: Literal[1]
    jobs: dict[str, JobConfig]


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


def _format_errors(exc: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> str:
    messages = []
    for error in exc.errors():
        loc = tuple(str(p) if not isinstance(p, int) else p for p in error["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        key = ".".join(str(p) for p in loc) or "(top level)"
        messages.append(f"{where}: {key}: {error['msg']}")
    return "invalid jobs file:\n  " + "\n  ".join(messages)


def load_jobs(path: Path) -> JobsFile:
    """Read and validate jobs.yaml, raising ConfigError with file:line for every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read jobs file {path}: {exc.strerror}") from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if node is None:
        raise ConfigError(f"{path}: the file is empty")
    try:
        return JobsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), _line_index(node))) from exc


def apply_overrides(job: JobConfig, overrides: list[str]) -> JobConfig:
    """Apply `--set key=value` overrides; a bare key is looked up in `settings` first, then the job.

    Values are parsed as YAML scalars, so `parallelism=2` is a number and `conflict_policy=reject` a string.
    """
    data = job.model_dump()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        path = key.split(".")
        if len(path) == 1 and path[0] in SyncSettingsModel.model_fields:
            path = ["settings", path[0]]
        target = data
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section of the job")
            target = target[part]
        known = path[-1] in target or path[0] == "flink" or (path[0] == "settings" and path[-1] in SyncSettingsModel.model_fields)
        if not known:
            raise ConfigError(
                f"--set {key}: unknown key; settings keys are {', '.join(SyncSettingsModel.model_fields)}"
            )
        target[path[-1]] = yaml.safe_load(raw) if raw else ""
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, "--set", {})) from exc


def resolve_job(jobs_path: Path, name: str, overrides: list[str]) -> JobConfig:
    jobs = load_jobs(jobs_path)
    if name not in jobs.jobs:
        raise ConfigError(f"no job {name!r} in {jobs_path}; jobs: {', '.join(jobs.jobs)}")
    return apply_overrides(jobs.jobs[name], overrides)

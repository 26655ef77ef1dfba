from pathlib import Path

import pytest

from ctxsync.config import ConfigError, apply_overrides, duration_ms, load_jobs, resolve_job
from tests.helpers import ROOT

JOBS = ROOT / "jobs.yaml"


def test_shipped_jobs_file_maps_the_contract_minimum_categories():
    settings = load_jobs(JOBS).jobs["context-sync"].settings.to_settings()
    for attr in ("riskTolerance", "portfolioValue", "creditScore"):
        assert settings.category_of(attr) == "financial"
    for attr in ("segment", "lastAction", "preferredChannel", "engagementScore"):
        assert settings.category_of(attr) == "behavioral"
    for attr in ("lastLogin", "timezone", "sessionLength"):
        assert settings.category_of(attr) == "temporal"
    assert settings.category_of("somethingElse") == "general"
    assert settings.dedup_retention_ms == 24 * 3_600_000 and settings.future_skew_ms == 300_000


def test_errors_name_the_key_and_the_line(tmp_path: Path):
    bad = tmp_path / "jobs.yaml"
    text = JOBS.read_text().replace("conflict_policy: last-writer-wins", "conflict_policy: newest")
    bad.write_text(text.replace("dedup_retention: 24h", "dedup_retention: one day"))
    with pytest.raises(ConfigError) as info:
        load_jobs(bad)
    message = str(info.value)
    policy_line = next(i for i, l in enumerate(text.splitlines(), 1) if "conflict_policy: newest" in l)
    assert f"jobs.yaml:{policy_line}: jobs.context-sync.settings.conflict_policy" in message
    assert "settings.dedup_retention" in message and "24h" in message


def test_unknown_keys_and_broken_yaml_are_errors(tmp_path: Path):
    bad = tmp_path / "jobs.yaml"
    bad.write_text(JOBS.read_text().replace("parallelism: 1", "paralelism: 1"))
    with pytest.raises(ConfigError, match="paralelism"):
        load_jobs(bad)
    bad.write_text("jobs: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_jobs(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_jobs(tmp_path / "missing.yaml")


def test_an_attribute_in_two_categories_is_rejected(tmp_path: Path):
    bad = tmp_path / "jobs.yaml"
    bad.write_text(JOBS.read_text().replace("temporal: [lastLogin,", "temporal: [segment, lastLogin,"))
    with pytest.raises(ConfigError, match="'segment' is in both"):
        load_jobs(bad)


def test_overrides_reach_settings_and_job_keys_and_are_validated():
    job = resolve_job(JOBS, "context-sync", ["conflict_policy=reject", "parallelism=2", "dedup_retention=90m"])
    assert job.settings.conflict_policy == "reject" and job.parallelism == 2
    assert job.settings.dedup_retention == 90 * 60_000
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(job, ["colour=blue"])
    with pytest.raises(ConfigError, match="conflict_policy"):
        apply_overrides(job, ["conflict_policy=maybe"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(job, ["reject"])
    with pytest.raises(ConfigError, match="no job"):
        resolve_job(JOBS, "nope", [])


def test_durations():
    assert [duration_ms(v) for v in ("24h", "5m", "90s", "250ms", "2d", 17)] == [
        86_400_000, 300_000, 90_000, 250, 172_800_000, 17]
    with pytest.raises(ValueError):
        duration_ms("soon")

import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctxsync.config import ConfigError, apply_overrides, duration_ms, load_jobs, resolve_job
from ctxsync.config_yaml import MAX_BYTES
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


def laughs(levels: int = 9) -> str:
    """The billion laughs: each level an alias list of nine of the one before, 9**9 values expanded."""
    lines = ["version: 1", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines + [f"jobs: *l{levels - 1}", ""])


def ctxsync_jobs(path: Path, memory_bytes: int = 1 << 30) -> subprocess.CompletedProcess:
    """`ctxsync jobs --jobs PATH` in a process that may use at most `memory_bytes` of address space."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return subprocess.run([sys.executable, "-m", "ctxsync.cli", "jobs", "--jobs", str(path)], capture_output=True,
                          text=True, timeout=60, preexec_fn=limit)


def test_a_yaml_bomb_fails_fast_in_one_line_with_bounded_memory(tmp_path: Path):
    bomb = tmp_path / "jobs.yaml"
    bomb.write_text(laughs())
    started = time.monotonic()
    result = ctxsync_jobs(bomb)
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"ctxsync jobs: {bomb}:7: aliases expand this value to more than 100,000 values "
        "(write the values out, or use fewer aliases)"]


@pytest.mark.parametrize("text, line, words", [
    ("version: 1\njobs: &a [*a]\n", 2, "refers to a value that contains it"),
    ("version: 1\njobs: " + "[" * 100_000 + "]" * 100_000 + "\n", 2, "nested more than 64 levels"),
    ("version: 1\na0: &a0 [1]\n" + "".join(f"a{n}: &a{n} [*a{n - 1}]\n" for n in range(1, 100)) + "jobs: *a99\n",
     65, "aliases nest this value more than 64 levels"),
    ("version: 1\nm0: &m0 {a: 1, b: 2}\n" + "".join(f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}], k{n}: 1}}\n"
                                                  for n in range(1, 40)) + "jobs: *m39\n", 16, "more than 100,000"),
])
def test_aliases_and_nesting_are_bounded(tmp_path: Path, text: str, line: int, words: str):
    bad = tmp_path / "jobs.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:{line}: .*{words}"):
        load_jobs(bad)


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path: Path):
    big = tmp_path / "jobs.yaml"
    big.write_text(JOBS.read_text() + "#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="more than 1,000,000 bytes"):
        load_jobs(big)


def test_anchors_within_the_bounds_still_work(tmp_path: Path):
    shared = JOBS.read_text().replace("      embedded:", "      embedded: &files", 1).replace(
        "      local:", "      files-too: *files\n      local:", 1)
    path = tmp_path / "jobs.yaml"
    path.write_text(shared)
    profiles = load_jobs(path).jobs["context-sync"].profiles
    assert profiles["files-too"] == profiles["embedded"]


@pytest.mark.parametrize("key, value, words", [
    ("max_event_bytes: 1000000", "max_event_bytes: true", "settings.max_event_bytes: Input should be a valid "
                                                          "integer, not true"),
    ("max_event_bytes: 1000000", "max_event_bytes: 1.0e6", "settings.max_event_bytes: Input should be a valid integer"),
    ("max_event_bytes: 1000000", 'max_event_bytes: "1000000"', "settings.max_event_bytes: Input should be a valid integer"),
    ("max_event_bytes: 1000000", "max_event_bytes: 99999999999", "settings.max_event_bytes: Input should be less"),
    ("parallelism: 1", "parallelism: false", "parallelism: Input should be a valid integer, not false"),
    ("buckets: 4 ", "buckets: 4.0 ", "batching.buckets: Input should be a valid integer"),
    ("dedup_retention: 24h", "dedup_retention: true", "settings.dedup_retention: Value error, expected a duration"),
    ("dedup_retention: 24h", "dedup_retention: 1.5", "settings.dedup_retention: Value error, expected a duration"),
    ("dedup_retention: 24h", "dedup_retention: 999999999999d", "longer than 3650d"),
    ("window: 20ms", "window: yes", "batching.window: Value error, expected a duration"),
    ("version: 1", "version: true", "version: Value error, expected the number 1, got a boolean"),
    ("bounded: true}", "bounded: 1}", "source.kafka.bounded: Input should be a valid boolean"),
    ("partitions: 4,", "partitions: on,", "sink.kafka.partitions: Input should be a valid integer, not true"),
    ("[riskTolerance,", "[riskTolerance, 7,", "categories.financial.1: Input should be a valid string"),
])
def test_typed_fields_take_no_lookalikes(tmp_path: Path, key: str, value: str, words: str):
    text = JOBS.read_text()
    assert key in text
    bad = tmp_path / "jobs.yaml"
    bad.write_text(text.replace(key, value, 1))
    line = next(n for n, l in enumerate(bad.read_text().splitlines(), 1) if value in l)
    with pytest.raises(ConfigError) as info:
        load_jobs(bad)
    assert f"jobs.yaml:{line}: " in str(info.value) and words in str(info.value), str(info.value)


def test_overrides_are_as_strict_and_bounded_as_the_file():
    job = resolve_job(JOBS, "context-sync", [])
    bomb = "{" + ", ".join(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}' if n else '1'] * 9)}]" for n in range(9)) + "}"
    for item, words in (("max_event_bytes=true", "valid integer, not true"), ("parallelism=2.5", "valid integer"),
                        ("future_skew=1e30d", "expected a duration"), (f"categories={bomb}", "more than 100,000"),
                        ("categories={a: [b", "not a YAML value")):
        with pytest.raises(ConfigError, match=words):
            apply_overrides(job, [item])


def test_durations_are_bounded_and_never_booleans_or_floats():
    for bad in (True, 1.5, "1.5h", "3651d", 10**30, None):
        with pytest.raises(ValueError):
            duration_ms(bad)
    assert duration_ms("3650d") == 3650 * 86_400_000

"""Job metrics (ctxsync/metric_names.py) on both engines: the Kafka job on Flink reports them through
Flink's Prometheus reporter (scraped by a real Prometheus too), the Beam runner through Beam Metrics; both
equal what the reference run of the same input produced."""
from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctxsync.generate import GeneratorOptions, generate_lines
from ctxsync.io.kafka_io import producer
from ctxsync.metric_names import JOB_METRICS, job_series
from ctxsync.observe.announce import announcements
from ctxsync.config import Profile
from pipelines.reference import read_lines, run_reference
from tests.fixtures_prometheus import prometheus  # noqa: F401
from tests.fixtures_servers import servers, unique  # noqa: F401
from tests.helpers import SAMPLE
from tests.test_e2e_local import finish, prepare, start_local, wait_for
from transforms.records import HISTORY, untag
from transforms.settings import SyncSettings
from transforms.tally import LAG_BOUNDS_MS, Tally, bucket_labels, tally_lines

Series = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> Series:
    """name -> [(labels, value)] of the reporter's exposition; {} while it is not up yet."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    got: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            got.setdefault(sample.name, []).append((sample.labels, sample.value))
    return got


def total(series: Series, name: str, **labels: str) -> float:
    """Sum over subtasks of a job metric's series (those with the given labels)."""
    return sum(v for lab, v in series.get(job_series(name), []) if all(lab.get(k) == x for k, x in labels.items()))


def expected(path: Path, settings: SyncSettings) -> tuple[Tally, int]:
    """The reference run's tally of the file, and how many users its accepted events have."""
    lines = list(run_reference(read_lines(path), str(path), settings))
    users = {orjson.loads(untag(line)[3])["contextDelta"]["userId"] for line in lines if line[0] == HISTORY}
    return tally_lines(lines), len(users)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every outcome and anomaly kind: invalid, duplicate, late, conflicting events."""
    path = tmp_path_factory.mktemp("metrics") / "events.jsonl"
    options = GeneratorOptions(events=500, users=20, seed=5, invalid_rate=0.06, duplicate_rate=0.05)
    path.write_bytes(b"".join(line + b"\n" for line in generate_lines(options)))
    return path


@pytest.mark.servers
@pytest.mark.flink
def test_kafka_job_exposes_job_metrics_to_prometheus(servers, unique, monkeypatch, tmp_path, events_file,
                                                      prometheus):  # noqa: F811
    from ctxsync.commands.replay import ReplayFilter, replay

    prefix = f"metrics{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    data = job.profiles["local"].model_dump()
    data["source"]["bounded"] = False
    # port 0: the job takes a free port and announces it (ctxsync/observe/announce.py), as signals finds it
    data["metrics"] = {"host": "127.0.0.1", "job_port": 0, "connector_ports": {"redis": None, "elasticsearch": None}}
    job = job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})
    want, users = expected(events_file, job.settings.to_settings())
    sent = replay(events_file, producer(config), f"{prefix}.events", ReplayFilter()).sent
    assert sent == sum(want.outcomes().values())

    running = start_local(job, tmp_path, servers)
    try:
        def announced_port() -> int | None:
            mine = [a for a in announcements("context-sync", "local") if a.pid == running.pid]
            assert running.poll() is None, running.communicate()[1][-3000:]
            return int(mine[0].url.rsplit(":", 1)[1].split("/")[0]) if mine else None

        wait_for(lambda: announced_port() is not None, "the job to announce its metrics port", timeout_s=120)
        port = announced_port()
        assert port
        prom = prometheus({"ctxsync-job": [f"127.0.0.1:{port}"]})
        series: Series = {}

        def counted() -> bool:
            nonlocal series
            series = scrape(port)
            return running.poll() is not None or total(series, "events_total") >= sent

        wait_for(counted, "the reporter to count every event", timeout_s=240)
        # one batch's counters are updated one after another: a scrape can fall between two of them
        time.sleep(1)
        series = scrape(port)
        for outcome, n in want.outcomes().items():
            assert total(series, "events_total", outcome=outcome) == n, outcome
        assert want.duplicate > 0 and want.dead_lettered > 0
        for reason, n in want.dead_letter_reasons.items():
            assert total(series, "dead_letters_total", reason=reason) == n, reason
        assert total(series, "dead_letters_total") == want.dead_lettered
        for name, n in (("ordering_violations_total", want.ordering_violations), ("conflicts_total", want.conflicts),
                        ("stale_updates_total", want.stale_updates), ("views_emitted_total", want.views_emitted)):
            assert total(series, name) == n, name
        assert total(series, "event_lag_ms_count") == want.accepted
        assert total(series, "event_lag_ms_bucket", le="+Inf") == want.accepted
        buckets = [total(series, "event_lag_ms_bucket", le=le) for le in bucket_labels(LAG_BOUNDS_MS)]
        assert buckets == sorted(buckets)  # cumulative
        assert total(series, "event_lag_ms_sum") > 0  # the generated events are from the past
        assert total(series, "batch_ms_count") >= 1
        assert total(series, "state_users") == users
        labels = series[job_series("events_total")][0][0]
        assert labels["job_name"] == f"ctxsync context-sync ({prefix}.events)"
        assert labels["operator_name"] == "sync by bucket"
        exposed = {job_series(m.name) for m in JOB_METRICS if m.kind != "histogram"}
        assert exposed <= set(series), exposed - set(series)

        # a real Prometheus scraping the reporter answers the same counts through its HTTP API
        outcomes = prom.wait_for(f"sum by (outcome) ({job_series('events_total')})",
                                 lambda r: sum(r.values()) == sent, timeout_s=30)
        assert outcomes == {(("outcome", o),): float(n) for o, n in want.outcomes().items() if n}
        violations = prom.query(f"sum({job_series('ordering_violations_total')})")
        assert violations == {(): float(want.ordering_violations)}
        p100 = prom.query(f"histogram_quantile(1, sum by (le) ({job_series('event_lag_ms_bucket')}))")
        assert len(p100) == 1 and list(p100.values())[0] > 0
    finally:
        running.send_signal(signal.SIGINT)
        finish(running)  # stopped with a savepoint, exit 0
    assert not [a for a in announcements("context-sync", "local") if a.pid == running.pid]  # withdrawn at exit


def test_beam_runner_reports_the_same_job_metrics(tmp_path):
    from ctxsync.config import resolve_job
    from pipelines.beam.metrics import beam_name
    from pipelines.beam.runner import run_job
    from tests.helpers import ROOT

    counters: dict[str, int] = {}
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    summary = run_job(SAMPLE, job, tmp_path / "out", metrics=counters)
    assert {o: counters.get(beam_name("events_total", outcome=o), 0) for o in ("accepted", "duplicate", "dead_lettered")} \
        == {"accepted": summary.accepted, "duplicate": summary.duplicates, "dead_lettered": summary.dead_lettered}
    want, _ = expected(SAMPLE, job.settings.to_settings())
    assert {r: counters[beam_name("dead_letters_total", reason=r)] for r in want.dead_letter_reasons} \
        == want.dead_letter_reasons
    assert (counters["ordering_violations_total"], counters["conflicts_total"], counters["stale_updates_total"]) \
        == (summary.ordering_violations, summary.conflicts, summary.stale_updates)
    assert counters["views_emitted_total"] == summary.views  # a batch fold ships a user's last views only
    assert counters["event_lag_ms_count"] == summary.accepted
    assert counters[beam_name("event_lag_ms_bucket", le="+Inf")] == summary.accepted
    assert counters["batch_ms_count"] >= 1

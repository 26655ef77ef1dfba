"""`ctxsync signals`: scraping real prometheus-client endpoints that expose the catalogue's names (the
job's as Flink's reporter names them, per subtask), the signals computed from two scrapes, endpoints that
are down, and the command's one-shot, JSON and --watch output."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ctxsync import cli
from ctxsync.config import MetricsEndpoints, Profile, resolve_job
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.metric_names import CONNECTOR_METRICS, JOB_METRICS, job_series
from ctxsync.observe.announce import announce, announced, directory
from ctxsync.observe.render import lines
from ctxsync.observe.scrape import JOB, Endpoint, endpoints, scrape, scrape_all
from ctxsync.observe.signals import compute, histogram_quantile
from ctxsync.servers import free_port
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT, event
from tests.test_e2e_local import prepare

FLINK_LABELS = ("job_name", "task_name", "subtask_index")
CONNECTOR = {m.name: m for m in CONNECTOR_METRICS}


class Served:
    """A prometheus-client HTTP endpoint on a free loopback port, with its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def job_endpoint() -> Iterator[tuple[Served, dict]]:
    """The job's metrics as Flink's Prometheus reporter exposes them (`job_series`), one series per
    subtask, counters as gauges (the reporter's type for Flink counters), histograms as counter parts."""
    served = Served()
    metrics = {m.name: Gauge(job_series(m.name), m.help, FLINK_LABELS + m.labels, registry=served.registry)
               for m in JOB_METRICS if m.kind in ("counter", "gauge")}
    metrics["event_lag_ms_bucket"] = Gauge(job_series("event_lag_ms_bucket"), "lag", FLINK_LABELS + ("le",),
                                           registry=served.registry)
    yield served, metrics
    served.close()


@pytest.fixture
def connector_endpoint() -> Iterator[tuple[Served, dict]]:
    served = Served()
    made = {}
    for m in CONNECTOR_METRICS:
        kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[m.kind]
        made[m.name] = kind(m.name.removesuffix("_total") if m.kind == "counter" else m.name, m.help, m.labels,
                            registry=served.registry)
    yield served, made
    served.close()


def subtask(index: int, **labels: str) -> dict[str, str]:
    return {"job_name": "context-sync", "task_name": "sync_by_bucket", "subtask_index": str(index), **labels}


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.005: 0, 0.01: 95, 0.025: 95, 0.25: 95, 0.5: 100, float("inf"): 100}
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.96, buckets) == pytest.approx(0.25 + 0.25 * (1 / 5))
    assert histogram_quantile(0.5, {1.0: 0, float("inf"): 10}) == 1.0  # only +Inf: the largest finite bound


def test_signals_from_two_scrapes_of_the_job_and_a_connector(job_endpoint, connector_endpoint):
    (job, jm), (conn, cm) = job_endpoint, connector_endpoint
    targets = [Endpoint(JOB, f"http://127.0.0.1:{job.port}/metrics"),
               Endpoint("redis", f"http://127.0.0.1:{conn.port}/metrics")]
    events, dead = jm["events_total"], jm["dead_letters_total"]
    events.labels(**subtask(0, outcome="accepted")).set(1000)
    events.labels(**subtask(1, outcome="accepted")).set(500)
    dead.labels(**subtask(0, reason="invalid_json")).set(3)
    jm["ordering_violations_total"].labels(**subtask(0)).set(7)
    propagation = cm["ctxsync_propagation_seconds"].labels(connector="redis")
    for _ in range(100):
        propagation.observe(0.3)  # before the first scrape: not in the interval
    cm["ctxsync_connector_records_total"].labels(connector="redis", outcome="written").inc(40)
    cm["ctxsync_dlq_records"].labels(topic="context.dlq").set(3)
    lag = jm["event_lag_ms_bucket"]
    for le, count in (("10", 0), ("50", 0), ("100", 0), ("+Inf", 0)):
        lag.labels(**subtask(0, le=le)).set(count)
    before = scrape_all(targets)

    events.labels(**subtask(0, outcome="accepted")).set(1600)
    events.labels(**subtask(1, outcome="accepted")).set(900)
    events.labels(**subtask(1, outcome="duplicate")).set(10)
    dead.labels(**subtask(1, reason="missing_field")).set(2)
    jm["ordering_violations_total"].labels(**subtask(0)).set(9)
    for _ in range(100):
        propagation.observe(0.01)
    cm["ctxsync_connector_records_total"].labels(connector="redis", outcome="written").inc(60)
    cm["ctxsync_connector_lag_records"].labels(connector="redis", topic="context.views", partition="1").set(12)
    cm["ctxsync_dlq_records"].labels(topic="context.dlq").set(8)
    for le, count in (("10", 10), ("50", 80), ("100", 100), ("+Inf", 100)):  # cumulative, ms
        lag.labels(**subtask(0, le=le)).set(count)
    time.sleep(0.3)
    status = compute(before, scrape_all(targets))

    seconds = status.interval_s
    assert seconds >= 0.3
    assert status.events == {"accepted": 2500, "duplicate": 10}
    assert status.events_per_s * seconds == pytest.approx(600 + 400 + 10, rel=1e-6)
    assert status.dead_letters == {"invalid_json": 3, "missing_field": 2}
    assert status.ordering_violations.total == 9 and status.ordering_violations.per_s * seconds == pytest.approx(2)
    redis = status.connectors["redis"]
    assert redis.records == {"written": 100} and redis.records_per_s * seconds == pytest.approx(60)
    assert redis.propagation.window == "interval" and redis.propagation.count == 100
    # rank 95 of the interval's 100 in bucket (0.005, 0.01]: the interval's, not the 0.3 s observed before it
    assert redis.propagation.p95_s == pytest.approx(0.005 + 0.005 * 95 / 100)
    assert status.event_lag.p95_s == pytest.approx((50 + 50 * (95 - 80) / 20) / 1000)  # le in ms
    assert status.lag == [("redis", "context.views", 1, 12)]
    assert status.dlq_records == {"context.dlq": 8} and status.dlq_per_s * seconds == pytest.approx(5)
    assert status.down == []


def test_the_dead_letter_topic_size_reported_by_both_connectors_is_counted_once(connector_endpoint):
    (redis, rm), other = connector_endpoint, Served()
    try:
        Gauge("ctxsync_dlq_records", "dlq", ("topic",), registry=other.registry).labels("context.dlq").set(8)
        rm["ctxsync_dlq_records"].labels(topic="context.dlq").set(8)
        targets = [Endpoint("redis", f"http://127.0.0.1:{redis.port}/metrics"),
                   Endpoint("elasticsearch", f"http://127.0.0.1:{other.port}/metrics")]
        assert compute([], scrape_all(targets)).dlq_records == {"context.dlq": 8}
    finally:
        other.close()


def test_a_restarted_counter_counts_from_zero_and_quiet_histograms_show_the_total(job_endpoint, connector_endpoint):
    (job, jm), (conn, cm) = job_endpoint, connector_endpoint
    targets = [Endpoint(JOB, f"http://127.0.0.1:{job.port}/metrics"),
               Endpoint("redis", f"http://127.0.0.1:{conn.port}/metrics")]
    jm["events_total"].labels(**subtask(0, outcome="accepted")).set(5000)
    cm["ctxsync_propagation_seconds"].labels(connector="redis").observe(0.2)
    before = scrape_all(targets)
    jm["events_total"].labels(**subtask(0, outcome="accepted")).set(40)  # the job restarted
    status = compute(before, scrape_all(targets))
    assert status.events_per_s * status.interval_s == pytest.approx(40)
    latency = status.connectors["redis"].propagation
    assert latency.window == "total" and latency.count == 1 and 0.1 < latency.p95_s <= 0.25 and not latency.beyond


def test_a_quantile_above_the_largest_bucket_is_marked_as_such(connector_endpoint):
    conn, cm = connector_endpoint
    for _ in range(20):
        cm["ctxsync_propagation_seconds"].labels(connector="redis").observe(100)  # default buckets end at 10 s
    status = compute([], scrape_all([Endpoint("redis", f"http://127.0.0.1:{conn.port}/metrics")]))
    latency = status.connectors["redis"].propagation
    assert latency.beyond and latency.p95_s == 10.0
    assert ">10,000.0 ms*" in "\n".join(lines(status, "t", color=False))


def test_an_endpoint_that_is_down_is_reported_not_raised(job_endpoint):
    job, _ = job_endpoint
    down = scrape(Endpoint("elasticsearch", f"http://127.0.0.1:{free_port()}/metrics"), timeout_s=1)
    assert not down.up and down.error == "connection refused"
    status = compute([], [scrape(Endpoint(JOB, f"http://127.0.0.1:{job.port}/metrics")), down])
    assert status.down == ["elasticsearch"] and status.interval_s == 0.0


def test_profile_endpoints_skip_ports_that_are_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path))
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    metrics = job.profiles["local"].metrics.model_copy(update={"job_port": None})
    assert [e.name for e in endpoints(metrics, "context-sync", "local")] == ["elasticsearch", "redis"]
    assert endpoints(metrics, "context-sync", "local")[0].url == \
        f"http://127.0.0.1:{metrics.connector_ports['elasticsearch']}/metrics"


def test_ports_chosen_at_start_are_found_where_they_were_announced_and_only_while_their_process_lives(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path))
    metrics = MetricsEndpoints.model_validate({"job_port": 0, "connector_ports": {"redis": 0, "elasticsearch": False}})
    assert metrics.connector_ports["elasticsearch"] is None and metrics.job_port == 0  # YAML `off` reads as false
    assert endpoints(metrics, "context-sync", "local") == []  # nothing running has announced a port yet
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with announced("context-sync", "local", "job", "http://127.0.0.1:41001/metrics"):
            announce("context-sync", "local", "redis", "http://127.0.0.1:41002/metrics")
            other = announce_as(sleeper.pid, "context-sync", "local", "redis", "http://127.0.0.1:41003/metrics")
            announce("other-job", "local", "redis", "http://127.0.0.1:41004/metrics")
            found = endpoints(metrics, "context-sync", "local")
            assert found[0].url.endswith(":41001/metrics")  # the job first, then connectors by name and pid
            assert sorted(e.url[-14:] for e in found[1:]) == [":41002/metrics", ":41003/metrics"]
            assert found[0].name == "job" and {e.name for e in found[1:]} == {f"redis@{os.getpid()}",
                                                                             f"redis@{sleeper.pid}"}
            sleeper.kill()
            sleeper.wait()
            assert [e.name for e in endpoints(metrics, "context-sync", "local")] == ["job", "redis"]
            assert not other.exists()  # the dead copy's announcement is removed, not shown as down forever
        assert [e.name for e in endpoints(metrics, "context-sync", "local")] == ["redis"]
    finally:
        sleeper.kill()


def announce_as(pid: int, job: str, profile: str, name: str, url: str):
    """An announcement as process `pid` would have written it (announce() always names the caller)."""
    target = directory(job, profile) / f"{name}-{pid}.json"
    target.write_text(json.dumps({"name": name, "url": url, "pid": pid}))
    return target


def jobs_file(tmp_path, job_port: int, connector_ports: dict[str, int], job=None, profile: str = "embedded"):
    """jobs.yaml whose profile (by default `embedded`: no servers) exposes metrics on these ports."""
    job = job or resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    data = job.profiles[profile].model_dump()
    data["metrics"] = {"host": "127.0.0.1", "job_port": job_port, "connector_ports": connector_ports}
    job = job.model_copy(update={"profiles": {**job.profiles, profile: Profile.model_validate(data)}})
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    return path


def test_command_shows_a_snapshot_text_and_json(tmp_path, job_endpoint, connector_endpoint, capsys):
    (job, jm), (conn, cm) = job_endpoint, connector_endpoint
    jm["events_total"].labels(**subtask(0, outcome="accepted")).set(10)
    cm["ctxsync_propagation_seconds"].labels(connector="redis").observe(0.5)
    path = jobs_file(tmp_path, job.port, {"redis": conn.port, "elasticsearch": free_port()})
    args = ["signals", "--profile", "embedded", "--jobs", str(path), "--interval", "100ms"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "elasticsearch DOWN (connection refused)" in out and "job up" in out and "redis up" in out
    assert "487.5 ms*" in out and "\x1b[" not in out  # 0.25 + 0.25 * 0.95 s in bucket (0.25, 0.5]; no colors
    assert cli.main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["down"] == ["elasticsearch"] and data["events"] == {"accepted": 10.0}
    assert data["connectors"]["redis"]["propagation"]["window"] == "total"
    assert cli.main(args + ["--color", "always"]) == 0
    assert "\x1b[31m" in capsys.readouterr().out  # the down endpoint and the 487.5 ms p95 are red


def test_command_fails_in_one_line_when_nothing_answers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path))
    path = jobs_file(tmp_path, free_port(), {"redis": free_port()})
    assert cli.main(["signals", "--profile", "embedded", "--jobs", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ctxsync signals: no metrics endpoint answers (job http://127.0.0.1:")
    off = jobs_file(tmp_path, None, {})
    assert cli.main(["signals", "--profile", "embedded", "--jobs", str(off)]) == 2
    assert "every metrics endpoint off" in capsys.readouterr().err
    chosen = jobs_file(tmp_path, 0, {})
    assert cli.main(["signals", "--profile", "embedded", "--jobs", str(chosen)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing running announced a metrics endpoint" in err[0]


def test_watch_redraws_in_place_until_interrupted(tmp_path, job_endpoint):
    job, jm = job_endpoint
    counter = jm["events_total"].labels(**subtask(0, outcome="accepted"))
    path, screen = jobs_file(tmp_path, job.port, {}), tmp_path / "screen.txt"
    with screen.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "signals", "--watch", "--interval",
                                    "200ms", "--profile", "embedded", "--jobs", str(path)], cwd=ROOT,
                                   env=dict(os.environ), stdout=out, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while screen.read_text().count("\x1b[H") < 4 and time.monotonic() < deadline:
            counter.inc(100)
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    frames = screen.read_text().split("\x1b[H")[1:]
    assert len(frames) >= 4
    assert all(frame.endswith("\x1b[J") for frame in frames[:-1])  # the rest of the old frame is cleared
    assert all(line.endswith("\x1b[K") for line in frames[0].split("\n")[:-1])  # and each line's old tail
    assert "\x1b[2J" not in screen.read_text()  # never blanked per frame (not even once: not a terminal)
    assert all("events/s" in frame for frame in frames[:-1])


@pytest.mark.servers
def test_signals_of_running_connectors_and_a_job_that_is_not_running(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path, capsys):  # noqa: F811
    """`ctxsync connect all` (B's connector endpoints) on the profile's ports, fed views and history records
    as the job writes them; `ctxsync signals` shows what they wrote, and the job's port as down."""
    prefix = f"sig{unique}"
    job, config = prepare(servers, monkeypatch, prefix)
    ensure_topics(config, [TopicSpec(f"{prefix}.{kind}", 2) for kind in ("views", "history", "violations", "dlq")])
    monkeypatch.setenv("CTXSYNC_HOME", str(tmp_path / "home"))  # where the connectors announce their ports
    path = jobs_file(tmp_path, free_port(), {"redis": 0, "elasticsearch": 0}, job=job, profile="local")
    connector = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "connect", "all", "--profile", "local",
                                  "--jobs", str(path)], cwd=ROOT,
                                 env={**os.environ, "CTXSYNC_DEV_DIR": str(servers.run_dir)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = producer(config)
        users = [f"u{n}-{unique}" for n in range(5)]
        for n, user in enumerate(users):
            doc = event(eventId=f"{unique}-{n}", contextDelta__userId=user)
            view = {"key": f"behavioral:{user}", "category": "behavioral", "userId": user, "version": 1,
                    "updatedAt": doc["timestamp"], "attributes": {}, "targetModels": []}
            out.produce(f"{prefix}.views", key=view["key"].encode(), value=orjson.dumps(view))
            history = {**doc, "aggregates": [view["key"]], "applied": ["segment"], "stale": [], "violation": False,
                       "conflict": False}
            out.produce(f"{prefix}.history", value=orjson.dumps(history))
        assert out.flush(10) == 0
        args = ["signals", "--profile", "local", "--jobs", str(path), "--interval", "200ms"]
        deadline = time.monotonic() + 120
        while True:
            code = cli.main(args + ["--json"])
            data = json.loads(capsys.readouterr().out or "{}")
            written = {name: c["records"].get("written") for name, c in data.get("connectors", {}).items()}
            # lag is refreshed every 5 s for the partitions the group assigned: it may follow the writes
            lagging = {(lag["connector"], lag["topic"]) for lag in data.get("lag", [])}
            if code == 0 and written == {"redis": 5, "elasticsearch": 5} and \
                    lagging >= {("redis", f"{prefix}.views"), ("elasticsearch", f"{prefix}.history")}:
                break
            assert time.monotonic() < deadline and connector.poll() is None, (code, data)
            time.sleep(0.5)
        assert data["down"] == ["job"] and (data["job"], data["profile"]) == ("context-sync", "local")
        assert cli.main(args) == 0
        text = capsys.readouterr().out
        assert "job DOWN (connection refused)" in text and "redis up" in text and "elasticsearch up" in text
        assert "job context-sync  profile local" in text.splitlines()[0]
        assert re.search(r"^redis +\S+ +5 +0 +0 ", text, re.M) and re.search(r"^elasticsearch +\S+ +5 ", text, re.M)
    finally:
        connector.send_signal(signal.SIGINT)
        connector.communicate(timeout=30)

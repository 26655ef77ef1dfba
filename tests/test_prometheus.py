"""A real Prometheus (the fixture, the `dev` server) scraping real endpoints; the alert rules checked by promtool."""
from __future__ import annotations

import json
import re
import subprocess
import threading

import yaml
from prometheus_client import CollectorRegistry, Counter, start_http_server

from ctxsync.cli import main
from ctxsync.config import resolve_job
from ctxsync.metric_names import CONNECTOR_METRICS, HISTOGRAM_PARTS, JOB_METRICS, job_series
from ctxsync.prometheus import ALERT_RULES, api, profile_targets
from ctxsync.servers import LocalServers, free_port
from tests.fixtures_prometheus import RunningPrometheus, prometheus  # noqa: F401
from tests.fixtures_servers import redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT
from tests.published import events_file, published
from tests.test_cli_errors import ctxsync


def test_prometheus_scrapes_a_target_and_answers_queries(prometheus) -> None:  # noqa: F811
    registry = CollectorRegistry()
    counter = Counter("ctxsync_fixture_probe", "a probe", ["kind"], registry=registry)
    counter.labels("a").inc(3)
    counter.labels("b").inc(5)
    port = free_port()
    server, _ = start_http_server(port, "127.0.0.1", registry)
    try:
        prom = prometheus({"probe": [f"127.0.0.1:{port}"]})
        assert [t["labels"]["job"] for t in prom.targets_up()] == ["probe"]
        result = prom.wait_for("ctxsync_fixture_probe_total", lambda r: len(r) == 2)
        by_kind = {dict(labels)["kind"]: value for labels, value in result.items()}
        assert by_kind == {"a": 3.0, "b": 5.0}
    finally:
        server.shutdown()


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(ALERT_RULES)], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=ALERT_RULES.parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_example_config_is_valid_and_scrapes_the_local_profile_ports() -> None:
    path = ALERT_RULES.parent / "prometheus.yml"
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(path.read_text())
    example = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    local = resolve_job(ROOT / "jobs.yaml", "context-sync", []).profile("local").metrics
    assert example == profile_targets(local)
    assert config["rule_files"] == ["alerts.yml"]


def test_dev_up_with_prometheus_scrapes_the_profile_ports_with_the_alert_rules(tmp_path) -> None:
    env = {"CTXSYNC_DEV_DIR": str(tmp_path / "dev")}
    try:
        up = ctxsync("dev", "up", "--with", "prometheus", env=env, timeout=120)
        assert up.returncode == 0, up.stderr
        status = ctxsync("dev", "status", env=env)
        (line,) = [row for row in status.stdout.splitlines() if row.startswith("prometheus")]
        assert " ready " in line
        prom = RunningPrometheus(LocalServers.load(tmp_path / "dev"))
        assert line.endswith(f"prometheus={prom.url}")
        scraped = {t["discoveredLabels"]["__address__"]: t["labels"]["job"] for t in prom.targets(4)}
        assert scraped == {"127.0.0.1:9249": "ctxsync-job", "127.0.0.1:9251": "ctxsync-connectors",
                           "127.0.0.1:9252": "ctxsync-connectors", "127.0.0.1:9253": "ctxsync-verify"}
        (group,) = api(prom.url, "/api/v1/rules")["groups"]
        assert {rule["name"] for rule in group["rules"]} >= {"CtxsyncPropagationP95Above100ms",
                                                             "CtxsyncConsistencyBelow999"}
    finally:
        ctxsync("dev", "down", env=env)


def test_verify_every_serves_the_consistency_ratio_and_the_alert_goes_pending(  # noqa: F811
        servers, redis_client, unique, tmp_path, monkeypatch, prometheus) -> None:  # noqa: F811
    pub = published(f"pm{unique}", servers, tmp_path, monkeypatch)
    pub.publish(events_file(tmp_path / "events.jsonl", events=300, users=20, seed=3))
    pub.connect_redis(redis_client)
    port = free_port()
    prom = prometheus({"ctxsync-verify": [f"127.0.0.1:{port}"]}, rule_files=[ALERT_RULES])
    codes: list[int] = []
    checks = threading.Thread(target=lambda: codes.append(main(
        ["verify", "--jobs", str(pub.jobs), "--every", "1", "--count", "12", "--metrics-port", str(port)])))
    checks.start()
    try:
        ratio = 'ctxsync_consistency_ratio{sink="redis"}'
        assert list(prom.wait_for(ratio, lambda r: bool(r)).values()) == [1.0]
        keys = sorted(redis_client.scan_iter("ctx:*:{*}"))  # view hashes (redis_views.view_key), not streams
        assert len(keys) > 10
        redis_client.delete(keys[0])  # one view lost: below 99.9 % on the next check
        low = prom.wait_for(ratio, lambda r: bool(r) and list(r.values())[0] < 1.0)
        assert 0.9 < list(low.values())[0] < 0.999
        alerts = prom.wait_for('ALERTS{alertname="CtxsyncConsistencyBelow999"}', lambda r: bool(r))
        assert [dict(labels)["alertstate"] for labels in alerts] == ["pending"]  # `for: 5m` not yet over
    finally:
        checks.join(60)
    assert codes == [1]  # the last check still finds the lost view


DASHBOARD = ROOT / "deploy" / "grafana" / "ctxsync.json"
FLINK_BUILTINS = {"flink_taskmanager_Status_JVM_CPU_Load", "flink_taskmanager_Status_JVM_Memory_Heap_Used",
                  "flink_taskmanager_Status_JVM_Memory_Heap_Max"}
PROMQL_WORDS = {"sum", "max", "min", "by", "rate", "delta", "deriv", "histogram_quantile", "and", "le"}


def known_metrics() -> set[str]:
    """Every series name our rules and panels may use: the catalogue as exposed, plus Flink's built-ins."""
    names = set(FLINK_BUILTINS) | {"up"}
    for metric in CONNECTOR_METRICS:
        names |= {metric.name} | ({f"{metric.name}_{s}" for s in ("bucket", "sum", "count")}
                                  if metric.kind == "histogram" else set())
    for metric in JOB_METRICS:  # as Flink's reporter exposes them (job_series)
        parts = [metric.name + part for part in HISTOGRAM_PARTS] if metric.kind == "histogram" else [metric.name]
        names |= {job_series(part) for part in parts}
    return names


def series_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers outside {...}, [...] and quotes, minus keywords."""
    bare = re.sub(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"', " ", expr)
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", " ", bare)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)} - PROMQL_WORDS


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_dashboard_has_a_panel_per_signal_using_only_known_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for signal in ("Throughput", "Propagation", "lag", "Dead letters", "violations", "Consistency", "Resource use"):
        assert any(signal in title for title in titles), (signal, titles)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    rules = [rule["expr"] for group in yaml.safe_load(ALERT_RULES.read_text())["groups"] for rule in group["rules"]]
    known = known_metrics()
    for expr in dashboard_exprs() + rules:
        assert series_names(expr) and series_names(expr) <= known, (expr, series_names(expr) - known)


def test_every_dashboard_query_is_valid_promql_for_a_real_prometheus(prometheus) -> None:  # noqa: F811
    prom = prometheus({})
    for expr in dashboard_exprs():
        prom.query(expr)  # raises (RuntimeFailure with Prometheus' parse error) on invalid PromQL
    assert series_names("sum by (le) (rate(x_bucket{a=\"b\"}[1m]))") == {"x_bucket"}

"""Prometheus for the local profile and the tests: its scrape config, generated from the profile's metric
endpoints, and a small client for its HTTP query API.

One config generator for `ctxsync dev up --with prometheus` and the test fixture, so the tests scrape the
way a developer's Prometheus does (1 s interval on loopback, the alert rules of deploy/prometheus loaded).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ctxsync.errors import RuntimeFailure

CONFIG_FILE = "prometheus.yml"  # in the dev run dir, next to the server's data dir
ALERT_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"
VERIFY_PORT = 9253  # where `ctxsync verify --every ... --metrics-port 9253` serves the consistency ratio


def profile_targets(metrics: Any, verify_port: int = VERIFY_PORT) -> dict[str, list[str]]:
    """Scrape job -> `host:port` targets of a profile's fixed MetricsEndpoints (ports off, and ports 0 that
    are chosen at start and announced for `ctxsync signals` only, are left out)."""
    host, targets = metrics.host, {}
    if metrics.job_port:
        targets["ctxsync-job"] = [f"{host}:{metrics.job_port}"]
    connectors = [f"{host}:{port}" for port in metrics.connector_ports.values() if port]
    if connectors:
        targets["ctxsync-connectors"] = connectors
    if verify_port:
        targets["ctxsync-verify"] = [f"{host}:{verify_port}"]
    return targets


def scrape_config(targets: Mapping[str, Iterable[str]], interval_s: float = 1.0,
                  rule_files: Iterable[Path] = ()) -> str:
    """prometheus.yml text: one scrape job per entry of `targets`, every `interval_s` seconds.

    JSON is valid YAML, so the config is written with json.dumps: no quoting rules to get wrong.
    """
    interval = f"{int(interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                           for job, hosts in targets.items()],
    }
    return json.dumps(config, indent=2) + "\n"


def write_config(run_dir: Path, targets: Mapping[str, Iterable[str]], interval_s: float = 1.0,
                 rule_files: Iterable[Path] = (ALERT_RULES,)) -> Path:
    """Write the config the `prometheus` server of a LocalServers run dir starts with."""
    path = Path(run_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(scrape_config(targets, interval_s, [p for p in rule_files if Path(p).exists()]))
    return path


def api(base_url: str, path: str, params: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> Any:
    """GET a Prometheus API path (e.g. `/api/v1/query`) and return its `data`, or fail in one line."""
    url = base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except OSError as exc:
        raise RuntimeFailure(f"Prometheus at {base_url} is unreachable: {exc}",
                             "start it with `ctxsync dev up --with prometheus`") from exc
    if body.get("status") != "success":
        raise RuntimeFailure(f"Prometheus refused {path}: {body.get('error', body)}")
    return body["data"]


def query(base_url: str, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant query: {sorted label pairs (without __name__): value} of each series of the result."""
    data = api(base_url, "/api/v1/query", {"query": expr})
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    return {tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__")): float(item["value"][1])
            for item in data["result"]}

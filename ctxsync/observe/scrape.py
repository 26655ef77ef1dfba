"""Scraping the Prometheus text endpoints of the job (Flink's reporter) and of the connectors.

A scrape never raises: an endpoint that is down, refuses, times out or serves something that is not the
text format comes back as a `Scrape` with `error` set, so a status view can show it as down next to the
ones that answer.
"""
from __future__ import annotations

import time
from collections import Counter
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from ctxsync.config import MetricsEndpoints
from ctxsync.observe.announce import announcements

JOB = "job"


class Endpoint(NamedTuple):
    name: str   # "job" or the connector kind ("redis", "elasticsearch")
    url: str


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Scrape:
    endpoint: Endpoint
    at: float                                   # time.monotonic() when the answer arrived
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None                    # why the endpoint counts as down

    @property
    def up(self) -> bool:
        return self.error is None


def endpoints(metrics: MetricsEndpoints, job: str, profile: str) -> list[Endpoint]:
    """The profile's fixed ports (the job first, then the connectors by name), then what running processes
    announced for this job and profile (ports chosen at start: 0 in the profile), each URL once. A kind
    announced by several copies is named `kind@pid` for each."""
    ports = [(JOB, metrics.job_port)] + sorted(metrics.connector_ports.items())
    found = [Endpoint(name, f"http://{metrics.host}:{port}/metrics") for name, port in ports if port]
    live = announcements(job, profile)
    copies = Counter(a.name for a in live)
    urls = {e.url for e in found}
    found += [Endpoint(a.name if copies[a.name] == 1 else f"{a.name}@{a.pid}", a.url)
              for a in live if a.url not in urls]
    return found


def has_endpoints(metrics: MetricsEndpoints) -> bool:
    """Whether the profile serves any endpoint at all (a port, fixed or chosen at start)."""
    return metrics.job_port is not None or any(p is not None for p in metrics.connector_ports.values())


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (ValueError if it is not one)."""
    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def scrape(endpoint: Endpoint, timeout_s: float = 2.0) -> Scrape:
    """One scrape of one endpoint; failures are described in `error`, never raised."""
    try:
        with urllib.request.urlopen(endpoint.url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
        return Scrape(endpoint, time.monotonic(), parse(text))
    except urllib.error.HTTPError as exc:
        return Scrape(endpoint, time.monotonic(), error=f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        return Scrape(endpoint, time.monotonic(), error=_reason(exc.reason))
    except (OSError, ValueError) as exc:  # timeouts, resets; a body that is not the text format
        return Scrape(endpoint, time.monotonic(), error=_reason(exc))


def scrape_all(targets: list[Endpoint], timeout_s: float = 2.0) -> list[Scrape]:
    return [scrape(target, timeout_s) for target in targets]


def _reason(exc: object) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text.splitlines()[0][:80] if text else type(exc).__name__

"""`ctxsync dev up|down|status`: the loopback servers of the `local` profile.

redis-server (Debian package), Apache Kafka (one KRaft broker, jars from Maven Central: deploy/kafka/pom.xml)
and noida-db (for its Elasticsearch API only, from PyPI), each on a free 127.0.0.1 port. State, logs and
data live in $CTXSYNC_DEV_DIR (default ./.ctxsync/dev, relative to where you run it); `${dev:kafka}` etc. in
jobs.yaml resolve to them. Starting takes 5-10 s (Kafka's JVM; its first start also formats its log dir);
ports are picked once and kept.

--with prometheus starts Debian's Prometheus, scraping every second the metric ports of jobs.yaml's local
profile (`metrics:`; defaults: job 9249, connectors 9251 and 9252) and `ctxsync verify --metrics-port 9253`,
with the alert rules of deploy/prometheus/alerts.yml; its UI is the `prometheus=` URL of `dev status`.

--search opensearch starts a real OpenSearch 2.19 node (jars from Maven Central: deploy/opensearch/pom.xml;
512 MB heap, 5-40 s) instead of noida-db; jobs.yaml's `local-opensearch` profile uses it (docs/search.md).

--with registry starts Apicurio Registry (built once from Maven Central: deploy/registry/pom.xml; 384 MB heap,
4-15 s), a schema registry with the Confluent-compatible API: its URL is `${dev:registry}` and the `registry=`
URL of `dev status`; `ctxsync schema` and Avro sources with `registry:` use it (docs/schemas.md).

examples:
  ctxsync dev up                 # start Redis, Kafka and noida-db (Elasticsearch API)
  ctxsync dev up --with prometheus  # and Prometheus scraping the job and the connectors
  ctxsync dev up --search opensearch  # OpenSearch instead of noida-db for the history
  ctxsync dev up --with registry    # and a schema registry for versioned Avro events
  ctxsync dev status             # ready / stopped, pids, endpoints
  ctxsync dev down --reset       # stop, and delete their data
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ctxsync.prometheus import profile_targets, write_config
from ctxsync.servers import DEFAULT_SERVICES, SERVICES, LocalServers, default_run_dir

if TYPE_CHECKING:
    from ctxsync.config import MetricsEndpoints


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="start/stop the local servers (Redis, Kafka, Elasticsearch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--with", dest="extra", action="append", default=[], choices=[s for s in SERVICES
                   if s not in (*DEFAULT_SERVICES, "opensearch")],
                   help="also start prometheus (scraping the metric ports) or registry (a schema registry); "
                        "repeatable")
    p.add_argument("--search", choices=("elasticsearch", "opensearch"), default="elasticsearch",
                   help="the history's search engine: noida-db's Elasticsearch API (default) or OpenSearch")
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"),
                   help="with --with prometheus: jobs file whose local profile's metric ports to scrape "
                        "(default: jobs.yaml; its defaults when the file does not exist)")
    p.add_argument("--reset", action="store_true", help="with down: also delete the servers' data")
    p.set_defaults(func=run)


def _print_status(local: LocalServers) -> int:
    rows = local.status()
    if not rows:
        print(f"no local servers recorded in {local.run_dir} (start them with `ctxsync dev up`)")
        return 1
    for server, alive, ready in rows:
        state = "ready" if ready else ("starting/unresponsive" if alive else "stopped")
        where = "  ".join(f"{k}={v}" for k, v in server.endpoints.items())
        print(f"{server.name:<10} {state:<22} pid {server.pid or '-':<8} {where}")
    return 0 if all(alive and ready for _, alive, ready in rows) else 1


def _local_metrics(jobs: Path) -> "MetricsEndpoints":
    """The `metrics:` endpoints of the local profile of context-sync in `jobs`, or the defaults."""
    from ctxsync.config import MetricsEndpoints, resolve_job

    if not jobs.exists():
        return MetricsEndpoints()
    return resolve_job(jobs, "context-sync", []).profile("local").metrics


def run(args: argparse.Namespace) -> int:
    local = LocalServers.load(default_run_dir())
    if args.action == "up":
        if "prometheus" in args.extra:
            write_config(local.run_dir, profile_targets(_local_metrics(args.jobs)))
        search = ["noida"] if args.search == "elasticsearch" else ["opensearch"]
        local.up([*(s for s in DEFAULT_SERVICES if s != "noida"), *search, *args.extra])
        _print_status(local)
        print(f"\nstate, logs and data: {local.run_dir}/   stop with: ctxsync dev down")
        return 0
    if args.action == "down":
        local.down()
        if args.reset and local.run_dir.exists():
            shutil.rmtree(local.run_dir)
        print("local servers stopped" + (" and their data deleted" if args.reset else " (data kept)"))
        return 0
    return _print_status(local)

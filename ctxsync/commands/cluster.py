"""`ctxsync cluster up|down|status`: a Flink standalone session cluster on loopback (from pyflink/bin)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ctxsync.cluster import Cluster, default_home

DESCRIPTION = """\
A Flink session cluster on 127.0.0.1, started from the scripts shipped inside the pyflink package: one
JobManager and N TaskManagers, no ssh, no Docker. Its config, logs, pid files, checkpoints and savepoints
live under --home (default ~/.cache/ctxsync/cluster, or $CTXSYNC_CLUSTER_HOME). It needs about 1.5 GB of
memory and 15-60 s to start, depending on the machine's load.

examples:
  ctxsync cluster up                 start it, print the web UI address
  ctxsync submit context-sync --profile local --dev-dir .ctxsync/dev
  ctxsync cluster status             TaskManagers, slots, jobs
  ctxsync cluster down               stop it (checkpoints and savepoints are kept under --home)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="start/stop a local Flink session cluster",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--home", type=Path, help=f"state dir (default: {default_home()})")
    p.add_argument("--taskmanagers", type=int, default=1, help="TaskManagers to start (up; default 1)")
    p.add_argument("--slots", type=int, default=2, help="slots per TaskManager (up; default 2)")
    p.add_argument("--checkpoint-interval", default="2s", help="cluster default checkpoint interval, a Flink duration such as 2s or 500ms (up; default 2s)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="expose Flink's and the jobs' metrics for Prometheus: the JobManager and each TaskManager "
                        "take a free port of PORT..PORT+taskmanagers (up; default 0: off)")
    p.add_argument("--json", action="store_true", help="status as JSON (exit 3 when no cluster answers)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cluster = Cluster.load(args.home)
    if args.action == "up":
        return _up(cluster, args)
    if args.action == "down":
        cluster.down()
        print(f"cluster stopped (state kept in {cluster.home})")
        return 0
    return _status(cluster, args.json)


def _up(cluster: Cluster, args: argparse.Namespace) -> int:
    if not cluster.pids("standalonesession"):
        cluster.spec.taskmanagers, cluster.spec.slots = args.taskmanagers, args.slots
        cluster.spec.checkpoint_interval = args.checkpoint_interval
        cluster.spec.metrics_port = args.metrics_port
    start = time.monotonic()
    print(f"starting Flink (JobManager + {cluster.spec.taskmanagers} TaskManager(s)) under {cluster.home} ...",
          flush=True)
    cluster.up()
    print(f"cluster ready in {time.monotonic() - start:.0f}s")
    print(f"  web UI / REST:  {cluster.url}")
    print(f"  --jobmanager    {cluster.address}")
    print(f"  logs:           {cluster.log_dir}")
    if cluster.spec.metrics_port:
        last = cluster.spec.metrics_port + cluster.spec.taskmanagers
        print(f"  metrics:        ports {cluster.spec.metrics_port}-{last}, path /metrics (Prometheus)")
    print(f"  checkpoints:    {cluster.home / 'checkpoints'}")
    print(f"  savepoints:     {cluster.home / 'savepoints'}")
    return 0


def _status(cluster: Cluster, as_json: bool) -> int:
    info = cluster.status()
    if as_json:
        print(json.dumps(info, indent=2))
        return 0 if info["running"] else 3
    if not info["running"]:
        print(f"no cluster answering at {info['web_ui']} (home {info['home']})")
        return 3
    o = info["overview"]
    print(f"Flink {o['flink-version']} at {info['web_ui']}  (home {info['home']})")
    print(f"  TaskManagers {o['taskmanagers']} (pids {info['taskmanager_pids']}), "
          f"slots {o['slots-available']}/{o['slots-total']} free")
    for job in info["jobs"]:
        print(f"  {job['jid']}  {job['state']:<10} {job['name']}")
    return 0

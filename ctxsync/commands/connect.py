"""`ctxsync connect redis|elasticsearch|all`: run the sink connectors on their own (production).

They consume the job's topics with read_committed and commit offsets only after a batch is written, so
they can be stopped, restarted or scaled (same group id) at any time without losing or duplicating state.

examples:
  ctxsync connect all                          # both, until Ctrl-C
  ctxsync connect redis --until-caught-up      # one pass to the topics' ends, then stop
  ctxsync connect elasticsearch --profile prod # endpoints from CTXSYNC_* variables
  ctxsync connect all --metrics-port 9300       # metrics of redis on :9300, elasticsearch on :9301

metrics: each connector serves Prometheus metrics at http://HOST:PORT/metrics (the profile's `metrics:`
host and connector_ports, by default 127.0.0.1:9251 for redis and :9252 for elasticsearch): records by
outcome, write time, consumer lag per partition (refreshed every 5 s), dead-letter topic size, and
propagation latency = the record's event time (a view's updatedAt, a history record's timestamp) to its
write in the sink, sampled up to 100 records per batch. Event time, not produce time: replaying old
events shows as large latencies.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading

from ctxsync.commands.profile_args import add_profile_args, profile_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("connect", help="run the Redis / Elasticsearch sink connectors",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=("redis", "elasticsearch", "all"))
    p.add_argument("--until-caught-up", action="store_true", help="stop once every partition is read to its end")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve metrics on PORT (with `all`: redis on PORT, elasticsearch on PORT+1); "
                        "0 = no metrics; default: the profile's metrics.connector_ports (9251, 9252), "
                        "none with --until-caught-up (a bounded run ends before Prometheus scrapes it)")
    add_profile_args(p, "endpoints")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.connector_metrics import serve_metrics
    from ctxsync.io.connectors import profile_connectors, run_all

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    profile = profile_from_args(args)
    which = ("redis", "elasticsearch") if args.target == "all" else (args.target,)
    connectors = profile_connectors(profile, which)
    if args.metrics_port is None:
        ports = {} if args.until_caught_up else profile.metrics.connector_ports
    else:
        ports = {name: args.metrics_port + i if args.metrics_port else 0 for i, name in enumerate(connectors)}
    served = serve_metrics(connectors, profile.metrics.host, ports)
    stop = threading.Event()
    try:
        stats = run_all(connectors, args.until_caught_up, stop)
    except KeyboardInterrupt:
        stop.set()
        stats = {name: c.stats for name, c in connectors.items()}
    finally:
        for metrics in served:
            metrics.close()
    for name, s in stats.items():
        print(f"{name}: {s.consumed:,} records, {s.written:,} written, {s.skipped:,} not newer, "
              f"{s.dead_lettered:,} dead-lettered, {s.retries} retries, {s.rate():,.0f} records/s")
    return 0

"""`ctxsync connect redis|elasticsearch|all`: run the sink connectors on their own (production).

They consume the job's topics with read_committed and commit offsets only after a batch is written, so
they can be stopped, restarted or scaled at any time without losing or duplicating state: copies of a
connector form a consumer group and split the partitions. Ctrl-C or SIGTERM commits what is written and
leaves the group, so the other copies take its partitions at once; a copy killed with -9 keeps them until
its session expires (10 s), and its last uncommitted batch is written again (a no-op).

examples:
  ctxsync connect all                          # both, until Ctrl-C
  ctxsync connect redis --until-caught-up      # one pass to the topics' ends, then stop
  ctxsync connect elasticsearch --profile prod # endpoints from CTXSYNC_* variables
  ctxsync connect all --metrics-port 9300       # metrics of redis on :9300, elasticsearch on :9301
  ctxsync connect redis --metrics-port 0        # a free port, found by `ctxsync signals` (copies never collide)
  ctxsync connect redis -v                     # also log each batch's partitions and offsets

metrics: each connector serves Prometheus metrics at http://HOST:PORT/metrics (the profile's `metrics:`
host and connector_ports, by default 127.0.0.1:9251 for redis and :9252 for elasticsearch; a port 0 takes a
free one and announces it for `ctxsync signals --job J --profile P`): records by
outcome, write time, consumer lag per partition (refreshed every 5 s), dead-letter topic size, and
propagation latency = the record's event time (a view's updatedAt, a history record's timestamp) to its
write in the sink, sampled up to 100 records per batch. Event time, not produce time: replaying old
events shows as large latencies.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import ExitStack

from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from ctxsync.observe.announce import announced

OFF = -1  # --metrics-port off


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("connect", help="run the Redis / Elasticsearch sink connectors",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=("redis", "elasticsearch", "all"))
    p.add_argument("--until-caught-up", action="store_true", help="stop once every partition is read to its end")
    p.add_argument("--metrics-port", type=_port, metavar="PORT",
                   help="serve metrics on PORT (with `all`: redis on PORT, elasticsearch on PORT+1); 0 = free "
                        "ports, announced for `ctxsync signals`; off = no metrics; default: the profile's "
                        "metrics.connector_ports (9251, 9252), none with --until-caught-up (a bounded run "
                        "ends before Prometheus scrapes it)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every batch's partitions and offsets (which copy wrote what)")
    add_profile_args(p, "endpoints")
    p.set_defaults(func=run)


def _port(text: str) -> int:
    """A port number, 0 (a free one) or `off` (no metrics)."""
    if text == "off":
        return OFF
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port, 0 or off, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.connector_metrics import serve_metrics
    from ctxsync.io.clients import kafka_config
    from ctxsync.io.connectors import profile_connectors, run_all
    from ctxsync.io.kafka_io import check_reachable, check_topics_authorized

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.verbose:
        logging.getLogger("ctxsync.io.connectors").setLevel(logging.DEBUG)
    profile = profile_from_args(args)
    which = ("redis", "elasticsearch") if args.target == "all" else (args.target,)
    config = kafka_config(profile)
    check_reachable(config)  # a refused login or certificate: one line now, not retries for ever
    connectors = profile_connectors(profile, which)
    check_topics_authorized(config, sorted({topic for c in connectors.values() for topic in c.topics}))
    ports: dict[str, int | None]
    if args.metrics_port is None:
        ports = {} if args.until_caught_up else dict(profile.metrics.connector_ports)
    elif args.metrics_port == OFF:
        ports = {}
    else:
        ports = {name: args.metrics_port + i if args.metrics_port else 0 for i, name in enumerate(connectors)}
    served = serve_metrics(connectors, profile.metrics.host, ports)
    stop = threading.Event()

    def stop_on(signum: int, _frame: object) -> None:
        """Ctrl-C or SIGTERM (a rolling update, `kill`): the connectors commit what they wrote and leave
        their groups before the process ends; a second signal ends it at once."""
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_on)
    with ExitStack() as running:
        for metrics in served:
            running.callback(metrics.close)
            running.enter_context(announced(args.job, args.profile, metrics.connector,
                                            f"http://{profile.metrics.host}:{metrics.port}/metrics"))
        stats = run_all(connectors, args.until_caught_up, stop)
    for name, s in stats.items():
        print(f"{name}: {s.consumed:,} records, {s.written:,} written, {s.skipped:,} not newer, "
              f"{s.dead_lettered:,} dead-lettered, {s.retries} retries, {s.rate():,.0f} records/s")
    return 0

"""`ctxsync connect redis|elasticsearch|all`: run the sink connectors on their own (production).

They consume the job's topics with read_committed and commit offsets only after a batch is written, so
they can be stopped, restarted or scaled (same group id) at any time without losing or duplicating state.

examples:
  ctxsync connect all                          # both, until Ctrl-C
  ctxsync connect redis --until-caught-up      # one pass to the topics' ends, then stop
  ctxsync connect elasticsearch --profile prod # endpoints from CTXSYNC_* variables
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
    add_profile_args(p, "endpoints")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.connectors import profile_connectors, run_all

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    profile = profile_from_args(args)
    which = ("redis", "elasticsearch") if args.target == "all" else (args.target,)
    connectors = profile_connectors(profile, which)
    stop = threading.Event()
    try:
        stats = run_all(connectors, args.until_caught_up, stop)
    except KeyboardInterrupt:
        stop.set()
        stats = {name: c.stats for name, c in connectors.items()}
    for name, s in stats.items():
        print(f"{name}: {s.consumed:,} records, {s.written:,} written, {s.skipped:,} not newer, "
              f"{s.dead_lettered:,} dead-lettered, {s.retries} retries, {s.rate():,.0f} records/s")
    return 0

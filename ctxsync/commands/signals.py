"""`ctxsync signals [--watch]`: the live signals of the running job and connectors in the terminal.

Named `signals`, not `status`: `ctxsync status` already lists the jobs of a Flink cluster (submit.py)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from ctxsync.config import duration_ms
from ctxsync.errors import RuntimeFailure, UsageError

HOME, CLEAR_LINE, CLEAR_BELOW, CLEAR_SCREEN = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "signals", help="live signals of the running job and connectors (throughput, latency, lag, DLQ)",
        description="Scrape the Prometheus endpoints of the running job --job (Flink's reporter, "
                    "metrics.job_port of the profile, default 9249) and of the connectors "
                    "(metrics.connector_ports, default redis 9251, elasticsearch 9252) twice, --interval "
                    "apart, and show: throughput (events/s), views emitted, event lag p95, ordering "
                    "violations, conflicts, dead letters by reason, per connector records/s and p95 "
                    "propagation latency (source event time -> applied in Redis / indexed in ES; red above "
                    "the 100 ms target), consumer lag per partition, dead-letter topic growth, and which "
                    "endpoints are down. Ports set to 0 in the profile are chosen when the job or connector "
                    "starts and found where it announced them ($CTXSYNC_HOME/metrics/<job>/<profile>/).\n\n"
                    "Exit 1 when no endpoint answers (nothing is running, or metrics are off in the profile).\n\n"
                    "examples:\n"
                    "  ctxsync signals                       # one snapshot, two scrapes 1 s apart\n"
                    "  ctxsync signals --watch               # redrawn in place every 2 s, Ctrl-C to leave\n"
                    "  ctxsync signals --watch --interval 500ms\n"
                    "  ctxsync signals --json | jq .connectors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--watch", action="store_true", help="redraw in place until Ctrl-C")
    p.add_argument("--interval", type=_interval, default=None, metavar="DURATION",
                   help="time between scrapes, e.g. 2s, 500ms (default: 2s with --watch, else 1s)")
    p.add_argument("--timeout", type=_interval, default=2.0, metavar="DURATION",
                   help="per-endpoint scrape timeout (default: 2s)")
    p.add_argument("--json", action="store_true", help="one JSON object (with --watch: one per refresh)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="ANSI colors: auto = when stdout is a terminal (default)")
    add_profile_args(p, "metrics endpoints")
    p.set_defaults(func=run)


def _interval(text: str) -> float:
    try:
        value = duration_ms(text) / 1000
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from ctxsync.observe.render import lines
    from ctxsync.observe.scrape import endpoints, has_endpoints, scrape_all
    from ctxsync.observe.signals import compute

    profile = profile_from_args(args)
    if not has_endpoints(profile.metrics):
        raise UsageError(f"job {args.job!r} profile {args.profile!r} has every metrics endpoint off",
                         "set metrics.job_port / metrics.connector_ports in jobs.yaml (a port, or 0 for a free one)")
    targets = endpoints(profile.metrics, args.job, args.profile)
    if not targets:
        raise RuntimeFailure(f"job {args.job!r} profile {args.profile!r}: nothing running announced a metrics "
                             "endpoint (its ports are 0: chosen at start)",
                             f"start it: `ctxsync run {args.job} --profile {args.profile}` or `ctxsync connect`")
    interval = args.interval or (2.0 if args.watch else 1.0)
    color = not args.json and (args.color == "always" or (args.color == "auto" and sys.stdout.isatty()))
    title = f"ctxsync signals  job {args.job}  profile {args.profile}"

    before = scrape_all(targets, args.timeout)
    if not args.watch:
        if not any(s.up for s in before):
            raise RuntimeFailure(f"no metrics endpoint answers ({_addresses(before)})",
                                 "is the job or a connector running? `ctxsync run ... --profile "
                                 f"{args.profile}` and `ctxsync connect` serve them")
        time.sleep(interval)
        status = compute(before, scrape_all(targets, args.timeout))
        if args.json:
            print(json.dumps({"at": _now(), "job": args.job, "profile": args.profile, **status.to_json()}))
        else:
            print("\n".join(lines(status, f"{title}  {_now()}", color)))
        return 0

    if not args.json and sys.stdout.isatty():
        sys.stdout.write(HIDE_CURSOR + CLEAR_SCREEN)
    try:
        while True:
            time.sleep(interval)
            after = scrape_all(targets, args.timeout)
            status = compute(before, after)
            before = after
            if args.json:
                print(json.dumps({"at": _now(), "job": args.job, "profile": args.profile, **status.to_json()}),
                      flush=True)
            else:
                _redraw(lines(status, f"{title}  {_now()}  (Ctrl-C to leave)", color))
    finally:
        if not args.json and sys.stdout.isatty():
            sys.stdout.write(SHOW_CURSOR + "\n")
            sys.stdout.flush()


def _redraw(screen: list[str]) -> None:
    """Overwrite the previous screen from the top-left corner, line by line, then clear what is left
    below: nothing is ever blanked first, so the view does not flicker."""
    sys.stdout.write(HOME + "".join(line + CLEAR_LINE + "\n" for line in screen) + CLEAR_BELOW)
    sys.stdout.flush()


def _addresses(scrapes: list) -> str:
    return ", ".join(f"{s.endpoint.name} {s.endpoint.url}: {s.error}" for s in scrapes)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

"""`ctxsync as-of --user U --at T`: a user's views as they were at a past moment, rebuilt from the history."""
from __future__ import annotations

import argparse
import sys

from ctxsync.commands.arg_types import iso_time_ms
from ctxsync.commands.profile_args import add_profile_args
from ctxsync.commands.view import print_views
from transforms.timestamps import format_iso_ms

DESCRIPTION = """\
Print a user's views as they were at time T, rebuilt from the `context.history` topic.

Event time (default): the views the job would hold had every accepted event with timestamp <= T arrived in
(timestamp, eventId) order; a late event counts at its own time and nothing after T leaks in (what a
training example at T may see). With --seen-by M: what model M could have read at T (wall-clock time):
only what the job had written by T (Kafka timestamps of the history records, written in the same
transaction as the views), as the job really applied it, and only views that list M in targetModels.
Exit 1 when the user had no view then.

examples:
  ctxsync as-of --user user-00042 --at 2026-11-24T09:00:00Z
  ctxsync as-of --user user-00042 --at 2026-11-24T09:00:00Z --category financial --json
  ctxsync as-of --user user-00042 --at 2026-12-02T20:15:00Z --seen-by churn-predictor
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("as-of", help="a user's views as they were at time T (from the history)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True, help="userId")
    p.add_argument("--at", required=True, type=iso_time_ms, metavar="T",
                   help="the moment, ISO-8601 with a zone (inclusive: events at exactly T count)")
    p.add_argument("--category", help="only this category (e.g. financial)")
    p.add_argument("--seen-by", metavar="M", help="what model M could have read at T (write time, not event time)")
    p.add_argument("--json", action="store_true", help="print the views as JSON lines")
    add_profile_args(p, "Kafka")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.config import resolve_job, resolve_profile
    from ctxsync.consistency.as_of import views_as_of
    from ctxsync.io.clients import kafka_config, kafka_sink
    from ctxsync.io.history_topic import read_history
    from ctxsync.io.kafka_io import check_reachable
    from ctxsync.privacy_lookup import Opened, privacy_lookup
    from ctxsync.servers import running_endpoints

    job = resolve_job(args.jobs, args.job, [])
    profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
    config = kafka_config(profile)
    check_reachable(config)
    records = read_history(config, kafka_sink(profile).topics.history)
    lookup, shredded = privacy_lookup(job, profile), Opened()
    user = args.user
    if lookup:  # privacy on: the history names the user by token, with values encrypted
        records, user = lookup.open_history(records, shredded, args.user), lookup.token(args.user)
    views = views_as_of(records, job.settings.to_settings(), args.at, user, args.category, args.seen_by)
    if lookup:
        views = list(lookup.clear_views({v["key"]: v for v in views}, [args.user]).values())
    if shredded.shredded:
        print(f"{shredded.shredded:,} history records of {args.user!r} left out: encrypted under a data key that "
              "is gone (the user was erased)", file=sys.stderr)
    clock = f"seen by {args.seen_by} at" if args.seen_by else "at event time"
    if not views:
        print(f"no views for user {args.user!r} {clock} {format_iso_ms(args.at)}"
              + (f" in category {args.category!r}" if args.category else ""))
        return 1
    moment = f"{clock} {format_iso_ms(args.at)}"
    print_views(views, args.json, lambda view: moment)
    return 0

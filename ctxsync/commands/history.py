"""`ctxsync history --user U`: an analyst's timeline of a user's accepted events, from Elasticsearch."""
from __future__ import annotations

import argparse
import json

from ctxsync.commands.arg_types import iso_time_ms, positive_int
from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from transforms.timestamps import format_iso_ms


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="a user's event timeline from Elasticsearch",
                       description="Print the accepted events of a user, oldest first, with what happened to "
                                   "each (applied/stale attributes, ordering violation, conflict). Exit 1 "
                                   "when nothing matches. With privacy on (docs/security.md), the user is "
                                   "searched by token and values are shown decrypted: that needs the "
                                   "profile's master key.\n\nexamples:\n"
                                   "  ctxsync history --user user-00042\n"
                                   "  ctxsync history --user user-00042 --attr segment --since 2026-11-24T08:00:00Z\n"
                                   "  ctxsync history --user user-00042 --model risk-model --json --limit 50\n"
                                   "  ctxsync history --user user-00042 --session sess-7 --profile local-opensearch",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True, help="userId")
    p.add_argument("--since", metavar="T", type=iso_time_ms, help="only events at or after T (ISO-8601 with a zone, e.g. 2026-11-24T08:00:00Z)")
    p.add_argument("--attr", metavar="A", help="only events that touched attribute A")
    p.add_argument("--model", metavar="M", help="only events from source.modelId M")
    p.add_argument("--session", metavar="S", help="only events of contextDelta.sessionId S (not with privacy on: "
                   "session ids are encrypted in the history)")
    p.add_argument("--limit", type=positive_int, default=1000, help="at most this many events (default 1000)")
    p.add_argument("--json", action="store_true", help="print the history records as JSON lines")
    add_profile_args(p, "Elasticsearch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.config import resolve_job
    from ctxsync.io.clients import search_client
    from ctxsync.io.es_history import search_history
    from ctxsync.privacy_lookup import privacy_lookup

    profile = profile_from_args(args)
    lookup = privacy_lookup(resolve_job(args.jobs, args.job, []), profile)
    since = format_iso_ms(args.since) if args.since is not None else None
    user = lookup.token(args.user) if lookup else args.user  # privacy on: the history names users by token
    records = search_history(search_client(profile), user, since, args.attr, args.model, args.limit,
                             args.session)
    if lookup:  # an authorized reader sees clear values (a record of an erased user stays as it is)
        records = [lookup.readable(r) for r in records]
    if not records:
        print(f"no history for user {args.user!r} with these filters")
        return 1
    for r in records:
        if args.json:
            print(json.dumps(r, separators=(",", ":")))
            continue
        updates = r["contextDelta"]["updates"]
        changes = ", ".join(f"{name}={json.dumps(u.get('current'))}" for name, u in updates.items())
        flags = [flag for flag in ("violation", "conflict") if r.get(flag)]
        stale = f" stale: {', '.join(r['stale'])}" if r.get("stale") else ""
        print(f"{r['timestamp']}  {r['source']['modelId']:<22} {r['eventType']:<16} {changes}{stale}"
              + (f"  [{', '.join(flags)}]" if flags else "") + f"  ({r['eventId']})")
    return 0

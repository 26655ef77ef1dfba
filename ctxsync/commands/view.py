"""`ctxsync view USER [--category C]`: the user's context views as models read them from Redis."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ctxsync.commands.profile_args import add_profile_args, profile_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="show a user's context views from Redis",
                       description="Read the views of one user (all categories, or one) from Redis: "
                                   "version, attributes with confidence, source event and model, TTL left. "
                                   "Exit 1 when the user has no view.\n\nexamples:\n"
                                   "  ctxsync view user-00042\n"
                                   "  ctxsync view user-00042 --category financial --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("user", metavar="USER", help="userId")
    p.add_argument("--category", help="only this category (e.g. financial)")
    p.add_argument("--json", action="store_true", help="print the view records as JSON lines")
    add_profile_args(p, "Redis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.clients import redis_client
    from ctxsync.io.redis_views import RedisViewSink, view_key

    profile = profile_from_args(args)
    client = redis_client(profile.redis)
    sink = RedisViewSink(client, profile.redis.prefix)
    if args.category:
        found = sink.read(args.category, args.user)
        views = [found] if found else []
    else:
        views = sink.read_user(args.user)
    if not views:
        print(f"no views for user {args.user!r}" + (f" in category {args.category!r}" if args.category else ""))
        return 1

    def expiry(view: dict[str, Any]) -> str:
        ttl = client.ttl(view_key(sink.prefix, view["category"], view["userId"]))
        return f"expires in {ttl}s" if ttl >= 0 else "no expiry"

    print_views(views, args.json, expiry)
    return 0


def print_views(views: list[dict[str, Any]], as_json: bool, note: Callable[[dict[str, Any]], str]) -> None:
    """Views as JSON lines, or as the readable block `view` and `as-of` share (`note`: what the header's
    parenthesis says of a view, e.g. its expiry)."""
    for view in views:
        if as_json:
            print(json.dumps(view, separators=(",", ":")))
            continue
        print(f"{view['key']}  version {view['version']}  updated {view['updatedAt']}  ({note(view)})")
        for name, a in view["attributes"].items():
            print(f"  {name:<18} {json.dumps(a['value']):<24} confidence {a['confidence']:<6} "
                  f"{a['updatedAt']}  {a['modelId']}  {a['eventId']}")
        if view["targetModels"]:
            print(f"  targets: {', '.join(view['targetModels'])}")

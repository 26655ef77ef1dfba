"""`ctxsync snapshot create|list|restore`: every view in one checksummed file, and Redis rebuilt from it."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ctxsync.commands.profile_args import add_profile_args

DESCRIPTION = """\
create   write every view (from Redis, or with --from-topic from the compacted views topic) to
         DIR/NAME.views.zst (zstd JSON Lines) with a manifest DIR/NAME.json: SHA-256, size, view count and
         the views topic's offsets the snapshot covers (from Redis: the Redis connector's committed ones).
list     the snapshots in DIR, oldest first.
restore  check the checksum, write the snapshot's views into an empty Redis (TTLs kept as absolute
         expiry times, views expired since and views of users erased since skipped, each view added
         to its target models' change streams), point the Redis connector at the snapshot's offsets
         and replay context.views from there: Redis ends equal to one that was never lost. Stop the
         Redis connector first (restore moves its committed offsets).

examples:
  ctxsync snapshot create                        # from the local profile's Redis into .ctxsync/snapshots
  ctxsync snapshot create before-migration --from-topic
  ctxsync snapshot list
  ctxsync snapshot restore                       # the newest snapshot
  ctxsync snapshot restore before-migration --profile prod
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snapshot", help="snapshot every view to a file; restore Redis from one",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("create", "list", "restore"))
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="snapshot name (create: default snapshot-<UTC time>; restore: default the newest)")
    p.add_argument("--dir", type=Path, default=Path(".ctxsync/snapshots"),
                   help="where snapshots are kept (default: .ctxsync/snapshots)")
    p.add_argument("--from-topic", action="store_true", help="create: read the views topic instead of Redis")
    p.add_argument("--force", action="store_true", help="restore: write even if Redis already holds views")
    p.add_argument("--no-replay", action="store_true",
                   help="restore: only write the snapshot's views; do not replay context.views after it")
    add_profile_args(p, "Kafka and Redis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.commands.profile_args import profile_from_args
    from ctxsync.consistency import snapshot as snap
    from ctxsync.errors import RuntimeFailure, UsageError

    if args.action == "list":
        found = snap.list_snapshots(args.dir)
        if not found:
            print(f"no snapshots in {args.dir}")
            return 1
        print(f"{'name':<34}{'created':<26}{'source':<13}{'views':>11}{'size':>12}  offsets")
        for m in found:
            print(f"{m.name:<34}{m.created:<26}{m.source:<13}{m.views:>11,}{m.bytes / 1e6:>10.2f}MB  "
                  f"{_offsets(m.offsets)}")
        return 0

    from ctxsync.io.clients import kafka_config, kafka_sink, redis_client
    from ctxsync.io.connectors import REDIS_GROUP, redis_connector
    from ctxsync.io.erase_record import EraseRecord, ErasedViews
    from ctxsync.io.kafka_io import check_reachable

    profile = profile_from_args(args)
    config, topics = kafka_config(profile), kafka_sink(profile).topics
    check_reachable(config)
    client = redis_client(profile.redis)
    client.ping()
    prefix = profile.redis.prefix
    if args.action == "create":
        if args.from_topic:
            m = snap.create_from_topic(config, topics.views, args.dir, args.name,
                                       ErasedViews(EraseRecord(client, prefix)))
        else:
            m = snap.create_from_redis(client, prefix, config, topics.views, REDIS_GROUP, args.dir, args.name)
        print(f"snapshot {m.name}: {m.views:,} views from {m.source}, {m.bytes / 1e6:.2f} MB, "
              f"sha256 {m.sha256[:16]}…, {topics.views} offsets {_offsets(m.offsets)}, {m.seconds:.2f} s")
        print(f"  {snap.data_path(args.dir, m.name)}")
        return 0

    found = snap.list_snapshots(args.dir)
    if not found:
        raise UsageError(f"no snapshots in {args.dir}", "create one with `ctxsync snapshot create`")
    name = args.name or found[-1].name
    if name not in {m.name for m in found}:
        raise RuntimeFailure(f"no snapshot {name!r} in {args.dir}", "`ctxsync snapshot list` shows them")
    started = time.monotonic()
    erased = ErasedViews(EraseRecord(client, prefix))
    manifest, written, expired = snap.restore(client, prefix, args.dir, name, args.force,
                                                 profile.redis.stream_maxlen, erased)
    loaded = time.monotonic() - started
    print(f"restored {written:,} views from {name} ({expired:,} expired since, {erased.refused:,} of users "
          f"erased since, skipped) in {loaded:.2f} s")
    if args.no_replay:
        return 0
    snap.rewind_connector(config, REDIS_GROUP, manifest)
    stats = redis_connector(config, client, prefix, profile.redis.stream_maxlen, topics.views, topics.dlq) \
        .run(until_caught_up=True)
    print(f"replayed {topics.views} from the snapshot's offsets: {stats.consumed:,} records, "
          f"{stats.written:,} views applied, {stats.skipped:,} not newer, in {stats.seconds:.2f} s")
    print(f"total {time.monotonic() - started:.2f} s")
    return 0


def _offsets(offsets: dict[str, int]) -> str:
    """partition:offset pairs, e.g. `0:5311 1:5224`."""
    return " ".join(f"{p}:{o}" for p, o in offsets.items())

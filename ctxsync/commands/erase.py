"""`ctxsync erase --user U`: erase one user everywhere the job's data lives, and print a receipt."""
from __future__ import annotations

import argparse
import hashlib
import time

from ctxsync.commands.profile_args import add_profile_args
from ctxsync.errors import RuntimeFailure, UsageError

DESCRIPTION = """\
Erase one user (right to erasure), in this order:
  1. the erase record (Redis hash <prefix>:erased, privacy on or off): from now on every writer refuses
     the user's data from before now (the job, the Redis view script, the Elasticsearch writer, dlq
     redrive, replay, snapshot restore), whenever it comes by again: events still queued, a re-drive, a
     replay, a --fresh run, a restore from an older savepoint or snapshot; verify counts the user as erased
  2. key store (privacy on): the user's data key is deleted (crypto-shredding: what the append-only
     history and dead-letter topics hold of the user, encrypted under that key, can no longer be read)
     and an erase marker is left
  3. the job: a signed erase command on the input topic, keyed like the user's events; the running job
     (or the next run) drops the user's state and publishes a tombstone for each of the user's views
  4. Redis: the user's views, their entries in every model's change stream, and their entries in the
     change feeds' bookkeeping of acknowledged versions (<prefix>:changes:<model>:acked:<group>, and the
     :seen:<group> hashes of older releases)
  5. Elasticsearch: the user's history and violation documents
  6. the compacted views topic: a tombstone per category (compaction then removes the older views)
What it cannot erase: the raw events in the input topic (until its retention expires), the history and
dead-letter topics when privacy is off (they hold the user in clear), backups and snapshots, and copies
that consumers made (docs/security.md, Erase).

examples:
  ctxsync erase --user user-00042
  ctxsync erase --user user-00042 --profile prod"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("erase", help="erase a user everywhere (state, Redis, Elasticsearch, topics)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True, metavar="USER", help="the userId to erase (as events carry it)")
    add_profile_args(p, "servers and keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.config import resolve_job, resolve_profile
    from ctxsync.io.clients import kafka_config, kafka_sink, kafka_source, redis_client, search_client
    from ctxsync.io.erase_record import EraseRecord
    from ctxsync.io.erasure import erase_elasticsearch, erase_redis, send
    from ctxsync.io.es_history import HISTORY_PREFIX, VIOLATIONS_INDEX
    from ctxsync.io.kafka_io import check_reachable, producer
    from ctxsync.privacy_lookup import privacy_lookup
    from ctxsync.servers import running_endpoints
    from transforms.control import erase_command
    from transforms.timestamps import format_iso_ms

    user = args.user
    if not user:
        raise UsageError("--user must not be empty")
    job = resolve_job(args.jobs, args.job, [])
    profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
    if profile.source.type != "kafka":
        raise UsageError(f"profile {args.profile!r} has no servers: its output files are yours to delete",
                         "erase works on Kafka profiles (local, prod)")
    if profile.redis is None:
        raise UsageError(f"profile {args.profile!r} has no redis: erase keeps its record there",
                         "give the profile a redis endpoint")
    source, sink = kafka_source(profile), kafka_sink(profile)
    config = kafka_config(profile)
    check_reachable(config)
    settings = job.settings.to_settings()
    categories = sorted({*settings.categories.values(), settings.default_category})
    at_ms = int(time.time() * 1000)
    lookup = privacy_lookup(job, profile)  # privacy on: the topics and ES name the user by this token
    store, protector = (lookup.store, lookup.protector) if lookup else (None, None)
    token = lookup.token(user) if lookup else None
    _audit(args, job, token or "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:16])

    lines = [f"erased user {user!r} at {format_iso_ms(at_ms)} (profile {args.profile}"
             + (f", token {token})" if token else ", privacy off)")]
    redis = redis_client(profile.redis)
    record = EraseRecord(redis, profile.redis.prefix)
    record.add([user] + ([token] if token else []), at_ms)
    lines.append(f"  erase record    {record.key}: the user's data from before {format_iso_ms(at_ms)} is refused "
                 "by every writer from now on")
    if store is not None and token is not None:
        had_key = store.erase(token, at_ms)
        lines.append(f"  key store       data key {'deleted' if had_key else 'absent (nothing was encrypted for the user)'}"
                     f"; erase marker set: history and dead letters of the user in {sink.topics.history} and "
                     f"{sink.topics.dlq} can no longer be decrypted (crypto-shredded)")
    else:
        lines.append(f"  key store       none (privacy off): {sink.topics.history} and {sink.topics.dlq} still hold "
                     "the user in clear until their retention expires")
    command = erase_command(user, at_ms, protector.control_key if protector else None)
    try:
        sent = send(producer(config), [(source.topic, user.encode(), command)])[0]
    except RuntimeError as exc:
        raise RuntimeFailure(f"the erase command could not be sent to {source.topic}: {exc}") from None
    lines.append(f"  job             erase command sent to {source.topic} (partition {sent.partition()}, "
                 f"offset {sent.offset()}): the job drops the user's state when it reads it")
    views, entries, seen = erase_redis(redis, profile.redis.prefix, user, categories)
    lines.append(f"  redis           {views} views deleted, {entries} change-stream entries deleted, "
                 f"{seen} change-feed bookkeeping entries deleted")
    if profile.elasticsearch is not None:
        names = [user] + ([token] if token else [])
        history, violations = erase_elasticsearch(search_client(profile), names, categories,
                                                  HISTORY_PREFIX + "*", VIOLATIONS_INDEX)
        lines.append(f"  elasticsearch   {history} history documents, {violations} violation documents deleted")
    tombstones = [(sink.topics.views, f"{category}:{user}".encode(), None) for category in categories]
    try:
        send(producer(config), tombstones)
    except RuntimeError as exc:
        raise RuntimeFailure(f"tombstones could not be sent to {sink.topics.views}: {exc}",
                             "run erase again: every step is idempotent") from None
    lines.append(f"  views topic     {len(tombstones)} tombstones published to {sink.topics.views} "
                 f"({', '.join(categories)})")
    lines.append(f"  not erased      raw events in {source.topic} (until its retention expires), backups, "
                 "and copies consumers made")
    print("\n".join(lines))
    return 0


def _audit(args: argparse.Namespace, job: object, who: str) -> None:
    """The audit log entry (ctxsync/audit) names the user by token or hash, never in clear."""
    from ctxsync.audit import record_action

    record_action(args.profile, "erase", {"user": who, "job": args.job}, job=job, actor=getattr(args, "actor", None))

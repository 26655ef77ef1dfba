"""`ctxsync trace EVENT_ID`: one event's path from the input topic to Redis and Elasticsearch, with the
time of each hop."""
from __future__ import annotations

import argparse
import json
import time

from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from ctxsync.config import duration_ms
from ctxsync.errors import RuntimeFailure

DEFAULT_SINCE = "1h"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace", help="follow one event from Kafka to Redis and Elasticsearch, with the time of each hop",
        description="Find every record that an event produced, and when each was written: the input "
                    "record (partition/offset, produce time), the job's records on the history, views, "
                    "violations and dead-letter topics (Kafka timestamps), the entries of the target "
                    "models' change streams in Redis (entry id time) and the view there now, and the "
                    "history and violation documents in Elasticsearch (time indexed). Each hop shows its "
                    "delta from the input record's produce time.\n\n"
                    "Scans are bounded: Kafka topics are read from the first record written at or after "
                    "--since ago (by Kafka timestamp) to their end at the start of the trace, change streams "
                    f"from that time on; Elasticsearch is searched by eventId. Default --since {DEFAULT_SINCE}.\n"
                    "Exit 1 when the event is found nowhere.\n\n"
                    "examples:\n"
                    "  ctxsync trace evt-000042\n"
                    "  ctxsync trace evt-000042 --since 24h --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("event_id", metavar="EVENT_ID", help="the eventId of the source event")
    p.add_argument("--since", type=_duration, default=duration_ms(DEFAULT_SINCE), metavar="DURATION",
                   help=f"how far back to search, e.g. 15m, 6h, 2d, at most 3650d (default: {DEFAULT_SINCE})")
    p.add_argument("--json", action="store_true", help="one JSON object: the hops with times and deltas (ms)")
    add_profile_args(p, "topics, Redis and Elasticsearch")
    p.set_defaults(func=run)


def _duration(text: str) -> int:
    try:
        return duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.clients import kafka_config, kafka_sink, kafka_source, redis_client, search_client
    from ctxsync.io.kafka_io import check_reachable
    from ctxsync.config import resolve_job
    from ctxsync.observe.trace import Tracer
    from ctxsync.privacy_lookup import privacy_lookup

    profile = profile_from_args(args)
    source, sink = kafka_source(profile), kafka_sink(profile)
    input_config = {"bootstrap.servers": source.bootstrap, **source.security.client_config()}
    check_reachable(input_config)
    redis = redis_client(profile.redis) if profile.redis else None
    if redis is not None:
        redis.ping()
    es = search_client(profile) if profile.elasticsearch else None
    lookup = privacy_lookup(resolve_job(args.jobs, args.job, []), profile)  # privacy on: records shown decrypted
    tracer = Tracer(input_config, kafka_config(profile), source.topic, sink.topics,
                    source.schema_id if source.format == "avro" else False, redis,
                    profile.redis.prefix if profile.redis else "ctx", es, lookup.readable if lookup else None)
    since_ms = int(time.time() * 1000) - args.since
    trace = tracer.trace(args.event_id, since_ms)
    if not trace.hops:
        raise RuntimeFailure(f"event {args.event_id!r} not found in the last {_human(args.since)} "
                             f"({source.topic}, the output topics, Redis, Elasticsearch)",
                             "a longer --since? the right --profile?")
    if args.json:
        print(json.dumps(trace.to_json()))
        return 0
    print(render(trace, _human(args.since)))
    return 0


def render(trace, window: str) -> str:
    from transforms.timestamps import format_iso_ms

    source = trace.source_ms
    out = [f"trace {trace.event_id}   (searched the last {window}; delta from the input record's produce time)"]
    for hop in trace.hops:
        when = format_iso_ms(hop.time_ms) if hop.time_ms is not None else "time not recorded".ljust(24)
        delta = ("" if hop.time_ms is None or source is None else f"{hop.time_ms - source:+,} ms")
        out.append(f"  {delta:>11}  {when}  {hop.stage:<13} {hop.where}")
        out.append(f"  {'':>11}  {'':24}  {'':<13} {hop.note}")
    if source is None:
        out.append(f"  (not on the input topic in the last {window}: deltas need it)")
    return "\n".join(out)


def _human(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"

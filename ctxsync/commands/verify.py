"""`ctxsync verify`: rebuild every view from the history and check the views topic, Redis and the change
streams against it."""
from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import TYPE_CHECKING

from ctxsync.commands.arg_types import positive_int
from ctxsync.commands.profile_args import add_profile_args

if TYPE_CHECKING:
    from ctxsync.consistency.verify import VerifyReport

DESCRIPTION = """\
Recompute every view from the `context.history` topic (each accepted event with the attributes it
applied, replayed through the job's own per-aggregate step) and compare it with the compacted
`context.views` topic and with Redis: missing, stale version, wrong value, extra. For each target model,
check that its change stream (`ctx:changes:<model>`) holds the current version of every view aimed at it,
and how long the oldest missing one has waited (lag). With an Elasticsearch endpoint, also check that
every history record its connector has committed is a document in ES (looked up by its id).

With privacy on (docs/security.md), the history names users by token and encrypts protected values: verify
decrypts it with the profile's key store (it needs the master key) and compares clear values with the clear
views of Redis and the views topic.

Views still in flight (newer than the Redis connector's committed offset, or written while verify
reads), views whose Redis TTL has expired and the views of users erased since (`ctxsync erase`: their
history is not rebuilt) are counted, never reported as mismatches, and left out of the consistency ratio
(consistent keys / judged keys). Exit 0 when everything matches, 1 on any mismatch.

examples:
  ctxsync verify                              # the local profile (`ctxsync dev up`)
  ctxsync verify --user user-00042            # one user's views only
  ctxsync verify --sample 1000 --json         # 1,000 random keys (Redis-only extras not searched)
  ctxsync verify --profile prod
  ctxsync verify --every 60 --metrics-port 9253   # check every minute, serve the ratio to Prometheus

--every repeats the check (until Ctrl-C, or --count checks) and prints each report; with --metrics-port
the latest ratio is served as ctxsync_consistency_ratio{sink="redis"} at http://HOST:PORT/metrics
(HOST: the profile's metrics.host), which the alert rule CtxsyncConsistencyBelow999 watches.
"""
SHOWN = 20  # mismatches listed in the table output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check Redis and the views topic against the history",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", help="only this userId's views")
    p.add_argument("--sample", type=positive_int, metavar="N",
                   help="check N random keys instead of all (default: all, plus a SCAN of Redis for extras)")
    p.add_argument("--seed", type=int, help="random seed of --sample (default: a new sample each run)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-es", action="store_true",
                   help="skip the check that Elasticsearch holds every history document (default: check it "
                        "when the profile has an elasticsearch endpoint)")
    p.add_argument("--every", type=positive_int, metavar="SECONDS",
                   help="repeat the check every SECONDS seconds (default: check once)")
    p.add_argument("--count", type=positive_int, metavar="N", help="with --every: stop after N checks "
                   "(default: until Ctrl-C)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="with --every: serve the latest consistency ratio to Prometheus on PORT "
                        "(the local profile's Prometheus scrapes 9253; default 0 = off)")
    add_profile_args(p, "Kafka and Redis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.config import resolve_job, resolve_profile
    from ctxsync.consistency.verify import Sources, verify
    from ctxsync.io.clients import kafka_config, kafka_sink, redis_client, search_client
    from ctxsync.io.connectors import ES_GROUP, REDIS_GROUP
    from ctxsync.io.erase_record import EraseRecord
    from ctxsync.io.kafka_io import check_reachable
    from ctxsync.io.view_writer import views_endpoint
    from ctxsync.errors import UsageError
    from ctxsync.privacy_lookup import privacy_lookup
    from ctxsync.servers import running_endpoints

    if (args.metrics_port or args.count) and args.every is None:
        raise UsageError("--metrics-port and --count need --every: a single check ends before Prometheus "
                         "scrapes it", "e.g. ctxsync verify --every 60 --metrics-port 9253")
    job = resolve_job(args.jobs, args.job, [])
    profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
    config, topics = kafka_config(profile), kafka_sink(profile).topics
    check_reachable(config)
    client = redis_client(profile.redis)
    client.ping()
    es = search_client(profile) if profile.elasticsearch is not None and not args.no_es else None
    redis_group = None if views_endpoint(profile) else REDIS_GROUP  # does the job write Redis itself?
    sources = Sources(config, topics.history, topics.views, redis_group, client, profile.redis.prefix,
                      profile.redis.stream_maxlen, es, ES_GROUP, privacy_lookup(job, profile),
                      erase=EraseRecord(client, profile.redis.prefix))
    ratio = serve_ratio(profile.metrics.host, args.metrics_port) if args.metrics_port else None
    checks = range(1) if args.every is None else itertools.count() if args.count is None else range(args.count)
    status = 0
    for check in checks:
        if check:
            time.sleep(args.every)
        report = verify(sources, job.settings.to_settings(), args.user, args.sample, args.seed)
        if ratio is not None:
            ratio.set(report.ratio)
        if args.json:
            print(json.dumps(report.to_json(), separators=(",", ":")), flush=True)
        else:
            print_table(report)
            print("\n" if args.every else "", end="", flush=True)
        status = 1 if report.findings else 0
    return status


def serve_ratio(host: str, port: int):  # -> prometheus_client Gauge (imported lazily, like every CLI dependency)
    """The ctxsync_consistency_ratio gauge in its own registry, served on host:port for the process' life."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    from ctxsync.errors import RuntimeFailure
    from ctxsync.metric_names import CONNECTOR_METRICS

    (spec,) = [m for m in CONNECTOR_METRICS if m.name == "ctxsync_consistency_ratio"]
    registry = CollectorRegistry()
    gauge = Gauge(spec.name, spec.help, spec.labels, registry=registry).labels("redis")
    try:
        start_http_server(port, host, registry)
    except OSError as exc:
        raise RuntimeFailure(f"cannot serve the consistency ratio on {host}:{port}: {exc}",
                             "pick another --metrics-port") from exc
    return gauge


def print_table(report: "VerifyReport") -> None:
    what = "sampled keys" if report.sampled else "keys"
    print(f"history: {report.history_records:,} records"
          + ("" if report.history_complete else " (INCOMPLETE: the topic no longer starts at offset 0, "
             "views of deleted records cannot be rebuilt)")
          + (f", {len(report.unreadable_history)} unreadable" if report.unreadable_history else "")
          + (f", {report.history_shredded:,} of erased users (data keys gone: not rebuilt)"
             if report.history_shredded else ""))
    print(f"checked {report.keys_checked:,} {what}: {report.consistent:,} consistent, "
          f"{report.in_flight:,} in flight, {report.expired:,} expired (TTL), "
          + (f"{report.erased:,} erased ({report.erased_history:,} history records of erased users not rebuilt), "
             if report.erased or report.erased_history else "")
          + f"{len(report.findings):,} mismatches")
    counts = report.counts()
    kinds = ("missing", "stale version", "wrong value", "extra", "stream behind")
    print(f"\n{'store':<28}" + "".join(f"{k:>15}" for k in kinds))
    for store in ["views-topic", "redis"] + sorted(s for s in counts if s.startswith("stream:")):
        row = counts.get(store, {})
        print(f"{store:<28}" + "".join(f"{row.get(k, 0):>15,}" for k in kinds))
    if report.es_checked or report.es_in_flight:
        missing = counts.get("elasticsearch", {}).get("missing", 0)
        print(f"\nelasticsearch history: {report.es_checked:,} documents checked, {missing:,} missing, "
              f"{report.es_in_flight:,} records not yet committed by its connector")
    if report.streams:
        print(f"\n{'change stream (target model)':<28}{'views':>10}{'behind':>10}{'lag':>12}{'length':>10}")
        for s in report.streams:
            note = f"  (trimmed at MAXLEN: {s.unknown:,} not judged)" if s.trimmed else ""
            print(f"{s.model:<28}{s.views:>10,}{s.behind:>10,}{s.lag_ms / 1000:>11.1f}s{s.length:>10,}{note}")
    if report.findings:
        print(f"\nmismatches (first {min(SHOWN, len(report.findings))} of {len(report.findings):,}):")
        for f in report.findings[:SHOWN]:
            versions = "" if f.expected_version is None and f.actual_version is None else \
                f"expected {_version(f.expected_version)}, found {_version(f.actual_version)}"
            print(f"  {f.store:<28} {f.key:<36} {f.kind:<14} {versions}" + (f"  {f.detail}" if f.detail else ""))
    if report.in_flight:
        print(f"\n{report.in_flight:,} views in flight are not judged: the Redis connector has not applied them yet "
              "(is it running?), or the job wrote them while verify read; run verify again later")
    print(f"\nconsistency: {report.ratio * 100:.2f} % ({report.consistent:,} of {report.judged:,} judged keys) "
          f"in {report.seconds:.1f} s")


def _version(version: int | None) -> str:
    return "none" if version is None else f"v{version}"

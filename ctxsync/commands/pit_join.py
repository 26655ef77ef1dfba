"""`ctxsync pit-join ENTITIES --out FILE.parquet`: point-in-time correct context for training rows."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ctxsync.commands.profile_args import add_profile_args

DESCRIPTION = """\
For each row (userId, timestamp, ...) of ENTITIES (.csv or .parquet), attach one column per context
attribute holding its value as of that row's timestamp (inclusive), never a later one: DuckDB's ASOF JOIN
over a Parquet export of the history (event time, as `ctxsync as-of` without --seen-by). Values are JSON
text ("power", 0.5, true); NULL when the attribute had no value then. Timestamps without a zone are UTC.
An attribute named like an entity column becomes ctx_<name>.

The history export is written to --history-parquet (default: a file next to --out) and reused with
--reuse-history, e.g. to join several entity files against one export.

With privacy on (docs/security.md), the history is decrypted for the join, which needs the profile's master
key (else pit-join refuses, exit 1); the export names users by token and holds clear values: keep it as
private as the training rows.

examples:
  ctxsync pit-join labels.csv --out train.parquet
  ctxsync pit-join labels.parquet --out train.parquet --history-parquet history.parquet
  ctxsync pit-join more_labels.csv --out more.parquet --history-parquet history.parquet --reuse-history
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pit-join", help="attach each attribute's value as of each row's timestamp (Parquet out)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("entities", type=Path, metavar="ENTITIES", help="a .csv or .parquet file with userId, timestamp")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.parquet", help="the joined rows")
    p.add_argument("--history-parquet", type=Path, metavar="FILE",
                   help="where the history export goes (default: <out>.history.parquet)")
    p.add_argument("--reuse-history", action="store_true",
                   help="use the existing --history-parquet file instead of reading the history topic")
    add_profile_args(p, "Kafka")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.config import resolve_job, resolve_profile
    from ctxsync.consistency.pit_join import export_history, names_tokens, pit_join
    from ctxsync.errors import RuntimeFailure, UsageError, check_input_file
    from ctxsync.privacy_lookup import Opened, PrivacyLookup, privacy_lookup
    from ctxsync.servers import running_endpoints

    check_input_file(args.entities)
    exported = args.history_parquet or args.out.with_name(args.out.stem + ".history.parquet")
    started = time.monotonic()
    lookup: PrivacyLookup | None = None
    if args.reuse_history:
        if not exported.is_file():
            raise UsageError(f"{exported}: no history export to reuse", "run once without --reuse-history")
        if names_tokens(exported):  # exported with privacy on: entity ids must become tokens to match
            job = resolve_job(args.jobs, args.job, [])
            lookup = privacy_lookup(job, resolve_profile(job.profile(args.profile), args.profile, running_endpoints()))
    else:
        from ctxsync.io.clients import kafka_config, kafka_sink
        from ctxsync.io.history_topic import read_history
        from ctxsync.io.kafka_io import check_reachable

        job = resolve_job(args.jobs, args.job, [])
        profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
        lookup = privacy_lookup(job, profile)  # privacy on: decrypt (an authorized caller) or refuse
        config = kafka_config(profile)
        check_reachable(config)
        records, shredded = read_history(config, kafka_sink(profile).topics.history), Opened()
        if lookup:
            records = lookup.open_history(records, shredded)
        rows = export_history(records, job.settings.to_settings(), exported)
        print(f"history export: {rows:,} updates -> {exported} ({time.monotonic() - started:.2f} s)"
              + (f"; {shredded.shredded:,} records of erased users left out (their data keys are gone)"
                 if shredded.shredded else ""))
    if lookup is None and names_tokens(exported):  # never join clear ids against tokens (all NULL)
        raise RuntimeFailure(f"the history names users by token (privacy on where it was written) and profile "
                             f"{args.profile!r} has no privacy: section", "use the profile whose key store protects it")
    joined = time.monotonic()
    rows, attributes = pit_join(args.entities, exported, args.out, lookup.token if lookup else None)
    print(f"pit-join: {rows:,} rows x {len(attributes)} attributes -> {args.out} ({time.monotonic() - joined:.2f} s)")
    return 0

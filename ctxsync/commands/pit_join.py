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
    from ctxsync.consistency.pit_join import export_history, pit_join
    from ctxsync.errors import UsageError, check_input_file

    check_input_file(args.entities)
    exported = args.history_parquet or args.out.with_name(args.out.stem + ".history.parquet")
    started = time.monotonic()
    if args.reuse_history:
        if not exported.is_file():
            raise UsageError(f"{exported}: no history export to reuse", "run once without --reuse-history")
    else:
        from ctxsync.config import resolve_job, resolve_profile
        from ctxsync.io.clients import kafka_config, kafka_sink
        from ctxsync.io.history_topic import read_history
        from ctxsync.io.kafka_io import check_reachable
        from ctxsync.servers import running_endpoints

        job = resolve_job(args.jobs, args.job, [])
        profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints())
        config = kafka_config(profile)
        check_reachable(config)
        rows = export_history(read_history(config, kafka_sink(profile).topics.history), job.settings.to_settings(),
                              exported)
        print(f"history export: {rows:,} updates -> {exported} ({time.monotonic() - started:.2f} s)")
    joined = time.monotonic()
    rows, attributes = pit_join(args.entities, exported, args.out)
    print(f"pit-join: {rows:,} rows x {len(attributes)} attributes -> {args.out} ({time.monotonic() - joined:.2f} s)")
    return 0

"""`ctxsync run`: run a job of jobs.yaml on an engine and print its summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from ctxsync.config import ConfigError, apply_overrides, override_keys_help, resolve_job
from ctxsync.errors import check_input_file, check_writable_dir
from ctxsync.progress import Progress
from pipelines.file_outputs import OUTPUT_FILES, Summary
from pipelines.flink.kafka_run import KafkaRunResult, run_kafka_profile
from pipelines.runners import RUNNERS, RunRequest, get_runner

DESCRIPTION = """\
Run a job of jobs.yaml. In the embedded profile (the default) the input is a JSON Lines file and the
outputs are files in --out: views.jsonl (latest view per aggregate, sorted by key), history.jsonl,
violations.jsonl, dead_letter.jsonl and summary.json. No servers are needed; Flink runs in-process.

With --profile local (servers of `ctxsync dev up`) or prod (endpoints from CTXSYNC_* variables) the job
reads Kafka `context.events`, writes views/history/violations/dead letters to Kafka topics, and the
connectors write Redis views and Elasticsearch history (docs/local-profile.md). Each run continues where
the last one stopped: it restores the last run's savepoint (state and input offsets) and processes only
new records, so running a job twice changes nothing. A bounded source stops once the input that existed
at start is processed; an unbounded one runs until Ctrl-C, then stops with a savepoint.

examples:
  ctxsync run context-sync --input sample_data/context_events.jsonl --out out/
  ctxsync run context-sync --input events.jsonl --out out/ --set conflict_policy=reject --parallelism 2
  ctxsync run context-sync --input events.jsonl --out out/ --runner beam
  ctxsync run context-drift --input events.jsonl --out out/drift
  ctxsync dev up && ctxsync replay sample_data/context_events.jsonl && ctxsync run context-sync --profile local

--set KEY=VALUE keys (repeatable; values are YAML scalars; a bare settings key needs no `settings.`):
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a job (default: embedded profile on local Flink)",
                       description=DESCRIPTION + override_keys_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB", help="job name in jobs.yaml, e.g. context-sync")
    p.add_argument("--input", type=Path, help="JSON Lines input file (embedded profile)")
    p.add_argument("--out", type=Path, help="output directory, created if missing (embedded profile)")
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"), help="jobs file (default: jobs.yaml)")
    p.add_argument("--runner", default="flink", choices=sorted(RUNNERS),
                   help="engine: flink (default), beam, or reference (plain Python, the parity oracle)")
    p.add_argument("--profile", default="embedded", help="profile of the job (default: embedded)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key (keys above), e.g. --set conflict_policy=reject --set dedup_retention=1h")
    p.add_argument("--parallelism", type=int, help="engine parallelism, 1..64 (default: the job's, 1 in jobs.yaml)")
    p.add_argument("--fresh", action="store_true",
                   help="Kafka profiles: forget the state and input position of earlier runs and recompute "
                        "from the source's start (log topics such as context.dlq get those records again)")
    p.set_defaults(func=run)


def print_summary(summary: Summary, out_dir: Path) -> None:
    rows = summary.as_dict()
    width = max(len(k) for k in rows)
    print(f"\n{'count'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 9}")
    for key, value in rows.items():
        print(f"{key.ljust(width)}  {value:>9,}")
    ok = summary.read == summary.accepted + summary.duplicates + summary.dead_lettered
    print(f"\nread = accepted + duplicates + dead_lettered: {'holds' if ok else 'BROKEN'}")
    print(f"outputs in {out_dir}/: {', '.join(getattr(summary, 'files', OUTPUT_FILES))}")


def run(args: argparse.Namespace) -> int:
    job = resolve_job(args.jobs, args.job, args.overrides)
    if args.parallelism is not None:
        job = apply_overrides(job, [f"parallelism={args.parallelism}"])
    job.profile(args.profile)  # exists
    if args.profile != "embedded":  # Kafka in and out, plus the Redis/Elasticsearch connectors
        return _run_kafka(args, job)
    if args.input is None or args.out is None:
        raise ConfigError("the embedded profile needs --input FILE.jsonl and --out DIR")
    check_input_file(args.input)
    check_writable_dir(args.out)
    progress = Progress(f"{args.job} [{args.runner}]")
    request = RunRequest(args.job, job, args.input, args.out, job.parallelism, progress)
    summary = get_runner(args.runner, job.type).run_embedded(request)
    progress.done(f"{summary.read:,} events read")
    print_summary(summary, args.out)
    return 0


def _run_kafka(args: argparse.Namespace, job) -> int:
    """`--profile local|prod`: the Kafka job, continued from the last run, then the connectors."""
    if args.runner != "flink":
        raise ConfigError(f"profile {args.profile!r} runs on the flink runner only")
    if args.fresh:
        from ctxsync.audit import record_action

        keys = " ".join(o.partition("=")[0] for o in args.overrides)  # values may be secrets: keys only
        record_action(args.profile, "run-fresh", {"job": args.job, "overrides": keys}, job=job, actor=args.actor)
    progress = Progress(f"{args.job} [{args.profile}]")
    result = run_kafka_profile(args.job, job, args.profile, job.parallelism, progress, fresh=args.fresh)
    progress.done(f"{result.input_records:,} input records")
    _print_kafka_result(result)
    return 0


def _print_kafka_result(result: KafkaRunResult) -> None:
    since = "since the last run" if result.restored_from else "in the topic"
    unchanged = "" if result.job_ran else f" (no new input {since}: the Flink job was not started)"
    print(f"\nnew input records: {result.input_records:,}{unchanged}")
    print(f"continued from: {result.restored_from or 'fresh state (start of the input)'}")
    print(f"next run continues from: {result.savepoint}")
    print(f"\n{'output topic':<26}{'records':>10}{'offsets advanced':>18}")
    for topic, grown in result.outputs.items():
        print(f"{topic:<26}{grown.records:>10,}{grown.offsets:>18,}")
    print("(records: what read_committed consumers get; offsets also count the exactly-once sink's transaction\n"
          " markers and records of aborted transactions)")
    for name, stats in result.connectors.items():
        print(f"connector {name}: {stats.consumed:,} records in {stats.seconds:.1f}s ({stats.rate():,.0f}/s), "
              f"written {stats.written:,}, not newer {stats.skipped:,}, dead-lettered {stats.dead_lettered:,}, "
              f"retries {stats.retries}")
    if result.connectors:
        print("views are in Redis (`ctxsync view USER`), history is searchable (`ctxsync history --user USER`)")

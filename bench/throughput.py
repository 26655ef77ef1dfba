"""Whole-pipeline throughput of context-sync, with baselines measured in the same run.

    python bench/throughput.py --events 1000000 --runner flink [--runner beam] [--users 10000]
    python bench/throughput.py --events 300000 --profile local

Per runner it measures the full job (embedded profile, generated events), and for flink two pass-through
jobs with the same source and sink: the per-event shape (parse, key_by userId, emit: two Python crossings
per event, the reference floor) and the batched shape the job uses (bench/flink_batched_passthrough.py);
once per run, the plain-Python loop over the same transforms/ (the logic's own cost, the `limit`).
The last line per runner is one JSON object; `compiled` says whether transforms/ ran as built by mypyc
(scripts/build_compiled.py; CTXSYNC_PURE_PYTHON=1 forces pure Python). `--window`/`--buckets` override the
job's batching.
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import transforms  # noqa: E402
from ctxsync.config import resolve_job  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.progress import Progress  # noqa: E402
from pipelines.reference import read_lines, run_reference  # noqa: E402
from pipelines.runners import RunRequest, get_runner  # noqa: E402


def events_file(events: int, users: int, seed: int) -> Path:
    """Generated input, cached: generating 1 M events takes longer than processing them."""
    cache = ROOT / ".cache" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"events-{events}-{users}-{seed}.jsonl"
    if not path.exists():
        progress = Progress("generate", total=events)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            for n, line in enumerate(generate_lines(GeneratorOptions(events=events, users=users, seed=seed)), 1):
                handle.write(line + b"\n")
                if n % 50_000 == 0:
                    progress.update(n)
        tmp.rename(path)
        progress.done(f"{events} events -> {path}")
    return path


def measure_limit(path: Path, settings) -> float:
    """Events/s of transforms/ in a plain loop (no engine, no output files)."""
    records = list(read_lines(path))
    gc.freeze()  # setup done: the garbage collector need not walk the modules and the input again and again
    start = time.perf_counter()
    for _ in run_reference(records, str(path), settings):
        pass
    return len(records) / (time.perf_counter() - start)


def measure_job(runner: str, path: Path, job, events: int, parallelism: int) -> tuple[float, float]:
    """(events/s of the engine job alone, events/s including merging the outputs into files)."""
    out = Path(tempfile.mkdtemp(prefix=f"bench-{runner}-"))
    try:
        request = RunRequest("context-sync", job, path, out, parallelism, Progress(f"bench {runner}"))
        start = time.perf_counter()
        timings: dict[str, float] = {}
        module = get_runner(runner)
        summary = module.run_embedded(request, timings) if runner == "flink" else module.run_embedded(request)
        total = time.perf_counter() - start
        assert summary.read == events, f"{runner} read {summary.read} of {events}"
        engine_s = timings.get("engine_s", total)
        return events / engine_s, events / total
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure_flink_passthrough(path: Path, job, events: int, parallelism: int, batched: bool) -> float:
    """Events/s of a pass-through job: the per-event shape, or the batched one (`batched`)."""
    from bench import flink_batched_passthrough, flink_passthrough

    work = Path(tempfile.mkdtemp(prefix="bench-passthrough-"))
    parts = work / "_parts"
    try:
        if batched:
            env = flink_batched_passthrough.build(path, parts, job.flink, parallelism, job.batching.to_batching())
        else:
            env = flink_passthrough.build(path, parts, job.flink, parallelism)
        start = time.perf_counter()
        env.execute("ctxsync passthrough")
        elapsed = time.perf_counter() - start
        lines = sum(1 for p in parts.rglob("part*") for _ in p.open("rb"))
        assert lines == events, f"pass-through wrote {lines} of {events}"
        return events / elapsed
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_local_profile(path: Path, job, events: int) -> dict:
    """The Kafka job of the `local` profile (Kafka in, Kafka out, exactly-once) over the same events, on
    loopback Apache Kafka: events/s of the Flink run (JVM and job start included, 10-30 s here)."""
    import os

    from ctxsync.commands.replay import ReplayFilter, replay
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
    from ctxsync.servers import LocalServers
    from pipelines.flink.kafka_run import run_kafka_profile

    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        servers.up(["kafka", "redis", "noida"])  # the profile names all three (resolving it needs them up); only Kafka is used
        try:
            os.environ["CTXSYNC_DEV_DIR"] = str(servers.run_dir)
            config = {"bootstrap.servers": servers.endpoints()["kafka"]}
            ensure_topics(config, [TopicSpec("context.events", 4)])
            replay(path, producer(config), "context.events", ReplayFilter())
            result = run_kafka_profile("context-sync", job, "local", 1, Progress("bench local"), fresh=True,
                                       with_connectors=False)
            assert result.input_records == events, f"the Kafka job covered {result.input_records} of {events}"
            return {"runner": "flink", "profile": "local", "delivery": "exactly-once", "events": events,
                    "events_per_s": round(events / result.job_seconds), "job_seconds": round(result.job_seconds, 1)}
        finally:
            servers.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000, help="distinct users (default 10,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runner", action="append", choices=["flink", "beam"], help="default: flink")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--window", help="batch window, e.g. 50ms (default: jobs.yaml)")
    parser.add_argument("--buckets", type=int, help="user buckets (default: jobs.yaml)")
    parser.add_argument("--profile", choices=["embedded", "local"], default="embedded",
                        help="local: the Kafka job (Kafka in and out, exactly-once) on loopback Apache Kafka instead")
    args = parser.parse_args()
    runners = args.runner or ["flink"]
    overrides = ([f"batching.window={args.window}"] if args.window else []) + \
        ([f"batching.buckets={args.buckets}"] if args.buckets else [])
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", overrides)
    path = events_file(args.events, args.users, args.seed)
    events = sum(1 for _ in read_lines(path))
    if args.profile == "local":
        print(json.dumps(measure_local_profile(path, job, events)), flush=True)
        return
    limit = measure_limit(path, job.settings.to_settings())
    print(f"plain-Python limit: {limit:,.0f} events/s", file=sys.stderr)
    for runner in runners:
        engine_rate, end_to_end = measure_job(runner, path, job, events, args.parallelism)
        result = {"runner": runner, "events": events, "events_per_s": round(engine_rate),
                  "end_to_end_events_per_s": round(end_to_end), "limit_events_per_s": round(limit),
                  "ratio_to_limit": round(engine_rate / limit, 3), "parallelism": args.parallelism,
                  "compiled": transforms.COMPILED}
        if runner == "flink":
            floor = measure_flink_passthrough(path, job, events, args.parallelism, batched=False)
            batched = measure_flink_passthrough(path, job, events, args.parallelism, batched=True)
            result.update(passthrough_events_per_s=round(floor), ratio_to_passthrough=round(engine_rate / floor, 3),
                          batched_passthrough_events_per_s=round(batched),
                          ratio_to_batched_passthrough=round(engine_rate / batched, 3),
                          window_ms=job.batching.window, buckets=job.batching.buckets)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Throughput of the real I/O on loopback servers: `replay` to Kafka, the Redis and Elasticsearch
connectors, and (with --flink) the Kafka job itself. Not a test: numbers depend on the machine and its load.

    .venv/bin/python bench/io_throughput.py --events 50000 [--flink]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxsync.commands.replay import ReplayFilter, replay  # noqa: E402
from ctxsync.config import Profile, resolve_job, resolve_profile  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.io.connectors import profile_connectors, run_all  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.progress import Progress  # noqa: E402
from ctxsync.servers import LocalServers, running_endpoints  # noqa: E402
from pipelines.flink.kafka import KafkaJobSpec, route_lines  # noqa: E402
from pipelines.reference import read_lines, run_reference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--flink", action="store_true", help="also time the Flink Kafka job (local profile)")
    parser.add_argument("--delivery", choices=("exactly-once", "at-least-once", "none"), default="exactly-once",
                        help="the Flink sink's delivery guarantee (with --flink)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctxsync-bench-") as tmp:
        root = Path(tmp)
        events = root / "events.jsonl"
        events.write_bytes(b"".join(line + b"\n" for line in generate_lines(
            GeneratorOptions(events=args.events, users=args.users, seed=3))))
        servers = LocalServers(root / "servers")
        servers.up(["redis", "kafka", "noida"])  # Apache Kafka; noida-db for Elasticsearch
        try:
            bench(args, servers, events)
        finally:
            servers.down()


def bench(args: argparse.Namespace, servers: LocalServers, events: Path) -> None:
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    job = resolve_job(Path("jobs.yaml"), "context-sync", [])
    data = job.profiles["local"].model_dump()
    data["sink"]["delivery"] = args.delivery
    job = job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})
    ensure_topics(config, [TopicSpec(f"context.{k}", 4) for k in ("events", "views", "history", "violations")]
                  + [TopicSpec("context.dlq", 1)])
    stats = replay(events, producer(config), "context.events", ReplayFilter())
    print(f"replay: {stats.sent:,} events in {stats.seconds:.2f}s = {stats.sent / stats.seconds:,.0f} events/s")

    import os

    os.environ["CTXSYNC_DEV_DIR"] = str(servers.run_dir)
    profile = resolve_profile(job.profiles["local"], "local", running_endpoints(servers.run_dir))
    if args.flink:
        from pipelines.flink.kafka_run import run_kafka_profile

        started = time.monotonic()
        result = run_kafka_profile("context-sync", job, "local", 1, Progress("bench"), fresh=True,
                                   with_connectors=False)
        print(f"flink kafka job: {args.events:,} events in {result.job_seconds:.1f}s "
              f"(incl. ~10-30 s JVM/job start) = {args.events / result.job_seconds:,.0f} events/s; "
              f"wall {time.monotonic() - started:.1f}s")
    else:  # the job's outputs, produced directly from the reference run (connectors alone)
        produce_job_outputs(events, job.settings.to_settings(), KafkaJobSpec(bootstrap=config["bootstrap.servers"]),
                            config)
    for name, s in run_all(profile_connectors(profile), until_caught_up=True).items():
        print(f"connector {name}: {s.consumed:,} records in {s.seconds:.2f}s = {s.rate():,.0f} records/s "
              f"({s.written:,} written, {s.batches} batches)")


def produce_job_outputs(events: Path, settings: Any, spec: KafkaJobSpec, config: dict[str, str]) -> None:
    """The Kafka job's output records for `events`, computed by the reference run and routed as the job routes
    them (one input event's tagged lines at a time), produced to the spec's topics: the connectors' input
    without running Flink."""
    out, batch, last = producer(config), [], None

    def send(lines: list[str]) -> None:
        for key, value, topic, headers in route_lines(lines, spec):
            out.produce(topic, key=key, value=value, headers=list(headers.items()))
            out.poll(0)

    for line in run_reference(read_lines(events), str(events), settings):
        seq = line.split("\t", 1)[0]
        if last is not None and seq != last:
            send(batch)
            batch = []
        batch.append(line)
        last = seq
    send(batch)
    out.flush(60)


if __name__ == "__main__":
    main()

"""Apache Kafka vs noida-db's Kafka emulator, side by side in one run: `replay` into the broker and the
Redis connector reading the job's view records back out, with the broker's own CPU time per 1,000 records.

Why: the project moved from the emulator to Apache Kafka 4.1 (issue 23); this shows what that changed for
the two I/O paths that do not involve Flink. Both brokers run on this machine, one after the other, with the
same events, the same topics (4 partitions) and the same Redis. Not a test: numbers depend on the load
(the `load` column is the 1-minute load average when the phase started).

    .venv/bin/python bench/broker_compare.py --events 50000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.io_throughput import produce_job_outputs  # noqa: E402
from bench.proc_cpu import cpu_seconds, descendants  # noqa: E402
from ctxsync.commands.replay import ReplayFilter, replay  # noqa: E402
from ctxsync.config import resolve_job, resolve_profile  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.io.connectors import profile_connectors, run_all  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.servers import LocalServers, _kafka_ready, _noida_bin, free_port, running_endpoints  # noqa: E402
from pipelines.flink.kafka import KafkaJobSpec  # noqa: E402

PARTITIONS = 4


@contextmanager
def apache_kafka(root: Path) -> Iterator[tuple[str, int]]:
    servers = LocalServers(root / "apache")
    servers.up(["kafka"])
    try:
        yield servers.endpoints()["kafka"], servers.servers["kafka"].pid
    finally:
        servers.down()


@contextmanager
def noida_kafka(root: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = (root / "noida.log").open("w")
    child = subprocess.Popen([_noida_bin(), "start", "--data-dir", str(root / "noida"), "--host", "127.0.0.1",
                              "--only", "kafka", "--kafka-port", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not _kafka_ready(port):
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"noida-db's Kafka did not start: see {root / 'noida.log'}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", child.pid
    finally:
        child.terminate()
        child.wait(30)


def broker_cpu(pid: int) -> float:
    """CPU seconds of the broker's process and its living children (noida-db's launcher forks the server)."""
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


def timed(pid: int, work: Callable[[], int]) -> tuple[int, float, float, float]:
    """(records, seconds, broker CPU seconds, load average) of one phase."""
    load = os.getloadavg()[0]
    cpu0, start = broker_cpu(pid), time.monotonic()
    n = work()
    return n, time.monotonic() - start, broker_cpu(pid) - cpu0, load


def phases(bootstrap: str, pid: int, events: Path, redis_endpoints: dict[str, str], prefix: str) -> list[tuple]:
    config = {"bootstrap.servers": bootstrap}
    topics = {k: f"{prefix}.{k}" for k in ("events", "views", "history", "violations", "dlq")}
    ensure_topics(config, [TopicSpec(t, PARTITIONS if k != "dlq" else 1) for k, t in topics.items()])
    rows = [("replay", *timed(pid, lambda: replay(events, producer(config), topics["events"], ReplayFilter()).sent))]

    job = resolve_job(Path("jobs.yaml"), "context-sync", [])
    spec = KafkaJobSpec(bootstrap=bootstrap, input_topic=topics["events"], views_topic=topics["views"],
                        history_topic=topics["history"], violations_topic=topics["violations"],
                        dlq_topic=topics["dlq"])
    produce_job_outputs(events, job.settings.to_settings(), spec, config)

    data = job.profiles["local"].model_dump()
    data["sink"]["topics"] = {"views": topics["views"], "history": topics["history"],
                              "violations": topics["violations"], "dlq": topics["dlq"]}
    data["redis"]["prefix"] = prefix
    data["elasticsearch"], data["state_dir"] = None, None  # the Redis connector only
    profile = resolve_profile(type(job.profiles["local"]).model_validate(data), "local",
                              {**redis_endpoints, "kafka": bootstrap})
    connector = profile_connectors(profile, ("redis",))

    def drain() -> int:
        return run_all(connector, until_caught_up=True)["redis"].consumed

    rows.append(("redis connector", *timed(pid, drain)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctxsync-brokers-") as tmp:
        root = Path(tmp)
        events = root / "events.jsonl"
        events.write_bytes(b"".join(line + b"\n" for line in generate_lines(
            GeneratorOptions(events=args.events, users=args.users, seed=3))))
        redis = LocalServers(root / "redis")
        redis.up(["redis"])
        try:
            endpoints = running_endpoints(redis.run_dir)
            print(f"{'broker':<14}{'phase':<17}{'records':>9}{'seconds':>9}{'records/s':>11}"
                  f"{'broker CPU s':>14}{'CPU ms/1k rec':>15}{'load':>6}")
            for name, broker in (("apache-4.1.2", apache_kafka), ("noida-db", noida_kafka)):
                with broker(root) as (bootstrap, pid):
                    for phase, n, secs, cpu, load in phases(bootstrap, pid, events, endpoints,
                                                            f"cmp{name.split('-')[0]}"):
                        print(f"{name:<14}{phase:<17}{n:>9,}{secs:>9.2f}{n / secs:>11,.0f}{cpu:>14.2f}"
                              f"{1e6 * cpu / max(n, 1):>15.1f}{load:>6.1f}", flush=True)
        finally:
            redis.down()


if __name__ == "__main__":
    main()

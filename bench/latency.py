"""Propagation latency: an event produced to Kafka -> its view applied in Redis (what a model reads).

    python bench/latency.py [--rate 500 --rate 2000 --rate 5000] [--seconds 20]
                            [--delivery at-least-once|exactly-once] [--checkpoint-ms 1000] [--window 50ms]

Starts loopback servers (noida-db, redis-server), runs the context-sync Kafka job unbounded on local Flink
and the Redis view connector in a process of its own (as `ctxsync connect` runs it: the bench's producer
and readers must not share its interpreter lock), then for each rate produces generated events at that
fixed rate and follows two points of each event's path:
- the job's output: the first record of `context.views` carrying its eventId (its Kafka timestamp, set
  when Flink's sink produced it; read_uncommitted, so exactly-once shows the sink's time, not the commit);
- the model's view: the first change-stream entry in Redis carrying it (an entry is written when the
  connector applies a view; its id is Redis' clock at that moment).
Latency = that time - time produced. One JSON line per rate with p50/p95/p99 for the model's view
(`p95_ms`) and for the job's output alone (`job_p95_ms`), and how many events were seen (a view that a
newer event of the same aggregate replaced before it was applied never shows that event, so `measured` <
`events` is normal).

What bounds it: the batch window (`batching.window`) plus the watermark-free processing-time trigger, the
Python batch itself, the Kafka sink's flush (at-least-once) or transaction commit at each checkpoint
(exactly-once: bounded below by the checkpoint interval), and the connector's poll (50 ms max wait,
returns as soon as records arrive). Not a test: numbers depend on load.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import tempfile
import threading
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctxsync.config import resolve_job  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.io.connectors import redis_connector  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.servers import LocalServers  # noqa: E402
from pipelines.flink.kafka import KafkaJobSpec, build_kafka_job  # noqa: E402
from pipelines.flink.kafka_run import RUN_DEFAULTS  # noqa: E402


WARM_UP = 30_000  # events produced at 1,000/s before any rate is measured


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_job(spec: KafkaJobSpec, job, checkpoints: Path):
    """Submit the unbounded Kafka job to a local mini-cluster; returns its JobClient.

    Checkpoints go to files as on every real run: the default (JobManager memory) refuses state over 5 MB,
    which 10,000 users pass within a minute, and the job then restarts in a loop."""
    from ctxsync.jars import kafka_jars
    from pipelines.flink.env import flink_environment

    flink = {**RUN_DEFAULTS, **job.flink, "execution.checkpointing.storage": "filesystem",
             "execution.checkpointing.dir": checkpoints.resolve().as_uri()}
    env = flink_environment(flink, parallelism=1, jars=[str(p) for p in kafka_jars()])
    env.enable_checkpointing(spec.checkpoint_interval_ms)
    build_kafka_job(env, spec, job.settings.to_settings(), 1, job.batching.to_batching())
    return env.execute_async("ctxsync latency bench")


def run_connector(config: dict, redis_url: str, stop) -> None:
    """The Redis view connector, in its own process (spawned: no JVM or client threads inherited)."""
    import redis

    connector = redis_connector(config, redis.Redis.from_url(redis_url), "ctx", 1_000_000, "context.views",
                                "context.dlq")
    connector.run(False, stop)


class JobOutputs:
    """Follows `context.views` (the job's output); records when each eventId first left the job."""

    def __init__(self, config: dict) -> None:
        from confluent_kafka import Consumer

        self.seen: dict[str, float] = {}
        self.consumer = Consumer({**config, "group.id": "latency-bench", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
        self.consumer.subscribe(["context.views"])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for message in self.consumer.consume(10_000, timeout=0.05):
                if message.error() is None:
                    produced = message.timestamp()[1] / 1000
                    for attr in json.loads(message.value())["attributes"].values():
                        self.seen.setdefault(attr["eventId"], produced)
        self.consumer.close()


class AppliedViews:
    """Follows every `ctx:changes:*` stream; records when each eventId first appears in an applied view."""

    def __init__(self, client) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self.positions: dict[str, str] = {}
        self.scanned = 0.0

    def poll(self) -> None:
        if time.monotonic() - self.scanned > 2:  # SCAN walks every view hash too: not on every poll
            self.scanned = time.monotonic()
            for key in self.client.scan_iter(match="ctx:changes:*", count=10_000, _type="STREAM"):
                self.positions.setdefault(key, "0-0")
        if not self.positions:
            time.sleep(0.05)
            return
        for stream, entries in self.client.xread(self.positions, count=10_000, block=50) or []:
            for entry_id, fields in entries:
                self.positions[stream] = entry_id
                applied = int(entry_id.split(b"-")[0]) / 1000  # Redis' clock at XADD: when it was applied
                for attr in json.loads(fields[b"view"])["attributes"].values():
                    self.seen.setdefault(attr["eventId"], applied)


def measure(rate: int, lines: list[bytes], config: dict, views: AppliedViews, outputs: JobOutputs) -> dict:
    """Produce `lines` at `rate` events/s, follow Redis until they are applied (or 30 s more pass)."""
    seconds = len(lines) / rate
    sent: dict[str, float] = {}
    p = producer(config, **{"linger.ms": 0})
    docs = [json.loads(line) for line in lines]  # parsed before the clock starts
    events = [(doc["eventId"], doc["contextDelta"]["userId"].encode(), line) for doc, line in zip(docs, lines)]

    def produce() -> None:
        start = time.perf_counter()
        for i, (event_id, key, line) in enumerate(events):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[event_id] = time.time()
            p.produce("context.events", key=key, value=line)
            p.poll(0)
        p.flush(30)

    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    deadline = time.time() + seconds + 30
    while time.time() < deadline and (producing.is_alive() or len(views.seen.keys() & sent.keys()) < len(sent)):
        views.poll()
        if not producing.is_alive() and time.time() > deadline - 25:  # 5 s after the last event is enough
            break
    result: dict = {"rate": rate, "events": len(lines)}
    for name, seen in (("", views.seen), ("job_", outputs.seen)):
        latencies = [(seen[e] - t) * 1000 for e, t in sent.items() if e in seen]
        result[f"{name}measured"] = len(latencies)
        if latencies:
            result.update({f"{name}p{int(q * 100)}_ms": round(percentile(latencies, q), 1) for q in (0.5, 0.95, 0.99)})
    return result


def check_running(client, warm: dict) -> None:
    """Stop with the job's own error if it is not running; say how far the warm-up got (stderr)."""
    status = client.get_job_status().result()
    print(f"latency bench: warm-up {warm['events']:,} events, {warm['job_measured']:,} left the job, "
          f"{warm['measured']:,} applied in Redis; job {status}", file=sys.stderr, flush=True)
    if str(status) != "JobStatus.RUNNING":
        try:
            client.get_job_execution_result().result()
        except Exception as exc:  # the job's failure, shortened: the bench cannot measure without it
            raise SystemExit(f"latency bench: the job is {status}: {str(exc).splitlines()[0][:500]}") from None
        raise SystemExit(f"latency bench: the job is {status}")
    if not warm["job_measured"]:
        raise SystemExit("latency bench: no view left the job during the warm-up; see the Flink logs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, action="append", help="events/s produced, repeatable "
                        "(default 500, 2000, 5000)")
    parser.add_argument("--seconds", type=int, default=20, help="how long to produce per rate (default 20)")
    parser.add_argument("--delivery", default="at-least-once", choices=["at-least-once", "exactly-once"])
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--window", help="batch window, e.g. 20ms (default: jobs.yaml)")
    args = parser.parse_args()
    import redis

    # a kill must still stop the servers and the connector (the finally below): leftovers skew the next run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [f"batching.window={args.window}"] if args.window else [])
    with tempfile.TemporaryDirectory(prefix="ctxsync-latency-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        servers.up(["noida", "redis"])
        client, stop, outputs = None, multiprocessing.get_context("spawn").Event(), None
        try:
            endpoints = servers.endpoints()
            config = {"bootstrap.servers": endpoints["kafka"]}
            ensure_topics(config, [TopicSpec("context.events", 2), TopicSpec("context.views", 2, (("cleanup.policy", "compact"),))]
                          + [TopicSpec(f"context.{k}", 2) for k in ("history", "violations")]
                          + [TopicSpec("context.dlq", 1)])
            spec = KafkaJobSpec(bootstrap=endpoints["kafka"], bounded=False, start="earliest", delivery=args.delivery,
                                checkpoint_interval_ms=args.checkpoint_ms)
            client = start_job(spec, job, Path(tmp) / "checkpoints")
            multiprocessing.get_context("spawn").Process(
                target=run_connector, args=(config, endpoints["redis"], stop), daemon=True).start()
            views = AppliedViews(redis.Redis.from_url(endpoints["redis"]))
            outputs = JobOutputs(config)
            rates = args.rate or [500, 2000, 5000]
            # one stream for all phases, so event times only move forward (no late or stale updates)
            stream = generate_lines(GeneratorOptions(events=WARM_UP + sum(rates) * args.seconds, users=10_000, seed=5,
                                                     invalid_rate=0, duplicate_rate=0, late_rate=0,
                                                     conflict_rate=0, delete_rate=0, mean_gap_ms=1))
            # warm-up: job started, checkpoints done, and the JVM's compilers past the hot paths (measured: a
            # fresh Kafka job runs at a third of its steady rate for its first ~40 s)
            warm = measure(1000, list(islice(stream, WARM_UP)), config, views, outputs)
            check_running(client, warm)
            for rate in rates:
                result = measure(rate, list(islice(stream, rate * args.seconds)), config, views, outputs)
                result.update(delivery=args.delivery, checkpoint_ms=args.checkpoint_ms, window_ms=job.batching.window)
                print(json.dumps(result), flush=True)
        finally:
            stop.set()
            if outputs is not None:
                outputs.stop.set()
            if client is not None:
                try:
                    client.cancel().result()
                except Exception:
                    pass
            servers.down()


if __name__ == "__main__":
    main()

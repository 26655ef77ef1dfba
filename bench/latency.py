"""p95 propagation latency: an event produced to Kafka -> its history record readable downstream.

    python bench/latency.py [--rate 500] [--seconds 30] [--delivery at-least-once|exactly-once]

Starts loopback servers (noida-db), runs the context-sync Kafka job unbounded on local Flink, produces
generated events at a fixed rate, and consumes `context.history` (read_committed). Latency per event =
time its history record was consumed - time it was produced. With exactly-once delivery, records become
visible only when the checkpoint that commits their transaction completes, so latency is bounded below by
the checkpoint interval; at-least-once shows the pipeline's own latency. Not a test: numbers depend on load.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ctxsync.config import resolve_job  # noqa: E402
from ctxsync.generate import GeneratorOptions, generate_lines  # noqa: E402
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer  # noqa: E402
from ctxsync.servers import LocalServers  # noqa: E402
from pipelines.flink_kafka import KafkaJobSpec, build_kafka_job  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_job(spec: KafkaJobSpec, job):
    """Submit the unbounded Kafka job to a local mini-cluster; returns its JobClient."""
    from ctxsync.jars import kafka_jars
    from pipelines.flink_env import flink_environment

    env = flink_environment(job.flink, parallelism=1, jars=[str(p) for p in kafka_jars()])
    env.enable_checkpointing(spec.checkpoint_interval_ms)
    build_kafka_job(env, spec, job.settings.to_settings(), 1, job.batching.to_batching())
    return env.execute_async("ctxsync latency bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="events per second produced (default 500)")
    parser.add_argument("--seconds", type=int, default=30, help="how long to produce (default 30)")
    parser.add_argument("--delivery", default="at-least-once", choices=["at-least-once", "exactly-once"])
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    args = parser.parse_args()
    from confluent_kafka import Consumer

    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    with tempfile.TemporaryDirectory(prefix="ctxsync-latency-") as tmp:
        servers = LocalServers(Path(tmp) / "servers")
        servers.up(["noida"])
        client = None
        try:
            bootstrap = servers.endpoints()["kafka"]
            config = {"bootstrap.servers": bootstrap}
            ensure_topics(config, [TopicSpec(f"context.{k}", 2) for k in ("events", "views", "history", "violations")]
                          + [TopicSpec("context.dlq", 1)])
            spec = KafkaJobSpec(bootstrap=bootstrap, bounded=False, start="earliest", delivery=args.delivery,
                                checkpoint_interval_ms=args.checkpoint_ms)
            client = start_job(spec, job)
            consumer = Consumer({**config, "group.id": "latency-bench", "auto.offset.reset": "earliest",
                                 "isolation.level": "read_committed", "enable.auto.commit": False})
            consumer.subscribe(["context.history"])
            sent: dict[str, float] = {}
            latencies: list[float] = []
            total = args.rate * args.seconds
            lines = list(generate_lines(GeneratorOptions(events=total, users=1000, seed=5, invalid_rate=0,
                                                         duplicate_rate=0)))
            warmup = threading.Event()

            def produce() -> None:
                p = producer(config, **{"linger.ms": 0})
                warmup.wait(120)
                start = time.perf_counter()
                for i, line in enumerate(lines):
                    delay = start + i / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    doc = json.loads(line)
                    sent[doc["eventId"]] = time.time()
                    p.produce("context.events", key=doc["contextDelta"]["userId"].encode(), value=line)
                    p.poll(0)
                p.flush(30)

            producing = threading.Thread(target=produce, daemon=True)
            producing.start()
            time.sleep(15)  # let the job start and its first checkpoint complete
            warmup.set()
            deadline = time.time() + args.seconds + 60
            while len(latencies) < len(lines) and time.time() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                now = time.time()
                event_id = json.loads(msg.value())["eventId"]
                if event_id in sent:
                    latencies.append((now - sent[event_id]) * 1000)
            consumer.close()
            result = {"delivery": args.delivery, "rate": args.rate, "events": len(lines),
                      "measured": len(latencies), "checkpoint_ms": args.checkpoint_ms}
            if latencies:
                result.update({f"p{int(q * 100)}_ms": round(percentile(latencies, q), 1) for q in (0.5, 0.95, 0.99)})
            print(json.dumps(result), flush=True)
        finally:
            if client is not None:
                try:
                    client.cancel().result()
                except Exception:
                    pass
            servers.down()


if __name__ == "__main__":
    main()

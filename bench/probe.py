"""The latency bench's helper processes: producer, observer and (in-process mode) the Redis connector.

    python bench/probe.py produce --bootstrap HOST:PORT [--users 10000 --seed 5 --probe-every 10]
    python bench/probe.py observe --bootstrap HOST:PORT --redis URL [--stream ctx:changes:bench-probe]
    python bench/probe.py connector --bootstrap HOST:PORT --redis URL

Each runs in a process of its own, so its CPU shows on its own row of the bench's table and never competes
for the interpreter lock of the process that hosts the Flink client. They talk to bench/latency.py in JSON
lines over stdin/stdout and exit when stdin closes (the bench died: nothing is left running).

Probe events: the users whose crc32(userId) % probe_every == 0 are probe users. Every event of a probe user
is renamed to `probe-<userId>` and targets only the model `bench-probe`, so its views, and only they, land
in the change stream `<prefix>:changes:bench-probe`; the observer reads that one small stream. All of a
user's events are probes or none are, so versions, expectedVersion and per-user order stay as generated.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

PROBE_MODEL = "bench-probe"
WRITER_MODEL = "bench-writer"  # publish(wait=True) round trips (write_main)
PROBE_PREFIX = "probe-"
BURST_EVERY_S, BURST_S = 1.0, 0.5  # the job-output reader: a burst of at most 0.5 s every second


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def commands() -> Iterator[dict[str, Any]]:
    """The bench's commands, one JSON object a line; ends when the bench closes stdin."""
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


# --- producer --------------------------------------------------------------------------------------------

Event = tuple[bytes, bytes, str | None, str | None]  # key, value, probe eventId, probe userId


def as_probe(line: bytes, probe_every: int) -> Event:
    """The event as produced: a probe user's event renamed and retargeted (see the module docstring)."""
    doc = orjson.loads(line)
    user = doc["contextDelta"]["userId"]
    if zlib.crc32(user.encode()) % probe_every:
        return user.encode(), line, None, None
    user = PROBE_PREFIX + user
    doc["contextDelta"]["userId"] = user
    doc.setdefault("propagationRules", {})["targetModels"] = [PROBE_MODEL]
    return user.encode(), orjson.dumps(doc), doc["eventId"], user


class Producer:
    """Produces prepared events at a fixed rate; records when each probe event was handed to the client."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ctxsync.generate import GeneratorOptions, generate_lines
        from ctxsync.io.kafka_io import producer

        # one stream for every phase, so event times only move forward (no late or stale updates)
        self.stream = generate_lines(GeneratorOptions(
            events=10**9, users=args.users, seed=args.seed, invalid_rate=0, duplicate_rate=0, late_rate=0,
            conflict_rate=0, delete_rate=0, mean_gap_ms=1))
        self.producer = producer({"bootstrap.servers": args.bootstrap}, **{"linger.ms": args.linger_ms})
        self.topic, self.tick_s, self.probe_every = args.topic, args.tick_ms / 1000, args.probe_every
        self.events: list[Event] = []

    def prepare(self, count: int) -> dict[str, Any]:
        """Generate and encode the next `count` events before the clock starts (not in the measured CPU)."""
        self.events = [as_probe(line, self.probe_every) for line in islice(self.stream, count)]
        return {"ready": len(self.events), "probes": sum(1 for e in self.events if e[2])}

    def _send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key)
                return
            except BufferError:  # the client's queue is full: the broker is behind; wait for it
                self.producer.poll(0.01)

    def run(self, rate: float) -> dict[str, Any]:
        """Send the prepared events on schedule (event i at start + i/rate), waking every tick at most.

        Events due within one tick go out together; each probe's time is taken at its own send, so the
        tick adds no error to a latency, only burstiness (a tick of 5 ms at 2,000/s: bursts of 10)."""
        sent: dict[str, float] = {}
        last: dict[str, str] = {}  # probe user -> its last eventId in this phase (the drain waits for it)
        events, n, behind = self.events, len(self.events), 0.0
        produce, topic, clock = self.producer.produce, self.topic, time.time  # the loop is the bench's cost
        started, wall = time.perf_counter(), time.time()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                key, value, event_id, user = events[i]
                if event_id is not None:
                    sent[event_id] = clock() * 1000
                    last[user] = event_id
                try:
                    produce(topic, value, key)
                except BufferError:
                    self._send(key, value)
                i += 1
            self.producer.poll(0)
            now = time.perf_counter()
            behind = max(behind, now - started - (i - 1) / rate)
            time.sleep(max(started + i / rate - now, self.tick_s))
        ended = time.perf_counter()
        unsent = self.producer.flush(30)
        return {"sent": sent, "last": sorted(last.values()), "produced": n - unsent, "started": wall,
                "seconds": ended - started, "max_behind_ms": round(behind * 1000, 1)}


def produce_main(args: argparse.Namespace) -> None:
    p = Producer(args)
    for command in commands():
        if command["cmd"] == "prepare":
            reply(p.prepare(command["events"]))
        elif command["cmd"] == "go":
            reply(p.run(command["rate"]))


# --- observer --------------------------------------------------------------------------------------------

class Seen:
    """eventId -> when it was first seen at one point (ms since the epoch, the point's own clock)."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.new: dict[str, float] = {}
        self.lock = threading.Lock()
        self.error: str | None = None

    def add(self, event_ids: list[str], at_ms: float) -> None:
        with self.lock:
            for event_id in event_ids:
                if event_id not in self.known:
                    self.known.add(event_id)
                    self.new[event_id] = at_ms

    def take(self) -> dict[str, float]:
        with self.lock:
            new, self.new = self.new, {}
        return new


def event_ids(view_json: bytes) -> list[str]:
    return [attr["eventId"] for attr in orjson.loads(view_json)["attributes"].values()]


def follow_stream(url: str, stream: str, seen: Seen, stop: threading.Event) -> None:
    """The probe change stream: an entry's id is Redis' clock when the view was applied."""
    import redis

    client, position = redis.Redis.from_url(url), "0-0"
    while not stop.is_set():
        try:
            replies = client.xread({stream: position}, count=1000, block=200) or []
        except Exception as exc:  # noqa: BLE001 - reported to the bench, which decides
            seen.error = f"redis: {exc}"
            time.sleep(0.5)
            continue
        for _, entries in replies:
            for entry_id, fields in entries:
                position = entry_id
                seen.add(event_ids(fields[b"view"]), int(entry_id.split(b"-")[0]))


def follow_views(bootstrap: str, topic: str, seen: Seen, stop: threading.Event) -> None:
    """The job's output topic from its start: a probe view's Kafka timestamp is when the job's sink
    produced it (read_uncommitted: exactly-once shows the sink's time, not the commit). Only probe keys
    (`<category>:probe-...`) are parsed."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency-bench-observer",
                         "enable.auto.commit": False, "isolation.level": "read_uncommitted",
                         "fetch.wait.max.ms": 50})
    partitions: list[int] = []
    while not partitions and not stop.is_set():  # `ctxsync run` creates the topic when it starts
        metadata = consumer.list_topics(topic, timeout=2).topics.get(topic)
        partitions = sorted(metadata.partitions) if metadata is not None and metadata.error is None else []
        if not partitions:
            time.sleep(0.5)
    assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    consumer.assign(assigned)
    marker = b":" + PROBE_PREFIX.encode()
    while not stop.is_set():
        # in bursts, paused in between: a broker that answers fetches at once instead of waiting for
        # data (noida-db ignores fetch.wait.max.ms) would otherwise keep this process and the broker busy
        # (measured idle: 0.2 + 0.14 cores). Record timestamps are the broker's, so reading late costs
        # no accuracy, only up to a second more drain.
        consumer.resume(assigned)
        until = time.monotonic() + BURST_S
        while time.monotonic() < until and not stop.is_set():
            messages = consumer.consume(10_000, timeout=0.1)
            for message in messages:
                if message.error() is None and marker in (message.key() or b""):
                    seen.add(event_ids(message.value()), message.timestamp()[1])
            if not messages:
                break
        consumer.pause(assigned)
        stop.wait(BURST_EVERY_S)
    consumer.close()


def observe_main(args: argparse.Namespace) -> None:
    stop = threading.Event()
    points = {"redis": Seen(), "job": Seen()}
    threads = [threading.Thread(target=follow_stream, args=(args.redis, args.stream, points["redis"], stop),
                                daemon=True)]
    if args.views_topic:
        threads.append(threading.Thread(target=follow_views, args=(args.bootstrap, args.views_topic,
                                                                    points["job"], stop), daemon=True))
    for thread in threads:
        thread.start()
    for command in commands():
        if command["cmd"] == "take":
            reply({name: {"seen": s.take(), "error": s.error} for name, s in points.items()})
    stop.set()


# --- writer: publish(wait=True) round trips --------------------------------------------------------------

def write_main(args: argparse.Namespace) -> None:
    """A model that publishes one event every `--every-ms` with `publish(wait=True)` and times each round
    trip (produce -> the job applies it in Redis -> its outcome), while the producer loads the pipeline."""
    from ctxsync.client import ContextClient, from_urls

    client = ContextClient(from_urls(args.redis, args.bootstrap, events_topic=args.topic), WRITER_MODEL)
    active, waits, errors = threading.Event(), [], []

    def loop() -> None:
        n = 0
        while True:
            active.wait()
            n += 1
            started = time.perf_counter()
            try:
                client.publish(f"writer-{n % 100}", {"segment": f"s{n}"}, wait=True, timeout_s=10)
                waits.append((time.perf_counter() - started) * 1000)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the loop goes on
                errors.append(str(exc)[:200])
            time.sleep(max(args.every_ms / 1000 - (time.perf_counter() - started), 0))

    threading.Thread(target=loop, daemon=True).start()
    for command in commands():
        if command["cmd"] == "start":
            waits.clear()
            errors.clear()
            active.set()
            reply({"ok": True})
        elif command["cmd"] == "take":
            active.clear()
            reply({"waits": list(waits), "errors": errors[:5], "failed": len(errors)})


# --- connector -------------------------------------------------------------------------------------------

def connector_main(args: argparse.Namespace) -> None:
    """The Redis view connector as `ctxsync connect redis` runs it, on the bench's servers (no profile to
    resolve: in-process mode has no dev directory)."""
    import logging

    import redis

    from ctxsync.io.connectors import redis_connector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    connector = redis_connector({"bootstrap.servers": args.bootstrap}, redis.Redis.from_url(args.redis),
                                args.prefix, args.maxlen, args.views_topic, args.dlq_topic)
    stats = connector.run(False, stop)
    print(f"redis connector: {stats}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role", required=True)
    produce = sub.add_parser("produce")
    produce.add_argument("--bootstrap", required=True)
    produce.add_argument("--topic", default="context.events")
    produce.add_argument("--users", type=int, default=10_000)
    produce.add_argument("--seed", type=int, default=5)
    produce.add_argument("--probe-every", type=int, default=10)
    produce.add_argument("--linger-ms", type=float, default=1)
    produce.add_argument("--tick-ms", type=float, default=5)
    observe = sub.add_parser("observe")
    observe.add_argument("--bootstrap", required=True)
    observe.add_argument("--redis", required=True)
    observe.add_argument("--stream", default=f"ctx:changes:{PROBE_MODEL}")
    observe.add_argument("--views-topic", default="context.views", help="'' = do not follow the job's output")
    write = sub.add_parser("write")
    write.add_argument("--bootstrap", required=True)
    write.add_argument("--redis", required=True)
    write.add_argument("--topic", default="context.events")
    write.add_argument("--every-ms", type=float, default=100)
    connector = sub.add_parser("connector")
    connector.add_argument("--bootstrap", required=True)
    connector.add_argument("--redis", required=True)
    connector.add_argument("--prefix", default="ctx")
    connector.add_argument("--maxlen", type=int, default=10_000)
    connector.add_argument("--views-topic", default="context.views")
    connector.add_argument("--dlq-topic", default="context.dlq")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us (stdin closed, or SIGTERM)
    {"produce": produce_main, "observe": observe_main, "write": write_main,
     "connector": connector_main}[args.role](args)


if __name__ == "__main__":
    main()

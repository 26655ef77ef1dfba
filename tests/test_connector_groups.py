"""Connector copies in one consumer group on the real broker: they split the partitions, a copy killed with
-9 or stopped with SIGTERM hands its partitions to the others, nothing is lost, and no record is written by
two copies except the uncommitted last batch of a copy killed with -9.

Each copy is `ctxsync connect redis|elasticsearch -v` in a process of its own; `-v` logs every batch's
partitions and offsets, and every assignment change, which is what the proof below reads."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import yaml

from ctxsync.config import Profile, resolve_job
from ctxsync.io.connectors import ES_GROUP, REDIS_GROUP
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.io.kafka_positions import committed_offsets, partition_ends
from ctxsync.io.redis_views import RedisViewSink
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT

pytestmark = pytest.mark.servers

PARTITIONS = 4
OWNS = re.compile(r"owns (.*)$")
OWNED = re.compile(r"(\S+)\[([\d,]*)\]")
WROTE = re.compile(r"wrote (.*)$")
RANGE = re.compile(r"(\S+)/(\d+):(\d+)-(\d+)")
Partition = tuple[str, int]
Write = tuple[str, int, int, int]  # topic, partition, first and last offset of one batch


def view(n: int) -> dict:
    """A view of user n, one per user: a record lost anywhere is a user missing in Redis."""
    return {"key": f"behavioral:u{n:06d}", "category": "behavioral", "userId": f"u{n:06d}", "version": 1,
            "updatedAt": "2026-11-24T10:00:00.000Z", "targetModels": ["churn-predictor"],
            "attributes": {"segment": {"value": n, "confidence": 1, "updatedAt": "2026-11-24T10:00:00.000Z",
                                       "eventId": f"e{n}", "modelId": "m1"}}}


def history(n: int) -> dict:
    """A history record (even n) or a violation (odd n) of its own event: the connector reads both topics
    and copies may own partitions of either; a record lost anywhere is a document missing in Elasticsearch."""
    if n % 2:
        return {"kind": "ordering_violation", "key": f"behavioral:u{n:06d}", "eventId": f"e{n:06d}",
                "timestamp": "2026-11-24T09:59:00.000Z", "maxTimestamp": "2026-11-24T10:00:00.000Z",
                "lagMs": 60000, "policy": "last-write-wins", "modelId": "m1"}
    return {"eventId": f"e{n:06d}", "timestamp": "2026-11-24T10:00:00.000Z", "eventType": "context.updated",
            "source": {"modelId": "m1", "instanceId": "i1"},
            "contextDelta": {"userId": f"u{n:06d}", "updates": {"segment": {"value": n, "confidence": 1}}},
            "aggregates": [f"behavioral:u{n:06d}"], "applied": ["segment"], "stale": []}


@dataclass(frozen=True)
class Target:
    """One connector kind: its group, the topics it reads (the feed fills them in turn), the records."""

    name: str
    group: str
    topic_kinds: tuple[str, ...]
    record: Callable[[int], dict]
    batch: int  # records the feed sends every 50 ms


TARGETS = [Target("redis", REDIS_GROUP, ("views",), view, 20),
           Target("elasticsearch", ES_GROUP, ("history", "violations"), history, 10)]  # noida-db: ~400 docs/s


def jobs_file(tmp_path: Path, topics: dict[str, str]) -> Path:
    """jobs.yaml whose local profile reads this test's topics."""
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    data = job.profiles["local"].model_dump()
    data["sink"]["topics"] = {**data["sink"]["topics"], **topics}
    job = job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    return path


def owned_in(line: str) -> set[Partition]:
    text = OWNS.search(line).group(1)
    return {(topic, int(p)) for topic, ps in OWNED.findall(text) for p in ps.split(",") if p}


@dataclass
class Copy:
    """One `ctxsync connect <target> -v` process and what its log says."""

    name: str
    target: str
    process: subprocess.Popen
    log: Path
    writes: list[Write] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def owns(self) -> set[Partition] | None:
        """The partitions the copy owns by its latest assignment line (None before the first)."""
        owned = [owned_in(line) for line in self.lines() if OWNS.search(line)]
        return owned[-1] if owned else None

    def check_writes_owned(self) -> None:
        """Every batch the copy wrote is of partitions it owned at that moment (its own log's order)."""
        owned: set[Partition] = set()
        for line in self.lines():
            if OWNS.search(line):
                owned = owned_in(line)
            match = WROTE.search(line)
            if match:
                for topic, partition, first, last in RANGE.findall(match.group(1)):
                    assert (topic, int(partition)) in owned, f"{self.name} wrote {topic}/{partition} unowned: {line}"
                    self.writes.append((topic, int(partition), int(first), int(last)))


def start_copy(name: str, target: str, jobs: Path, tmp_path: Path, run_dir: Path) -> Copy:
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "CTXSYNC_DEV_DIR": str(run_dir)}
    process = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "connect", target, "-v", "--metrics-port", "0",
                                "--jobs", str(jobs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=log.open("wb"), text=True)
    return Copy(name, target, process, log)


def split(x: Copy, y: Copy, everything: set[Partition]) -> bool:
    """The two copies own disjoint shares that together are every partition."""
    a, b = x.owns(), y.owns()
    return bool(a) and bool(b) and a | b == everything and not a & b


def wait_for(condition, what: str, copies: list[Copy], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for copy in copies:
            assert copy.process.poll() is None, f"{copy.name} exited: {copy.lines()[-5:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + \
            "; ".join(f"{c.name} owns {c.owns()}" for c in copies)
        time.sleep(0.2)


def stop(copy: Copy) -> None:
    """SIGTERM: the copy commits, leaves the group and prints its counts."""
    copy.process.send_signal(signal.SIGTERM)
    out, _ = copy.process.communicate(timeout=120)
    assert copy.process.returncode == 0, copy.lines()[-10:]
    assert out.startswith(f"{copy.target}: ")


class Feed:
    """Produces numbered records, keyed, in a thread, until stopped (a stream the copies read mid-way)."""

    def __init__(self, config: dict, topics: list[str], target: Target) -> None:
        self.config, self.topics, self.target, self.sent = config, topics, target, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        p = producer(self.config)
        while not self.done.is_set():
            for _ in range(self.target.batch):
                p.produce(self.topics[self.sent % len(self.topics)], key=f"u{self.sent:06d}".encode(),
                          value=orjson.dumps(self.target.record(self.sent)))
                self.sent += 1
            p.poll(0)
            time.sleep(0.05)
        assert p.flush(30) == 0

    def __enter__(self) -> "Feed":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(60)


def overlaps(a: list[Write], b: list[Write]) -> dict[Partition, int]:
    """Per partition, how many offsets both lists of written ranges cover."""
    found: dict[Partition, int] = {}
    for ta, pa, fa, la in a:
        for tb, pb, fb, lb in b:
            if (ta, pa) == (tb, pb) and min(la, lb) >= max(fa, fb):
                found[(ta, pa)] = found.get((ta, pa), 0) + min(la, lb) - max(fa, fb) + 1
    return found


def committed(config: dict, group: str, topics: list[str]) -> int:
    return sum(max(o, 0) for topic in topics
               for o in committed_offsets(config, group, topic, list(range(PARTITIONS))).values())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_copies_split_partitions_and_take_over_from_a_killed_and_a_stopped_copy(
        servers, redis_client, es_client, unique, tmp_path, target):
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    prefix = f"grp{unique}"
    topics = {kind: f"{prefix}.{kind}" for kind in ("views", "history", "violations", "dlq")}
    ensure_topics(config, [TopicSpec(t, 1 if kind == "dlq" else PARTITIONS) for kind, t in topics.items()])
    data = [topics[kind] for kind in target.topic_kinds]
    everything = {(t, p) for t in data for p in range(PARTITIONS)}
    jobs = jobs_file(tmp_path, topics)
    copies: list[Copy] = []
    try:
        a, b = (start_copy(name, target.name, jobs, tmp_path, servers.run_dir) for name in ("a", "b"))
        copies += [a, b]
        wait_for(lambda: split(a, b, everything), "a and b to split the partitions", copies)
        with Feed(config, data, target) as feed:
            wait_for(lambda: feed.sent > 1500 and committed(config, target.group, data) > 500,
                     "writes by both copies", copies)
            a_owned = a.owns()
            os.kill(a.process.pid, signal.SIGKILL)  # no goodbye: b waits for a's session to expire
            a.process.communicate(timeout=30)
            copies.remove(a)
            wait_for(lambda: b.owns() == everything, "b to take a's partitions", copies)
            c = start_copy("c", target.name, jobs, tmp_path, servers.run_dir)
            copies.append(c)
            wait_for(lambda: split(b, c, everything), "b and c to split the partitions", copies)
            sent_at_split = feed.sent
            wait_for(lambda: feed.sent > sent_at_split + 1000, "more input for b and c", copies)
            b_owned = b.owns()
            stop(b)  # SIGTERM: b commits what it wrote and leaves; c takes over at once
            copies.remove(b)
            wait_for(lambda: c.owns() == everything, "c to take b's partitions", copies)
            sent_at_stop = feed.sent
            wait_for(lambda: feed.sent > sent_at_stop + 500, "input for c alone", copies)
        # c catches up with everything produced, then stops
        sent = feed.sent
        high = {(t, p): end for t in data for p, end in partition_ends(config, t)[1].items()}
        wait_for(lambda: committed(config, target.group, data) >= sum(high.values()), "c to commit every record",
                 copies, timeout_s=300)
        stop(c)
        copies.remove(c)

        # nothing lost: every record is in the sink
        if target.name == "redis":
            users = {v["userId"] for v in RedisViewSink(redis_client).read_all()}
            assert users == {f"u{n:06d}" for n in range(sent)}
        else:
            es_client.indices.refresh(index="context-*")  # ids are unique: no document twice
            assert es_client.count(index="context-history-*")["count"] == (sent + 1) // 2
            assert es_client.count(index="context-violations")["count"] == sent // 2

        # each copy wrote only partitions it owned; who wrote which offsets
        for copy in (a, b, c):
            copy.check_writes_owned()
        assert {(t, p) for t, p, _, _ in a.writes} <= a_owned and a.writes
        assert {(t, p) for t, p, _, _ in b.writes} & b_owned
        # a clean handover (SIGTERM) re-reads nothing: b and c never wrote the same record
        assert overlaps(b.writes, c.writes) == {}
        # after kill -9, b re-read at most a's last uncommitted batch of each partition a wrote
        last_batch = {(t, p): max((l, l - f + 1) for u, q, f, l in a.writes if (u, q) == (t, p))[1]
                      for t, p, _, _ in a.writes}
        rewritten = overlaps(a.writes, b.writes)
        for partition, count in rewritten.items():
            assert count <= last_batch[partition]
        assert not overlaps(a.writes, c.writes)
        # and no offset was skipped: the copies' writes cover every partition from 0 to its end
        for partition, end in high.items():
            covered = {o for copy in (a, b, c) for t, p, first, last in copy.writes if (t, p) == partition
                       for o in range(first, last + 1)}
            assert covered == set(range(end)), f"{partition}: offsets missing"
        print(f"\n[connector groups, {target.name}] {sent:,} records; a (kill -9) owned {sorted(a_owned)}, b "
              f"re-wrote {sum(rewritten.values())} of its records; b (SIGTERM) -> c re-wrote 0; records written "
              f"by a/b/c: {[sum(l - f + 1 for _, _, f, l in x.writes) for x in (a, b, c)]}")
    finally:
        for copy in copies:
            copy.process.kill()
            copy.process.communicate(timeout=30)

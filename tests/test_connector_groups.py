"""Connector copies in one consumer group on the real broker: they split the partitions, a copy killed with
-9 or stopped with SIGTERM hands its partitions to the others, nothing is lost, and no record is written by
two copies except the uncommitted last batch of a copy killed with -9.

Each copy is `ctxsync connect redis -v` in a process of its own; `-v` logs every batch's partitions and
offsets, and every assignment change, which is what the proof below reads."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import yaml

from ctxsync.config import Profile, resolve_job
from ctxsync.io.connectors import REDIS_GROUP
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.io.kafka_positions import committed_offsets
from ctxsync.io.redis_views import RedisViewSink
from tests.fixtures_servers import redis_client, servers, unique  # noqa: F401
from tests.helpers import ROOT

pytestmark = pytest.mark.servers

PARTITIONS = 4
OWNS = re.compile(r"owns (.*)$")
WROTE = re.compile(r"wrote (.*)$")
RANGE = re.compile(r"(\S+)/(\d+):(\d+)-(\d+)")


def view(n: int) -> dict:
    """A view of user n, one per user: a record lost anywhere is a user missing in Redis."""
    return {"key": f"behavioral:u{n:06d}", "category": "behavioral", "userId": f"u{n:06d}", "version": 1,
            "updatedAt": "2026-11-24T10:00:00.000Z", "targetModels": ["churn-predictor"],
            "attributes": {"segment": {"value": n, "confidence": 1, "updatedAt": "2026-11-24T10:00:00.000Z",
                                       "eventId": f"e{n}", "modelId": "m1"}}}


def jobs_file(tmp_path: Path, topic: str, dlq: str) -> Path:
    """jobs.yaml whose local profile reads this test's views topic."""
    job = resolve_job(ROOT / "jobs.yaml", "context-sync", [])
    data = job.profiles["local"].model_dump()
    data["sink"]["topics"] = {**data["sink"]["topics"], "views": topic, "dlq": dlq}
    job = job.model_copy(update={"profiles": {**job.profiles, "local": Profile.model_validate(data)}})
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    return path


@dataclass
class Copy:
    """One `ctxsync connect redis -v` process and what its log says."""

    name: str
    process: subprocess.Popen
    log: Path
    stdout: str = ""
    writes: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, first, last offset)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def owns(self) -> set[int] | None:
        """The partitions the copy owns by its latest assignment line (None before the first)."""
        owned = [self._owned_in(line) for line in self.lines() if OWNS.search(line)]
        return owned[-1] if owned else None

    def check_writes_owned(self) -> None:
        """Every batch the copy wrote is of partitions it owned at that moment (its own log's order)."""
        owned: set[int] = set()
        for line in self.lines():
            if OWNS.search(line):
                owned = self._owned_in(line)
            match = WROTE.search(line)
            if match:
                for _, partition, first, last in RANGE.findall(match.group(1)):
                    assert int(partition) in owned, f"{self.name} wrote partition {partition} it did not own: {line}"
                    self.writes.append((int(partition), int(first), int(last)))

    @staticmethod
    def _owned_in(line: str) -> set[int]:
        text = OWNS.search(line).group(1)
        return {int(p) for p in re.findall(r"\d+", text.split("[", 1)[1])} if "[" in text else set()


def start_copy(name: str, jobs: Path, tmp_path: Path, run_dir: Path) -> Copy:
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "CTXSYNC_DEV_DIR": str(run_dir)}
    process = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "connect", "redis", "-v", "--metrics-port", "0",
                                "--jobs", str(jobs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=log.open("wb"), text=True)
    return Copy(name, process, log)


def wait_for(condition, what: str, copies: list[Copy], timeout_s: float = 120) -> None:
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
    copy.stdout, _ = copy.process.communicate(timeout=60)
    assert copy.process.returncode == 0, copy.lines()[-10:]
    assert copy.stdout.startswith("redis: ")


class Feed:
    """Produces one view per user, keyed, in a thread, until stopped (a stream the copies read mid-way)."""

    def __init__(self, config: dict, topic: str) -> None:
        self.config, self.topic, self.sent = config, topic, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        p = producer(self.config)
        while not self.done.is_set():
            for _ in range(20):
                record = view(self.sent)
                p.produce(self.topic, key=record["key"].encode(), value=orjson.dumps(record))
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


def overlaps(a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]) -> dict[int, int]:
    """Per partition, how many offsets both lists of written ranges cover."""
    found: dict[int, int] = {}
    for pa, fa, la in a:
        for pb, fb, lb in b:
            if pa == pb and min(la, lb) >= max(fa, fb):
                found[pa] = found.get(pa, 0) + min(la, lb) - max(fa, fb) + 1
    return found


def test_copies_split_partitions_and_take_over_from_a_killed_and_a_stopped_copy(
        servers, redis_client, unique, tmp_path):
    config = {"bootstrap.servers": servers.endpoints()["kafka"]}
    topic, dlq = f"grp{unique}.views", f"grp{unique}.dlq"
    ensure_topics(config, [TopicSpec(topic, PARTITIONS), TopicSpec(dlq, 1)])
    jobs = jobs_file(tmp_path, topic, dlq)
    everything = set(range(PARTITIONS))
    copies: list[Copy] = []
    try:
        a, b = (start_copy(name, jobs, tmp_path, servers.run_dir) for name in ("a", "b"))
        copies += [a, b]
        # two copies split the four partitions
        wait_for(lambda: a.owns() and b.owns() and a.owns() | b.owns() == everything
                 and not a.owns() & b.owns(), "a and b to split the partitions", copies)
        with Feed(config, topic) as feed:
            wait_for(lambda: feed.sent > 1500 and redis_client.dbsize() > 500, "writes by both copies", copies)
            a_owned = a.owns()
            os.kill(a.process.pid, signal.SIGKILL)  # no goodbye: b waits for a's session to expire
            a.process.communicate(timeout=30)
            copies.remove(a)
            wait_for(lambda: b.owns() == everything, "b to take a's partitions", copies)
            c = start_copy("c", jobs, tmp_path, servers.run_dir)
            copies.append(c)
            wait_for(lambda: c.owns() and b.owns() and b.owns() | c.owns() == everything
                     and not b.owns() & c.owns(), "b and c to split the partitions", copies)
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
        high = {p: o for p, o in enumerate(_ends(config, topic))}
        wait_for(lambda: sum(committed_offsets(config, REDIS_GROUP, topic, list(high)).values()) >= sum(high.values()),
                 "c to commit every record", copies)
        stop(c)
        copies.remove(c)

        # nothing lost: every user's view is in Redis
        users = {v["userId"] for v in RedisViewSink(redis_client).read_all()}
        assert users == {f"u{n:06d}" for n in range(sent)}

        # each copy wrote only partitions it owned; who wrote which offsets
        for copy in (a, b, c):
            copy.check_writes_owned()
        assert {p for p, _, _ in a.writes} == a_owned and {p for p, _, _ in b.writes} >= b_owned
        # a clean handover (SIGTERM) re-reads nothing: b and c never wrote the same record
        assert overlaps(b.writes, c.writes) == {}
        # after kill -9, b re-read at most a's last uncommitted batch of each partition a owned
        last_batch = {p: max(((l - f + 1, l) for q, f, l in a.writes if q == p))[0] for p in a_owned}
        for partition, count in overlaps(a.writes, b.writes).items():
            assert count <= last_batch[partition]
        assert not overlaps(a.writes, c.writes)
        # and no offset was skipped: the copies' writes cover every partition from 0 to its end
        for partition, end in high.items():
            covered: set[int] = set()
            for copy in (a, b, c):
                for p, first, last in copy.writes:
                    if p == partition:
                        covered.update(range(first, last + 1))
            assert covered == set(range(end)), f"partition {partition}: offsets missing"
        with_overlap = overlaps(a.writes, b.writes)
        print(f"\n[connector groups] {sent:,} views; a (kill -9) owned {sorted(a_owned)}, b re-wrote "
              f"{sum(with_overlap.values())} of its records; b (SIGTERM) -> c re-wrote 0; "
              f"records written by a/b/c: {[sum(l - f + 1 for _, f, l in x.writes) for x in (a, b, c)]}")
    finally:
        for copy in copies:
            copy.process.kill()
            copy.process.communicate(timeout=30)


def _ends(config: dict, topic: str) -> list[int]:
    from ctxsync.io.kafka_positions import partition_ends

    _, high = partition_ends(config, topic)
    return [high[p] for p in sorted(high)]

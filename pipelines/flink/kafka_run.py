"""`ctxsync run JOB --profile local|prod`: the Kafka job on local Flink, continued from run to run.

    input positions --(ledger: savepoint + offsets of the last run)--> restore or start fresh
      -> Flink job (pipelines/flink/kafka.py) on an unbounded source, started with execute_async
      -> bounded: stop with a savepoint once the group's committed offsets cover the input's end at start
         unbounded: stop with a savepoint on Ctrl-C / SIGTERM
      -> ledger names the savepoint -> connectors move the output topics to Redis and Elasticsearch

Why not a bounded Kafka source: a job that finishes loses its state (Flink discards a finished job's
checkpoints), so a second run would recompute from scratch and append every output record again. Stopping
with a savepoint keeps views, versions and remembered eventIds; the next run reads only new records. A run
that dies without stopping leaves its retained checkpoints, and the next run restores the newest of them.
"""
from __future__ import annotations

import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ctxsync import paths, run_ledger
from ctxsync.io.kafka_io import read_topic
from ctxsync.observe.announce import announced
from ctxsync.io.kafka_positions import (Offsets, commit_offsets, committed_offsets, has_readable, offsets_for_time,
                                        partition_ends)
from pipelines.flink.env import prometheus_reporter
from pipelines.flink.kafka import KafkaJobSpec, build_kafka_job, job_spec

RUN_DEFAULTS = {  # a Kafka run on the CLI: a persistent failure ends the run with its cause
    "restart-strategy.type": "fixed-delay",
    "restart-strategy.fixed-delay.attempts": "3",
    "restart-strategy.fixed-delay.delay": "5 s",
}


def default_state_dir() -> Path:
    return paths.home() / "state"


def newest_checkpoint(checkpoints: Path, newer_than: float) -> str | None:
    """The newest complete retained checkpoint (`chk-N/_metadata`) written after `newer_than` (epoch s)."""
    found = [m for m in checkpoints.glob("*/chk-*/_metadata") if m.stat().st_mtime > newer_than]
    return max(found, key=lambda m: m.stat().st_mtime).parent.resolve().as_uri() if found else None


def _savepoint_time(uri: str | None) -> float:
    if not uri:
        return 0.0
    metadata = Path(unquote(urlparse(uri).path)) / "_metadata"
    return metadata.stat().st_mtime if metadata.exists() else 0.0


@dataclass
class TopicGrowth:
    """What a run added to an output topic. `records`: what a read_committed consumer gets. `offsets`: how
    far the partitions' ends moved, which is more: each exactly-once commit writes a transaction marker that
    takes an offset, and records of aborted transactions (a restarted job's) keep theirs."""

    records: int
    offsets: int


@dataclass
class KafkaRunResult:
    """What one run did: input records it covered, where it continued from, and what it produced."""

    input_records: int
    restored_from: str | None      # savepoint or retained checkpoint URI; None = fresh state
    savepoint: str                 # what the next run continues from
    outputs: dict[str, TopicGrowth]  # per output topic: what this run added
    connectors: dict[str, Any]
    job_seconds: float
    job_ran: bool = True           # False: no new input since the last run, so Flink was not started


def _ends(config: dict[str, Any], topics: list[str]) -> dict[str, Offsets]:
    """The high watermark of each partition of each topic ({} for a topic that does not exist yet)."""
    ends = {}
    for topic in topics:
        try:
            ends[topic] = partition_ends(config, topic)[1]
        except KeyError:
            ends[topic] = {}
    return ends


def _growth(config: dict[str, Any], topic: str, before: Offsets, after: Offsets) -> TopicGrowth:
    """Counts the committed records between the two ends by reading them (markers and aborted records are
    invisible to read_committed); a run that added nothing reads nothing."""
    starts = {p: before.get(p, 0) for p, end in after.items() if end > before.get(p, 0)}
    records = sum(1 for m in read_topic(config, topic, starts=starts) if m.offset() < after[m.partition()]) \
        if starts else 0
    return TopicGrowth(records, sum(after.values()) - sum(before.values()))


class _Input:
    """The input topic as seen by the job's consumer group."""

    def __init__(self, config: dict[str, Any], spec: KafkaJobSpec) -> None:
        self.config, self.topic, self.group = config, spec.input_topic, spec.group_id
        self.low, self.high = partition_ends(config, self.topic)

    def committed(self) -> Offsets:
        got = committed_offsets(self.config, self.group, self.topic, list(self.high))
        return {p: (o if o >= 0 else self.low[p]) for p, o in got.items()}

    def start_offsets(self, spec: KafkaJobSpec) -> Offsets:
        """Where a run without saved state starts reading (`source.start`)."""
        if spec.start == "committed":
            return self.committed()
        if spec.start == "latest":
            return dict(self.high)
        if spec.start == "timestamp" and spec.start_timestamp_ms is not None:
            return offsets_for_time(self.config, self.topic, self.high, spec.start_timestamp_ms)
        return dict(self.low)

    def covered(self, committed: Offsets, targets: Offsets) -> bool:
        """Every target reached, or only unreadable offsets (transaction markers, aborted records) left."""
        if all(committed[p] >= t for p, t in targets.items()):
            return True
        return not has_readable(self.config, self.topic, committed, targets)


def _input_config(profile: Any) -> dict[str, Any]:
    from ctxsync.io.clients import kafka_source

    source = kafka_source(profile)
    return {"bootstrap.servers": source.bootstrap, **source.security.client_config()}


def _start_job(spec: KafkaJobSpec, job: Any, settings: Any, parallelism: int, state: Path, restore: str | None) -> Any:
    """Build the Kafka job (checkpoints retained under `state`, restored from `restore`) and start it."""
    from ctxsync.jars import kafka_jars
    from pipelines.flink.env import flink_environment

    flink = {**RUN_DEFAULTS, **job.flink,
             "execution.checkpointing.storage": "filesystem",
             "execution.checkpointing.dir": (state / "checkpoints").resolve().as_uri(),
             "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION"}
    if restore:
        flink["execution.state-recovery.path"] = restore
    env = flink_environment(flink, parallelism=1, jars=[str(p) for p in kafka_jars()])
    env.enable_checkpointing(spec.checkpoint_interval_ms)
    cache_size = int(job.flink.get("python.state.cache-size", "10000"))
    build_kafka_job(env, replace(spec, bounded=False), settings, parallelism,
                    job.batching.to_batching(), cache_size)
    return env.execute_async(f"ctxsync context-sync ({spec.input_topic})")


def _run_job(spec: KafkaJobSpec, job: Any, settings: Any, parallelism: int, state: Path, restore: str | None,
             source: _Input, base: Offsets, progress: Any) -> tuple[str, Offsets]:
    """Run the job until its input is covered (bounded) or it is interrupted; (savepoint, offsets then)."""
    from confluent_kafka import KafkaException

    from pipelines.flink.control import JobFailed, stop_requests, stop_with_savepoint, watch

    # Ctrl-C from here on asks for a stop with a savepoint, also while Flink starts: a signal never
    # interrupts a call into the JVM half-way (py4j would log its own traceback)
    with stop_requests() as interrupted:
        progress.note("starting Flink (JVM, job graph, Python workers: 10-30 s here)")
        client = _start_job(spec, job, settings, parallelism, state, restore)
        bounded, targets = spec.bounded, source.high
        total = sum(max(targets[p] - base.get(p, 0), 0) for p in targets)
        last: Offsets | None = None
        # Committed offsets cover records that may still sit in an open batch window (processing time):
        # the stop waits until every such window has closed, so the savepoint holds no unprocessed input.
        settle_s = 2 * job.batching.window / 1000 + 0.5
        covered_at: float | None = None

        def settled() -> bool:
            nonlocal covered_at
            if covered_at is None:
                covered_at = time.monotonic()
            return time.monotonic() - covered_at >= settle_s

        def done() -> bool:
            nonlocal last
            try:
                committed = source.committed()
            except KafkaException:  # a broker failed and the group coordinator moves: no news this poll,
                return False        # the job itself goes on (tests/test_broker_failure.py)
            ends = targets if bounded else committed  # unbounded: everything since the start counts
            covered = sum(max(min(committed[p], ends[p]) - base.get(p, 0), 0) for p in targets)
            progress.update(covered, "input records committed" if bounded else "committed (Ctrl-C stops with a savepoint)")
            if not bounded:
                return False
            if covered_at is not None:
                return settled()
            if committed == last:  # unchanged since the last poll: maybe only markers are left
                return source.covered(committed, targets) and settled()
            last = committed
            return all(committed[p] >= t for p, t in targets.items()) and settled()

        def starting(status: str) -> None:
            if status != "RUNNING":
                progress.note(f"Flink job {status.lower()}", force=False)

        progress.total = total if bounded else None
        progress.note(f"Flink job submitted ({'until the input is covered' if bounded else 'unbounded'}; "
                      f"{total:,} new input records)")
        try:
            watch(client, lambda: interrupted.is_set() or done(), on_poll=starting, poll_s=1.0)
        except JobFailed as exc:
            if restore:  # e.g. a savepoint of an older job graph: the way out is to start over
                raise JobFailed(exc.args[0], f"the job continued from {restore}; if that state does not fit "
                                "this version of the job, run with --fresh") from exc
            raise
        if interrupted.is_set():
            progress.note("stopping with a savepoint (the next run continues from it; Ctrl-C again aborts)")
        savepoint = stop_with_savepoint(client, state / "savepoints")
    return savepoint, source.committed()


def run_kafka_profile(job_name: str, job: Any, profile_name: str, parallelism: int, progress: Any,
                      fresh: bool = False, with_connectors: bool = True) -> KafkaRunResult:
    """Run the profile's Kafka job from where the last run stopped (or from the start: `fresh`), then
    (bounded) or alongside (unbounded) the Redis and Elasticsearch connectors."""
    from ctxsync.config import resolve_profile
    from ctxsync.servers import free_port, running_endpoints

    profile = resolve_profile(job.profiles[profile_name], profile_name, running_endpoints())
    # the job's metrics for Prometheus on the profile's port, or a free one announced for `ctxsync signals`
    # (docs/observability.md); `flink:` keys win
    port = free_port() if profile.metrics.job_port == 0 else profile.metrics.job_port
    job = job.model_copy(update={"flink": {**prometheus_reporter(port or 0), **job.flink}})
    url = f"http://{profile.metrics.host}:{port}/metrics"
    with announced(job_name, profile_name, "job", url) if port else nullcontext():
        return _run(job_name, job, profile, profile_name, parallelism, progress, fresh, with_connectors)


def _run(job_name: str, job: Any, profile: Any, profile_name: str, parallelism: int, progress: Any, fresh: bool,
         with_connectors: bool) -> KafkaRunResult:
    from ctxsync.config import sync_settings
    from ctxsync.io.clients import kafka_config, kafka_sink
    from ctxsync.io.connectors import profile_connectors, run_all
    from ctxsync.io.kafka_io import RECORD_LIMIT, TopicSpec, check_reachable, ensure_topics

    spec = job_spec(profile, job_name)
    config, sink = kafka_config(profile), kafka_sink(profile)
    check_reachable(config)
    outputs = [spec.views_topic, spec.history_topic, spec.violations_topic, spec.dlq_topic]
    if sink.create_topics:
        n = sink.partitions
        ensure_topics(config, [TopicSpec(spec.input_topic, n),
                               TopicSpec(spec.views_topic, n, (("cleanup.policy", "compact"), *RECORD_LIMIT)),
                               TopicSpec(spec.history_topic, n, RECORD_LIMIT),
                               TopicSpec(spec.violations_topic, n, RECORD_LIMIT),
                               TopicSpec(spec.dlq_topic, 1, RECORD_LIMIT)])
    source = _Input(_input_config(profile), spec)
    state = run_ledger.state_path(Path(profile.state_dir) if profile.state_dir else default_state_dir(),
                                  job_name, profile_name, spec.group_id)
    if fresh:
        shutil.rmtree(state, ignore_errors=True)
    # the bucket count places each user's state (transforms/batching.py): a change must not restore it
    settings_doc = {**job.settings.model_dump(mode="json"), "batching.buckets": job.batching.buckets}
    ledger = run_ledger.load(state)
    if ledger is not None:
        run_ledger.check_continuation(ledger, source.config["bootstrap.servers"], spec.input_topic, settings_doc,
                                      source.high, state)
    else:
        run_ledger.save(state, run_ledger.RunLedger(None, source.config["bootstrap.servers"], spec.input_topic,
                                                    {}, settings_doc, run_ledger.now_iso()))
    savepoint = ledger.savepoint if ledger else None
    restore = newest_checkpoint(state / "checkpoints", _savepoint_time(savepoint)) or savepoint

    base = {p: ledger.offsets.get(p, source.low[p]) for p in source.high} if savepoint else \
        source.start_offsets(spec)
    before = _ends(config, outputs)
    # views go to Redis from the job itself when the profile has Redis (pipelines/flink/kafka.py)
    which = ("elasticsearch",) if spec.views_redis else ("redis", "elasticsearch")
    connectors = profile_connectors(profile, which) if with_connectors else {}
    started = time.monotonic()
    # a bounded run with nothing past its start (an empty topic too) starts no Flink job: a job with no input
    # finishes at once, and a finished job cannot be stopped with a savepoint
    nothing_new = spec.bounded and restore == savepoint and all(base[p] >= h for p, h in source.high.items())
    if nothing_new:
        since = f"since the last run ({ledger.stopped_at})" if ledger is not None and savepoint else "in the topic"
        progress.note(f"no new input {since}: the job has nothing to do")
        offsets, new_savepoint = base, savepoint
    else:
        if restore:
            progress.note(f"continuing from {restore}")
        if ledger is not None or spec.start != "committed":
            commit_offsets(source.config, spec.group_id, spec.input_topic, base)  # progress counts from here
        stop = threading.Event()
        runner = None
        if connectors and not spec.bounded:
            runner = threading.Thread(target=run_all, args=(connectors, False, stop), daemon=True)
            runner.start()
        try:
            new_savepoint, offsets = _run_job(spec, job, sync_settings(job, profile), parallelism, state, restore,
                                              source, base, progress)
        finally:
            stop.set()
            if runner is not None:
                runner.join(30)
        run_ledger.save(state, run_ledger.RunLedger(new_savepoint, source.config["bootstrap.servers"],
                                                    spec.input_topic, offsets, settings_doc, run_ledger.now_iso()))
        shutil.rmtree(state / "checkpoints", ignore_errors=True)  # superseded by the savepoint
    job_seconds = time.monotonic() - started
    if connectors and (spec.bounded or nothing_new):
        progress.note("connectors catching up (Redis, Elasticsearch)")
        stats = run_all(connectors, until_caught_up=True)
    else:
        stats = {name: c.stats for name, c in connectors.items()}
    after = _ends(config, outputs)
    covered = sum(max(offsets.get(p, 0) - base.get(p, 0), 0) for p in source.high)
    grown = {t: _growth(config, t, before[t], after[t]) for t in outputs}
    return KafkaRunResult(covered, restore, new_savepoint, grown, stats, job_seconds, job_ran=not nothing_new)

"""Propagation latency per hop and CPU per process: an event produced to Kafka -> the job's output -> its
view applied in Redis (what a model reads), at fixed offered rates.

    python bench/latency.py [--rate 500 --rate 2000 --rate 5000] [--seconds 20] [--warm-up 30000]
        in-process (default): [--delivery at-least-once|exactly-once] [--checkpoint-ms 1000] [--window 50ms]
                              [--connector|--no-connector]
        docs/local-profile.md: --profile local     (`ctxsync dev up`, then `ctxsync run context-sync
                                                   --profile local`, unbounded, as subprocesses)
        either:               [--broker kafka|noida] [--no-job-output] [--drain 10] [--timeout S]

Modes. In-process: loopback servers (LocalServers: the broker, redis-server), the context-sync Kafka job
unbounded on a local Flink mini-cluster started from this process as `ctxsync run` builds it (its JVM is
our child; the embedded Python runs inside it). Views reach Redis from the job itself when the profile has
Redis (KafkaJobSpec.views_redis); `--connector` measures the path before that: the job leaves Redis alone
and the Redis view connector, a process of its own, reads context.views. `--profile local`: exactly what
docs/local-profile.md tells a user, in a private dev directory ($CTXSYNC_DEV_DIR): `ctxsync dev up`, then
`ctxsync run context-sync --profile local --set profiles.local.source.bounded=false` (the profile's
delivery: exactly-once, 2 s checkpoints), which runs the connectors it needs alongside the job.

What is measured. A producer process (bench/probe.py) sends generated events (10,000 users) at each rate;
one user in `--probe-every` is a probe user whose events target only the model `bench-probe`. An observer
process reads that model's change stream (the entry id is Redis' clock when the view was applied) and the
probe keys of `context.views` (the record's Kafka timestamp: when the job's sink produced it,
read_uncommitted). Per rate: p50/p95/p99 of produced -> job output, produced -> applied in Redis and the
difference between the two per event (negative: Redis first), over the probes seen within `--drain` s
after the last event; and each process' CPU (/proc utime+stime over the production phase) as cores and µs
per event produced. One JSON line per rate on stdout, a table per rate on stderr. `seen` < `probes` is
normal: a view that a newer event of the same aggregate replaced before it was written never carries the
older event; a p50 that grows from the first to the last quarter of a rate means the pipeline falls behind.

What bounds what. The latency: the batch window (`batching.window`), the Python batch, the Redis write of
each batch (or: the Kafka sink's flush / transaction commit and the connector's poll), and above all CPU:
every process of the table shares the machine's cores (`machine_busy_cores` says how full they were,
`others_cores` what processes outside the table took: read figures only where that is ~0). The bench's
own cost is its producer and observer rows (`--no-job-output` drops the Kafka reader). The run time:
start (servers, JVM: 10-40 s on a quiet machine) + warm-up (`--warm-up` events at `--warm-up-rate`, then
until its last probes arrive, at most 120 s) + per rate `--seconds` + up to `--drain` + cleanup (~10-30 s):
with the defaults about 3 minutes, at most about 6 (the drains are bounded), and stopped with everything
cleaned up after `--timeout` s. Ctrl-C and SIGTERM clean up too. Not a test: the numbers depend on the load.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import proc_cpu  # noqa: E402
from bench.probe import PROBE_MODEL  # noqa: E402

JOB = "context-sync"
PROBE = ROOT / "bench" / "probe.py"
DEFAULT_RATES = (500, 2000, 5000)
WARM_UP_DRAIN_S = 120.0  # the warm-up includes the job's start, so its last probes may take this long


# --- helper processes ------------------------------------------------------------------------------------

class Helper:
    """A child process of the bench in a session of its own (a terminal's Ctrl-C reaches only the bench,
    which stops its children in order); JSON lines over its stdin/stdout; it exits when stdin closes."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out,
                                         cwd=ROOT, env=env, start_new_session=True, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one command and wait for its one-line answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise SystemExit(f"latency bench: the {self.name} did not answer {message['cmd']!r} within "
                             f"{timeout_s:.0f} s: {last_line(self.log)} (see {self.log})")
        return json.loads(line)

    def stop(self, timeout_s: float = 5.0) -> None:
        stop_process(self.proc, timeout_s)


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """Close its stdin (our helpers exit on EOF), then SIGTERM, then SIGKILL its whole session."""
    if proc.poll() is None and proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            proc.wait(timeout_s)
            return
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
    proc.wait(5)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Ctrl-C or SIGTERM in the middle of a call into the JVM makes py4j log a traceback: take it after."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt if received[0] == signal.SIGINT else SystemExit(143)


def end_process(pid: int, timeout_s: float) -> None:
    """SIGTERM (a JVM runs its shutdown hooks), SIGKILL if it is still there after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while proc_cpu.cpu_seconds(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc_cpu.cpu_seconds(pid) is None:
            return


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def ctxsync_command() -> list[str]:
    """`ctxsync` as its console script runs it (`ctxsync.cli:main`), from this checkout (cwd ROOT)."""
    return [sys.executable, "-c", "import sys; from ctxsync.cli import main; sys.exit(main())"]


def jvm_of(root: int) -> int | None:
    """The Flink JVM below `root` (PyFlink starts `java` as a child of the Python that builds the job; a
    Kafka broker started by LocalServers is a `java` child too, without Flink's gateway on its command line)."""
    for pid in proc_cpu.descendants(root):
        if proc_cpu.command_name(pid) == "java" and "PythonGatewayServer" in proc_cpu.command_line(pid):
            return pid
    return None


def job_writes_redis(spec: Any) -> bool:
    """Whether the job applies views to Redis itself (then no connector is on the view path): its spec
    carries a Redis endpoint (`KafkaJobSpec.views_redis`, set when the profile has a `redis:` section)."""
    return bool(getattr(spec, "views_redis", None))


def wait_for_topic(bootstrap: str, topic: str, alive: Any, timeout_s: float) -> None:
    """Until `topic` exists (`ctxsync run` creates it), while `alive()` says the run still goes."""
    from confluent_kafka.admin import AdminClient

    admin, deadline = AdminClient({"bootstrap.servers": bootstrap}), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive()
        found = admin.list_topics(topic, timeout=2).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return
        time.sleep(0.5)
    raise SystemExit(f"latency bench: topic {topic} not created within {timeout_s:.0f} s")


# --- pipelines -------------------------------------------------------------------------------------------

class Pipeline:
    """The system under measurement: its servers, job and connector; what the helpers need to reach it."""

    mode = ""
    bootstrap = redis_url = stream = ""
    events_topic = views_topic = "context.events"
    connector: bool = False
    describe: dict[str, Any] = {}

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.servers: Any = None
        self.connector_proc: Helper | None = None

    def start(self) -> None: ...

    def processes(self) -> dict[str, int]:
        """Row name -> pid of every process on the path (the bench's helpers are added by the caller)."""
        return {}

    def check(self) -> None:
        """Stop the bench with the job's own error when the pipeline is no longer running."""

    def stop(self) -> None: ...


def server_rows(servers: Any, broker: str) -> dict[str, int]:
    rows = {f"broker ({broker})": servers.servers[broker].pid, "redis-server": servers.servers["redis"].pid}
    if broker != "noida" and "noida" in servers.servers:
        rows["noida-db (elasticsearch)"] = servers.servers["noida"].pid
    return rows


def kafka_endpoint(servers: Any, broker: str) -> str:
    endpoints = servers.servers[broker].endpoints
    if "kafka" not in endpoints:
        raise SystemExit(f"latency bench: server {broker!r} has no kafka endpoint: {endpoints}")
    return endpoints["kafka"]


class InProcess(Pipeline):
    """The Kafka job on a mini-cluster started from this process, as `ctxsync run` builds it
    (pipelines.flink.kafka_run._start_job), with the bench's delivery, checkpoints and window."""

    mode = "in-process"

    def start(self) -> None:
        from ctxsync.config import resolve_job, resolve_profile, sync_settings
        from ctxsync.servers import LocalServers
        from pipelines.flink.kafka import job_spec

        args = self.args
        self.servers = LocalServers(self.tmp / "servers")
        self.client: Any = None
        self.servers.up([args.broker, "redis"])
        self.bootstrap = kafka_endpoint(self.servers, args.broker)
        self.redis_url = self.servers.servers["redis"].endpoints["redis"]
        endpoints = {"kafka": self.bootstrap, "redis": self.redis_url, "dir": str(self.tmp),
                     "elasticsearch": self.servers.endpoints().get("elasticsearch", "http://127.0.0.1:9")}
        sets = ([f"batching.window={args.window}"] if args.window else []) + args.set
        job = resolve_job(ROOT / "jobs.yaml", JOB, sets)
        profile = resolve_profile(job.profiles["local"], "local", endpoints)
        spec = replace(job_spec(profile, JOB), bounded=False, start="earliest", delivery=args.delivery,
                       checkpoint_interval_ms=args.checkpoint_ms)
        self.events_topic, self.views_topic = spec.input_topic, spec.views_topic
        self.stream = f"{profile.redis.prefix}:changes:{PROBE_MODEL}"
        # --connector measures the path before the job wrote Redis: the job leaves Redis to the connector
        self.connector = (not job_writes_redis(spec)) if args.connector is None else args.connector
        if self.connector:
            spec = replace(spec, views_redis=None) if hasattr(spec, "views_redis") else spec
        self.describe = {"delivery": args.delivery, "checkpoint_ms": args.checkpoint_ms,
                         "window_ms": job.batching.window, "overrides": args.set}
        self._topics(profile, spec)
        self._start_job(job, profile, spec, sync_settings(job, profile))
        if self.connector:
            self.connector_proc = Helper("connector", [sys.executable, str(PROBE), "connector", "--bootstrap",
                                         self.bootstrap, "--redis", self.redis_url, "--prefix", profile.redis.prefix,
                                         "--maxlen", str(profile.redis.stream_maxlen), "--views-topic",
                                         spec.views_topic, "--dlq-topic", spec.dlq_topic],
                                         self.tmp / "connector.log")

    def _topics(self, profile: Any, spec: Any) -> None:
        """The topics `ctxsync run` creates for the local profile (create_topics, its partition count)."""
        from ctxsync.io.clients import kafka_sink
        from ctxsync.io.kafka_io import TopicSpec, ensure_topics

        n = kafka_sink(profile).partitions
        ensure_topics({"bootstrap.servers": self.bootstrap},
                      [TopicSpec(spec.input_topic, n), TopicSpec(spec.views_topic, n, (("cleanup.policy", "compact"),)),
                       TopicSpec(spec.history_topic, n), TopicSpec(spec.violations_topic, n),
                       TopicSpec(spec.dlq_topic, 1)])

    def _start_job(self, job: Any, profile: Any, spec: Any, settings: Any) -> None:
        from pipelines.flink.kafka_run import _start_job

        with deferred_interrupts():
            self.client = _start_job(spec, job, settings, job.parallelism, self.tmp / "state", None)

    def processes(self) -> dict[str, int]:
        rows = {"bench main (Flink client)": os.getpid()}
        jvm = jvm_of(os.getpid())
        if jvm is not None:
            rows["job JVM (+ embedded Python)"] = jvm
        if self.connector_proc is not None:
            rows["redis connector"] = self.connector_proc.pid
        return {**rows, **server_rows(self.servers, self.args.broker)}

    def check(self) -> None:
        with deferred_interrupts():
            status = str(self.client.get_job_status().result())
        if status == "JobStatus.RUNNING":
            return
        try:
            self.client.get_job_execution_result().result()
        except Exception as exc:  # the job's failure, shortened: the bench cannot measure without it
            raise SystemExit(f"latency bench: the job is {status}: {str(exc).splitlines()[0][:500]}") from None
        raise SystemExit(f"latency bench: the job is {status}")

    def stop(self) -> None:
        if self.connector_proc is not None:
            self.connector_proc.stop()
        jvm = jvm_of(os.getpid())
        if getattr(self, "client", None) is not None:
            cancel = threading.Thread(target=lambda: self.client.cancel().result(), daemon=True)
            cancel.start()
            cancel.join(15)
        if self.servers is not None:
            self.servers.down()
        if jvm is not None:
            # the gateway JVM would live until this process exits (it stops when its stdin, our pipe, closes);
            # py4j then logs a traceback for every Java object it can no longer release: nothing to report
            logging.disable(logging.CRITICAL)
            end_process(jvm, 15)


class ProfileLocal(Pipeline):
    """docs/local-profile.md's path, as subprocesses: `ctxsync dev up` and the unbounded `ctxsync run`."""

    mode = "profile-local"

    def start(self) -> None:
        from ctxsync.config import resolve_job, resolve_profile
        from ctxsync.servers import DEFAULT_SERVICES, SERVICES, LocalServers, running_endpoints
        from pipelines.flink.kafka import job_spec

        args = self.args
        if args.connector is not None:
            raise SystemExit("latency bench: --profile local runs what `ctxsync run` runs (the Redis connector "
                             "only when the job does not write Redis); --connector is for the in-process mode")
        self.run: subprocess.Popen | None = None
        self.dev_dir = self.tmp / "dev"
        self.env = {**os.environ, "CTXSYNC_DEV_DIR": str(self.dev_dir)}  # never the user's .ctxsync/dev
        if args.broker not in SERVICES:
            raise SystemExit(f"latency bench: ctxsync.servers has no server {args.broker!r} (yet): "
                             f"{', '.join(SERVICES)}")
        extra = [] if args.broker in DEFAULT_SERVICES else ["--with", args.broker]
        self._ctxsync(["dev", "up", *extra], timeout_s=120)
        self.servers = LocalServers.load(self.dev_dir)
        endpoints = running_endpoints(self.dev_dir)
        self.overrides = ["profiles.local.source.bounded=false", *self._overrides(endpoints)]
        job = resolve_job(ROOT / "jobs.yaml", JOB, self.overrides)
        profile = resolve_profile(job.profiles["local"], "local", endpoints)
        self.bootstrap, self.redis_url = profile.source.bootstrap, profile.redis.url
        self.events_topic, self.views_topic = profile.source.topic, profile.sink.topics.views
        self.stream = f"{profile.redis.prefix}:changes:{PROBE_MODEL}"
        self.describe = {"delivery": profile.sink.delivery, "checkpoint_ms": profile.sink.checkpoint_interval,
                         "window_ms": job.batching.window, "overrides": self.overrides}
        sets = [word for o in self.overrides for word in ("--set", o)]
        with (self.tmp / "ctxsync-run.log").open("ab") as log:
            self.run = subprocess.Popen([*ctxsync_command(), "run", JOB, "--profile", "local", *sets], cwd=ROOT,
                                        env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True)
        print(f"latency bench: started `ctxsync run {JOB} --profile local {' '.join(sets)}` "
              f"(log {self.tmp / 'ctxsync-run.log'})", file=sys.stderr, flush=True)
        # docs/local-profile.md's path: `ctxsync run` runs its connectors in its own process, Redis's only when the job
        # does not write the views itself (pipelines/flink/kafka_run.py)
        self.connector = not job_writes_redis(job_spec(profile, JOB))
        wait_for_topic(self.bootstrap, self.events_topic, self.check, 180)

    def _overrides(self, endpoints: dict[str, str]) -> list[str]:
        """`--set`s for the options given on the bench's command line (none: the documented defaults)."""
        args, found = self.args, []
        if args.delivery_given:
            found.append(f"profiles.local.sink.delivery={args.delivery}")
        if args.checkpoint_given:
            found.append(f"profiles.local.sink.checkpoint_interval={args.checkpoint_ms}")
        if args.window:
            found.append(f"batching.window={args.window}")
        found += args.set
        broker = kafka_endpoint(self.servers, args.broker)
        if endpoints.get("kafka") != broker:  # ${dev:kafka} names another server: point the job at ours
            found.append(f"profiles.local.source.bootstrap={broker}")
        return found

    def _ctxsync(self, words: list[str], timeout_s: float) -> None:
        done = subprocess.run([*ctxsync_command(), *words], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)
        if done.returncode != 0:
            raise SystemExit(f"latency bench: `ctxsync {' '.join(words)}` failed: {done.stderr.strip()[-500:]}")

    def processes(self) -> dict[str, int]:
        rows = {"bench main": os.getpid()}
        if self.run is not None:
            connectors = "Redis/ES connectors" if self.connector else "ES connector"
            rows[f"ctxsync run (Flink client + {connectors})"] = self.run.pid
            jvm = jvm_of(self.run.pid)
            if jvm is not None:
                rows["job JVM (+ embedded Python)"] = jvm
        return {**rows, **server_rows(self.servers, self.args.broker)}

    def check(self) -> None:
        if self.run is not None and self.run.poll() is not None:
            raise SystemExit(f"latency bench: `ctxsync run` exited with {self.run.returncode}: "
                             f"{last_line(self.tmp / 'ctxsync-run.log')}")

    def stop(self) -> None:
        """Ctrl-C twice (stop without a savepoint: nothing here is kept), then the run's whole session."""
        from ctxsync.servers import LocalServers

        if self.connector_proc is not None:
            self.connector_proc.stop()
        if self.run is not None and self.run.poll() is None:
            jvm = jvm_of(self.run.pid)
            for _ in range(2):
                if self.run.poll() is None:
                    self.run.send_signal(signal.SIGINT)
                    time.sleep(1)
            stop_process(self.run, 10)
            if jvm is not None:
                end_process(jvm, 10)
        if hasattr(self, "dev_dir"):
            LocalServers.load(self.dev_dir).down()


# --- measuring -------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def quantiles(latencies: list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"seen": len(latencies)}
    if latencies:
        row.update({f"p{int(q * 100)}_ms": round(percentile(latencies, q), 1) for q in (0.5, 0.95, 0.99)})
    return row


class Observations:
    """What the observer has reported so far (eventId -> first time seen), merged across phases."""

    def __init__(self, observer: Helper, follow_job: bool) -> None:
        self.observer, self.follow_job = observer, follow_job
        self.redis: dict[str, float] = {}
        self.job: dict[str, float] = {}

    def update(self) -> None:
        answer = self.observer.ask({"cmd": "take"}, 30)
        self.redis.update(answer["redis"]["seen"])
        self.job.update(answer["job"]["seen"])
        for name in ("redis", "job"):
            if answer[name]["error"]:
                print(f"latency bench: observer: {answer[name]['error']}", file=sys.stderr, flush=True)

    def drain(self, last: list[str], seconds: float, pipeline: Pipeline) -> None:
        """Until every probe user's last event of the phase is seen (per-user order: all before it are
        then seen or superseded), or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while True:
            self.update()
            if all(e in self.redis and (not self.follow_job or e in self.job) for e in last):
                return
            if time.monotonic() > deadline:
                return
            pipeline.check()
            time.sleep(0.25)


def points(sent: dict[str, float], seen: Observations) -> dict[str, Any]:
    """Latency quantiles at each observed point, and the hop between them, over this phase's probes."""
    job = [seen.job[e] - t for e, t in sent.items() if e in seen.job]
    redis = [seen.redis[e] - t for e, t in sent.items() if e in seen.redis]
    hop = [seen.redis[e] - seen.job[e] for e in sent if e in seen.redis and e in seen.job]
    by_time = sorted(sent, key=sent.__getitem__)
    quarter = max(len(by_time) // 4, 1)
    redis_row = quantiles(redis)
    for name, part in (("p50_first_quarter_ms", by_time[:quarter]), ("p50_last_quarter_ms", by_time[-quarter:])):
        values = [seen.redis[e] - sent[e] for e in part if e in seen.redis]
        redis_row[name] = round(percentile(values, 0.5), 1) if values else None
    return {"job": quantiles(job), "redis": redis_row, "job_to_redis": quantiles(hop)}


def phase(rate: int, events: int, drain_s: float, pipeline: Pipeline, producer: Helper, observer: Helper,
          seen: Observations, writer: Helper | None = None) -> dict[str, Any]:
    """Produce `events` at `rate`; CPU sampled around the production; then follow the probes."""
    prepared = producer.ask({"cmd": "prepare", "events": events}, 300)
    rows = {**pipeline.processes(), "bench producer": producer.pid, "bench observer": observer.pid}
    if writer is not None:
        rows["bench writer (publish wait=True)"] = writer.pid
        writer.ask({"cmd": "start"}, 10)
    before = proc_cpu.sample(rows)
    done = producer.ask({"cmd": "go", "rate": rate}, events / rate * 3 + 60)
    after = proc_cpu.sample(rows)
    waits = writer.ask({"cmd": "take"}, 30) if writer is not None else None
    seen.drain(done["last"], drain_s, pipeline)
    return {"mode": pipeline.mode, "broker": pipeline.args.broker, "connector": pipeline.connector,
            **pipeline.describe, "rate": rate, "seconds": round(done["seconds"], 2), "events": done["produced"],
            "produced_rate": round(done["produced"] / max(done["seconds"], 1e-9), 1),
            "producer_max_behind_ms": done["max_behind_ms"], "probes": prepared["probes"],
            "points": points(done["sent"], seen), "cpu": proc_cpu.usage(before, after, done["produced"]),
            **({"publish_wait": {**quantiles(waits["waits"]), "failed": waits["failed"], "errors": waits["errors"]}}
               if waits is not None else {})}


# --- output ----------------------------------------------------------------------------------------------

def _ms(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:>8,.0f}" if row.get(key) is not None else f"{'-':>8}"


def table(result: dict[str, Any]) -> str:
    """The readable form of one result line (stderr)."""
    r = result
    lines = [f"rate {r['rate']:,}/s  {r['mode']}, {r['delivery']}, checkpoints {r['checkpoint_ms']} ms, "
             f"window {r['window_ms']} ms, broker {r['broker']}, connector {'yes' if r['connector'] else 'no'}",
             f"  {r['events']:,} events in {r['seconds']:.1f} s ({r['produced_rate']:,.0f}/s, producer at most "
             f"{r['producer_max_behind_ms']:,.0f} ms behind), {r['probes']:,} probes",
             f"  {'point':<34}{'seen':>8}{'p50':>8}{'p95':>8}{'p99':>8}  ms"]
    names = {"job": "produced -> job output", "redis": "produced -> applied in Redis",
             "job_to_redis": "  Redis - job output (< 0: Redis first)"}
    for key, name in names.items():
        row = r["points"][key]
        lines.append(f"  {name:<34}{row['seen']:>8,}{_ms(row, 'p50_ms')}{_ms(row, 'p95_ms')}{_ms(row, 'p99_ms')}")
    if "publish_wait" in r:
        row = r["publish_wait"]
        lines.append(f"  {'publish(wait=True) round trip':<34}{row['seen']:>8,}{_ms(row, 'p50_ms')}{_ms(row, 'p95_ms')}"
                     f"{_ms(row, 'p99_ms')}  ({row['failed']} failed)")
    redis = r["points"]["redis"]
    lines.append(f"  {'  Redis p50, first / last quarter':<42}{_ms(redis, 'p50_first_quarter_ms')}"
                 f"{_ms(redis, 'p50_last_quarter_ms')}")
    cpu = r["cpu"]
    lines.append(f"  {'process (CPU over ' + str(cpu['seconds']) + ' s)':<40}{'pid':>8}{'cores':>8}{'µs/event':>10}")
    for name, row in cpu["processes"].items():
        cores = f"{row['cores']:>8.2f}" if row["cores"] is not None else f"{'-':>8}"
        per = f"{row['us_per_event']:>10,.0f}" if row["us_per_event"] is not None else f"{'-':>10}"
        lines.append(f"  {name:<40}{row['pid']:>8}{cores}{per}")
    lines.append(f"  {'all of the above':<48}{cpu['ours_cores']:>8.2f}")
    lines.append(f"  {'machine busy (others ' + format(cpu['others_cores'], '.2f') + ')':<48}"
                 f"{cpu['machine_busy_cores']:>8.2f}")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------------

def default_broker() -> str:
    from ctxsync.servers import SERVICES

    return "kafka" if "kafka" in SERVICES else "noida"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, action="append", help="events/s offered, repeatable, measured in "
                        "this order (default: 500, 2000, 5000)")
    parser.add_argument("--seconds", type=float, default=20, help="how long each rate is produced (default 20)")
    parser.add_argument("--warm-up", type=int, default=30_000, metavar="N", help="events produced before any "
                        "rate is measured (default 30,000: a fresh JVM runs at a third of its steady rate for "
                        "~40 s); 0 = none")
    parser.add_argument("--warm-up-rate", type=int, default=1000, help="events/s of the warm-up (default 1000)")
    parser.add_argument("--drain", type=float, default=10, help="after a rate's last event, wait at most this "
                        "many s for its probes (default 10); later ones count as not seen")
    parser.add_argument("--profile", choices=["local"], help="run docs/local-profile.md's path (`ctxsync dev up`,"
                        " `ctxsync run context-sync --profile local`, unbounded) instead of the in-process job")
    parser.add_argument("--broker", default=default_broker(), help="the LocalServers server that provides "
                        "Kafka: kafka (Apache Kafka, the default once ctxsync.servers has it) or noida")
    parser.add_argument("--delivery", choices=["at-least-once", "exactly-once", "none"],
                        help="the job's Kafka sink (in-process default: at-least-once; --profile local: the "
                        "profile's, exactly-once, unless given)")
    parser.add_argument("--checkpoint-ms", type=int, help="checkpoint interval (in-process default 1000; "
                        "--profile local: the profile's, 2 s, unless given)")
    parser.add_argument("--window", help="batch window, e.g. 20ms (default: jobs.yaml's)")
    parser.add_argument("--publish-wait", action="store_true", help="also time publish(wait=True) round trips "
                        "(one every 100 ms, from a model process of their own) under each rate's load")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any jobs.yaml override, as `ctxsync run --set` takes it (repeatable), e.g. "
                             "batching.buckets=4; recorded in the JSON line under overrides")
    parser.add_argument("--connector", action=argparse.BooleanOptionalAction, default=None,
                        help="in-process only: views reach Redis through the Redis view connector (a process of "
                        "its own, reading context.views; the job then does not write Redis), or from the job "
                        "itself; default: as the job is configured (the job writes Redis when the profile has "
                        "a redis: section)")
    parser.add_argument("--job-output", action=argparse.BooleanOptionalAction, default=True,
                        help="follow the probes in the job's output topic (default yes; no saves the bench "
                        "reading every view record)")
    parser.add_argument("--probe-every", type=int, default=10, help="one user in N is a probe user (default 10)")
    parser.add_argument("--users", type=int, default=10_000, help="generated users (default 10,000)")
    parser.add_argument("--timeout", type=float, help="stop (and clean up) after this many s; default: the "
                        "expected run time + 120 s")
    args = parser.parse_args()
    args.delivery_given, args.checkpoint_given = args.delivery is not None, args.checkpoint_ms is not None
    args.delivery = args.delivery or "at-least-once"
    args.checkpoint_ms = args.checkpoint_ms or 1000
    args.rate = args.rate or list(DEFAULT_RATES)
    return args


def expected_seconds(args: argparse.Namespace) -> float:
    """Start + warm-up (+ its drain, at most 120 s) + each rate + drain + cleanup, at worst."""
    warm = args.warm_up / args.warm_up_rate + WARM_UP_DRAIN_S if args.warm_up else 0
    return 60 + warm + len(args.rate) * (args.seconds + args.drain + 5) + 30


def writer_helper(pipeline: Pipeline, tmp: Path) -> Helper:
    """The model timing publish(wait=True) round trips (bench/probe.py write) under each rate's load."""
    return Helper("writer", [sys.executable, str(PROBE), "write", "--bootstrap", pipeline.bootstrap,
                             "--redis", pipeline.redis_url, "--topic", pipeline.events_topic], tmp / "writer.log")


def helpers(pipeline: Pipeline, args: argparse.Namespace, tmp: Path) -> tuple[Helper, Helper]:
    producer = Helper("producer", [sys.executable, str(PROBE), "produce", "--bootstrap", pipeline.bootstrap,
                                   "--topic", pipeline.events_topic, "--users", str(args.users),
                                   "--probe-every", str(args.probe_every)], tmp / "producer.log")
    observer = Helper("observer", [sys.executable, str(PROBE), "observe", "--bootstrap", pipeline.bootstrap,
                                   "--redis", pipeline.redis_url, "--stream", pipeline.stream, "--views-topic",
                                   pipeline.views_topic if args.job_output else ""], tmp / "observer.log")
    return producer, observer


def warm_up(args: argparse.Namespace, pipeline: Pipeline, producer: Helper, observer: Helper,
            seen: Observations) -> None:
    """Job started, checkpoints done, the JVM's compilers past the hot paths; fails if nothing came out."""
    if not args.warm_up:
        return
    result = phase(args.warm_up_rate, args.warm_up, WARM_UP_DRAIN_S, pipeline, producer, observer, seen)
    redis, job = result["points"]["redis"], result["points"]["job"]
    print(f"latency bench: warm-up {result['events']:,} events, {result['probes']:,} probes: {job['seen']:,} "
          f"left the job, {redis['seen']:,} applied in Redis (p50 {redis.get('p50_ms', '-')} ms)",
          file=sys.stderr, flush=True)
    pipeline.check()
    if not redis["seen"]:
        raise SystemExit("latency bench: no probe view reached Redis during the warm-up; see the logs in "
                         f"{args.tmp}")


def measure(args: argparse.Namespace, tmp: Path) -> None:
    pipeline: Pipeline = ProfileLocal(args, tmp) if args.profile else InProcess(args, tmp)
    producer = observer = writer = None
    try:
        pipeline.start()
        producer, observer = helpers(pipeline, args, tmp)
        seen = Observations(observer, args.job_output)
        warm_up(args, pipeline, producer, observer, seen)
        writer = writer_helper(pipeline, tmp) if args.publish_wait else None
        for rate in args.rate:
            result = phase(rate, int(rate * args.seconds), args.drain, pipeline, producer, observer, seen, writer)
            print(table(result), file=sys.stderr, flush=True)
            print(json.dumps(result), flush=True)
    finally:
        # a second Ctrl-C or SIGTERM must not leave servers behind: cleanup is bounded (~30 s) and uninterrupted
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.alarm(0)
        print("latency bench: stopping the pipeline and servers", file=sys.stderr, flush=True)
        for helper in (producer, observer, writer):
            if helper is not None:
                helper.stop()
        pipeline.stop()


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    budget = args.timeout or expected_seconds(args) + 120

    def out_of_time(*_: Any) -> None:
        raise SystemExit(f"latency bench: stopped after --timeout {budget:.0f} s")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(budget))
    print(f"latency bench: at most {expected_seconds(args):.0f} s expected, stopped after {budget:.0f} s",
          file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ctxsync-latency-"))
    args.tmp = tmp
    try:
        measure(args, tmp)
    except Exception:
        print(f"latency bench: logs kept in {tmp}", file=sys.stderr, flush=True)
        raise
    except SystemExit as exc:
        if isinstance(exc.code, str):  # the bench's own failure (or --timeout): the logs say why
            print(f"latency bench: logs kept in {tmp}", file=sys.stderr, flush=True)
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(130) from None
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"latency bench: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

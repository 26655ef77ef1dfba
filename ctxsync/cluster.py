"""A Flink standalone session cluster on loopback, started from the scripts inside the pyflink package.

Everything lives under one home directory (default ~/.cache/ctxsync/cluster): the generated conf dir
(config.yaml, masters, workers), a lib dir of symlinks, logs, pid files, checkpoints and savepoints, and
`cluster.json` with the ports. Nothing is written into the venv and nothing is started over ssh: the
JobManager and each TaskManager are started with `jobmanager.sh`/`taskmanager.sh` directly.

Why the lib dir: thread mode on a cluster needs flink-python (from pyflink/opt) on the system classpath
and `pemja.` loaded parent-first, else the second thread-mode job on a TaskManager fails with
`NoSuchFieldException: loadedLibraryNames` (see the ground facts).
"""
from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ctxsync import paths
from ctxsync.errors import RuntimeFailure
from ctxsync.metric_names import FLINK_REPORTER_FACTORY
from ctxsync.servers import free_port

STATE_FILE = "cluster.json"


class ClusterError(RuntimeFailure):
    """The cluster could not be started, reached or stopped; the message names the log to read."""


def flink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def default_home() -> Path:
    return Path(os.environ.get("CTXSYNC_CLUSTER_HOME", paths.home() / "cluster"))


@dataclass
class ClusterSpec:
    """What `cluster up` starts; saved in cluster.json so later commands reach the same cluster."""

    rest_port: int = 0
    rpc_port: int = 0
    taskmanagers: int = 1
    slots: int = 2
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "2048m"
    checkpoint_interval: str = "2s"
    python: str = sys.executable
    metrics_port: int = 0  # first port of the Prometheus reporters (JobManager, then one per TaskManager); 0: off


def cluster_config(home: Path, spec: ClusterSpec) -> dict[str, Any]:
    """The loopback cluster's config.yaml (flat keys). The deployable twin is deploy/flink/config.yaml."""
    return {
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": spec.rpc_port,
        "jobmanager.memory.process.size": spec.jobmanager_memory,
        "jobmanager.execution.failover-strategy": "region",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": spec.slots,
        "taskmanager.memory.process.size": spec.taskmanager_memory,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": spec.rest_port,
        "blob.server.port": "0",
        "parallelism.default": 1,
        # exactly-once checkpoints of Kafka offsets and keyed state, kept when a job is cancelled
        "execution.checkpointing.interval": spec.checkpoint_interval,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": 3,
        "execution.checkpointing.dir": (home / "checkpoints").as_uri(),
        "execution.checkpointing.savepoint-dir": (home / "savepoints").as_uri(),
        "state.backend.type": "hashmap",
        # a lost TaskManager is noticed within seconds (its RPC fails), then the job restarts from the
        # last checkpoint as soon as slots are back
        "heartbeat.interval": 2000,
        "heartbeat.timeout": 10000,
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1s",
        "restart-strategy.exponential-delay.max-backoff": "10s",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": 1000,
        "classloader.parent-first-patterns.additional": "pemja.",
        "python.executable": spec.python,
        "python.client.executable": spec.python,
        "python.pythonpath": os.pathsep.join(site.getsitepackages()),
        "env.pid.dir": str(home / "pids"),
        "env.log.dir": str(home / "log"),
        "env.java.opts.all": _java_opts(),
        **metrics_reporter(spec),
    }


def metrics_reporter(spec: ClusterSpec) -> dict[str, Any]:
    """Flink's Prometheus reporter (a plugin here: FLINK_PLUGINS_DIR) in every process of the cluster.
    The processes share one config, so they share a port range: each takes the first free port of
    metrics_port .. metrics_port + taskmanagers. Label values stay as they are (the job's le="+Inf")."""
    if not spec.metrics_port:
        return {}
    return {"metrics.reporter.prom.factory.class": FLINK_REPORTER_FACTORY,
            "metrics.reporter.prom.port": f"{spec.metrics_port}-{spec.metrics_port + spec.taskmanagers}",
            "metrics.reporter.prom.filterLabelValueCharacters": "false"}


def _java_opts() -> str:
    """The --add-opens list Flink 2.x needs on Java 17, as shipped in pyflink's own conf."""
    shipped = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text())
    return shipped["env"]["java"]["opts"]["all"]


@dataclass
class Cluster:
    """One loopback session cluster under `home`."""

    home: Path
    spec: ClusterSpec

    @classmethod
    def load(cls, home: Path | None = None) -> "Cluster":
        home = (home or default_home()).resolve()
        state = home / STATE_FILE
        spec = ClusterSpec(**json.loads(state.read_text())) if state.exists() else ClusterSpec()
        return cls(home, spec)

    # -- paths and environment -------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.spec.rest_port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def env(self) -> dict[str, str]:
        """Environment for Flink's scripts and CLI: our conf, lib, logs and pids; never the venv's."""
        return {**os.environ, "FLINK_HOME": str(flink_home()), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LIB_DIR": str(self.lib_dir), "FLINK_LOG_DIR": str(self.log_dir),
                "FLINK_PID_DIR": str(self.home / "pids"), "FLINK_PLUGINS_DIR": str(flink_home() / "plugins")}

    def write_conf(self) -> None:
        """Generate conf/, lib/ and cluster.json (free ports are picked once and then kept)."""
        if not self.spec.rest_port:
            self.spec.rest_port = free_port()
        if not self.spec.rpc_port:
            self.spec.rpc_port = free_port()
        for sub in ("conf", "lib", "log", "pids", "checkpoints", "savepoints"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        conf = cluster_config(self.home, self.spec)
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
        (self.conf_dir / "masters").write_text(f"127.0.0.1:{self.spec.rest_port}\n")
        (self.conf_dir / "workers").write_text("127.0.0.1\n" * self.spec.taskmanagers)
        for name in ("log4j.properties", "log4j-cli.properties", "log4j-console.properties", "logback.xml"):
            target = self.conf_dir / name
            if not target.exists():
                target.symlink_to(flink_home() / "conf" / name)
        jars = [*sorted((flink_home() / "lib").glob("*.jar")), *sorted((flink_home() / "opt").glob("flink-python-*.jar"))]
        for old in self.lib_dir.iterdir():
            old.unlink()
        for jar in jars:
            (self.lib_dir / jar.name).symlink_to(jar)
        (self.home / STATE_FILE).write_text(json.dumps(asdict(self.spec), indent=2) + "\n")

    # -- processes -------------------------------------------------------------------------------
    def _script(self, name: str, *args: str) -> None:
        result = subprocess.run([str(flink_home() / "bin" / name), *args], env=self.env(),
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            raise ClusterError(f"{name} {' '.join(args)} failed ({result.returncode}): "
                               f"{output[-1].strip() if output else 'no output'}", f"logs: {self.log_dir}")

    def pids(self, role: str) -> list[int]:
        """Live pids of our 'standalonesession' (JobManager) or 'taskexecutor' processes."""
        found = []
        for pid_file in (self.home / "pids").glob(f"flink-*-{role}.pid"):
            for word in pid_file.read_text().split():
                if word.isdigit() and self._is_ours(int(word)):
                    found.append(int(word))
        return found

    def _is_ours(self, pid: int) -> bool:
        """Alive, not a zombie, and started with our conf dir (a reused pid is never signalled)."""
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z":
                return False
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
        return str(self.conf_dir) in cmdline

    def start_taskmanager(self) -> int:
        """Start one more TaskManager; returns its pid."""
        before = set(self.pids("taskexecutor"))
        self._script("taskmanager.sh", "start")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = set(self.pids("taskexecutor")) - before
            if new:
                return new.pop()
            time.sleep(0.1)
        raise ClusterError(f"TaskManager did not start; see {self.log_dir}")

    def kill_taskmanager(self, pid: int | None = None, sig: int = signal.SIGKILL) -> int:
        """SIGKILL (a crash, no cleanup) one of our TaskManagers; returns the pid killed."""
        pids = self.pids("taskexecutor")
        if not pids:
            raise ClusterError("no TaskManager is running")
        target = pid if pid is not None else pids[0]
        if target not in pids:
            raise ClusterError(f"pid {target} is not a TaskManager of this cluster")
        os.kill(target, sig)
        deadline = time.monotonic() + 10
        while self._is_ours(target) and time.monotonic() < deadline:
            time.sleep(0.05)
        return target

    def up(self, timeout_s: float = 90.0) -> None:
        """Start the JobManager and the TaskManagers; return once every slot has registered."""
        if self.pids("standalonesession"):
            if self.is_ready():
                return
            raise ClusterError(f"a JobManager is running but {self.url} does not answer; try `ctxsync cluster down`")
        self.write_conf()
        # The scripts spend most of their time in JVMs that parse the config: run them side by side.
        with ThreadPoolExecutor(1 + self.spec.taskmanagers) as pool:
            starts = [pool.submit(self._script, "jobmanager.sh", "start")]
            starts += [pool.submit(self._script, "taskmanager.sh", "start") for _ in range(self.spec.taskmanagers)]
            for started in starts:
                started.result()
        self.wait_ready(timeout_s)

    def is_ready(self) -> bool:
        try:
            overview = self.rest("/overview", timeout=2)
        except ClusterError:
            return False
        return overview["taskmanagers"] >= self.spec.taskmanagers and overview["slots-total"] >= self.spec.slots

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        gone_since: float | None = None
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            # Absent for 3 s, not once: right after the start script, the pid it wrote can still be the
            # shell that is about to exec the JVM (its command line does not name our conf dir yet).
            if self.pids("standalonesession"):
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since > 3:
                raise ClusterError(f"the JobManager exited while starting: {self._log_cause()}",
                                   f"logs: {self.log_dir}")
            time.sleep(0.25)
        raise ClusterError(f"cluster not ready after {timeout_s:.0f}s: {self._log_cause()}", f"logs: {self.log_dir}")

    def down(self, timeout_s: float = 20.0) -> None:
        """Stop TaskManagers then the JobManager (SIGTERM, SIGKILL after `timeout_s`)."""
        for role in ("taskexecutor", "standalonesession"):
            pids = self.pids(role)
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while any(self._is_ours(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in pids:
                if self._is_ours(pid):
                    os.kill(pid, signal.SIGKILL)
            for pid_file in (self.home / "pids").glob(f"flink-*-{role}.pid"):
                pid_file.unlink()

    def _log_cause(self) -> str:
        """The JobManager log's last ERROR line (else its last line): why it did not come up."""
        logs = sorted(self.log_dir.glob("*standalonesession*.log"))
        lines = [line.strip() for line in logs[-1].read_text(errors="replace").splitlines()
                 if line.strip()] if logs else []
        errors = [line for line in lines if " ERROR " in line]
        return (errors or lines or ["no JobManager log"])[-1]

    # -- REST ------------------------------------------------------------------------------------
    def rest(self, path: str, method: str = "GET", body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        return rest_call(self.url, path, method, body, timeout)

    def status(self) -> dict[str, Any]:
        """Overview, TaskManager pids and jobs; `running` is False when nothing answers."""
        info: dict[str, Any] = {"home": str(self.home), "web_ui": self.url,
                                "jobmanager_pids": self.pids("standalonesession"),
                                "taskmanager_pids": self.pids("taskexecutor")}
        try:
            info["overview"] = self.rest("/overview", timeout=2)
            info["jobs"] = self.rest("/jobs/overview", timeout=2)["jobs"]
            info["running"] = True
        except ClusterError:
            info["running"] = False
        return info


def rest_error(body: bytes) -> str:
    """Flink's REST error body (`{"errors": ["<Java exception>\\n\\tat ..."]}`) reduced to its messages."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = [body.decode(errors="replace")]
    noise = ("Internal server error.", "<Exception on server side:")
    messages = []
    for error in errors:
        first = next((line.strip() for line in str(error).splitlines() if line.strip() and line.strip() not in noise
                      and not line.strip().startswith("at ")), "")
        name, sep, message = first.partition(": ")
        message = message if sep and "." in name and " " not in name else first  # drop the Java class name
        if message and message not in messages:
            messages.append(message)
    return "; ".join(messages) or "no detail"


def rest_call(base_url: str, path: str, method: str = "GET", body: dict[str, Any] | None = None,
              timeout: float = 10) -> Any:
    """One call to Flink's REST API; errors carry Flink's own error text."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        hint = "check the job id with `ctxsync status`" if exc.code == 404 else None
        raise ClusterError(f"Flink answered HTTP {exc.code} to {method} {path}: {rest_error(exc.read())}", hint) from exc
    except OSError as exc:
        raise ClusterError(f"cannot reach Flink at {base_url}: {getattr(exc, 'reason', exc)}",
                           "is the cluster up? `ctxsync cluster up` starts a local one") from exc
    return json.loads(text) if text else {}

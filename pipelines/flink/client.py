"""Submit and control ctxsync jobs on any Flink cluster (the loopback one or a remote session cluster).

Submission goes through Flink's own CLI (`flink run --python pipelines/flink/main.py`), which builds the
graph on the client and ships it with the Python packages (`-pyfs`) and the jars (`pipeline.jars`).
Savepoints, stop, cancel and status use the REST API: no JVM start per call, and clear error texts.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ctxsync.cluster import Cluster, ClusterError, _java_opts, default_home, flink_home, rest_call
from pipelines.flink.env import PROJECT_ROOT

# Shipped to the workers; each lands on the Python workers' PYTHONPATH.
SHIPPED_PACKAGES = ("ctxsync", "transforms", "pipelines")
ENTRY = PROJECT_ROOT / "pipelines" / "flink" / "main.py"
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")
TERMINAL = {"FINISHED", "FAILED", "CANCELED", "SUSPENDED"}


class SubmitError(ClusterError):
    """`flink run` failed; the message holds Flink's own output."""


@dataclass(frozen=True)
class Submission:
    job: str
    profile: str
    jobmanager: str                      # REST address host:port
    parallelism: int | None = None
    from_savepoint: str | None = None
    overrides: tuple[str, ...] = ()
    jobs_file: Path = PROJECT_ROOT / "jobs.yaml"
    input_path: Path | None = None       # file profile
    out_dir: Path | None = None          # file profile
    dev_dir: Path | None = None          # ${dev:...} endpoints of `ctxsync dev up`
    python: str = sys.executable


def client_env(jobmanager: str) -> dict[str, str]:
    """Environment for `flink run`: the loopback cluster's conf when it is the target, else a client conf."""
    cluster = Cluster.load()
    conf_dir = cluster.conf_dir
    if not (cluster.spec.rest_port and cluster.address == jobmanager and (conf_dir / "config.yaml").exists()):
        conf_dir = default_home().parent / "client" / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        host, _, port = jobmanager.rpartition(":")
        conf = {"rest.address": host, "rest.port": int(port), "env.java.opts.all": _java_opts()}
        (conf_dir / "config.yaml").write_text(yaml.safe_dump(conf))
        for name in ("log4j-cli.properties", "logback.xml"):
            if not (conf_dir / name).exists():
                (conf_dir / name).symlink_to(flink_home() / "conf" / name)
    log_dir = conf_dir.parent / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "FLINK_HOME": str(flink_home()), "FLINK_CONF_DIR": str(conf_dir),
            "FLINK_LOG_DIR": str(log_dir)}


def run_command(sub: Submission) -> list[str]:
    """The `flink run` command line for a submission (detached: returns once the job is accepted)."""
    cmd = [str(flink_home() / "bin" / "flink"), "run", "-d", "-m", sub.jobmanager]
    if sub.from_savepoint:
        cmd += ["-s", sub.from_savepoint]
    if sub.parallelism:
        cmd += ["-p", str(sub.parallelism)]
    cmd += ["--python", str(ENTRY), "-pyexec", sub.python, "-pyclientexec", sub.python,
            "-pyfs", ",".join(str(PROJECT_ROOT / p) for p in SHIPPED_PACKAGES)]
    args = [sub.job, "--jobs", str(sub.jobs_file.resolve()), "--profile", sub.profile]
    if sub.parallelism:
        args += ["--parallelism", str(sub.parallelism)]
    for item in sub.overrides:
        args += ["--set", item]
    for flag, value in (("--input", sub.input_path), ("--out", sub.out_dir), ("--dev-dir", sub.dev_dir)):
        if value is not None:
            args += [flag, str(Path(value).resolve())]
    return cmd + args


def submit(sub: Submission, timeout_s: float = 300) -> str:
    """Submit with Flink's CLI; returns the JobID."""
    env = client_env(sub.jobmanager)
    result = subprocess.run(run_command(sub), env=env, capture_output=True, text=True, timeout=timeout_s,
                            cwd=PROJECT_ROOT)
    output = result.stdout + result.stderr
    match = _JOB_ID.search(output)
    if result.returncode != 0 or match is None:
        raise SubmitError(f"flink run failed (exit {result.returncode}): {cli_cause(output)}",
                          f"Flink's client log: {env['FLINK_LOG_DIR']}")
    return match.group(1)


# `Caused by:` lines that only wrap the real cause (the Python driver's exit, the JobMaster's start)
_WRAPPERS = ("Python process exits with code", "Could not start the JobMaster")


def cli_cause(output: str) -> str:
    """The reason in `flink run`'s output: the innermost `Caused by:` that is not a mere wrapper, else the
    first exception line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    causes = [line.removeprefix("Caused by: ") for line in lines
              if line.startswith("Caused by: ") and not any(w in line for w in _WRAPPERS)]
    errors = [line for line in lines if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]]
    return (causes or errors[:1] or lines[-1:] or ["no output"])[-1]


def job_detail(jobmanager: str, job_id: str) -> dict[str, Any]:
    return rest_call(f"http://{jobmanager}", f"/jobs/{job_id}")


def job_state(jobmanager: str, job_id: str) -> str:
    return job_detail(jobmanager, job_id)["state"]


def wait_for_state(jobmanager: str, job_id: str, states: set[str], timeout_s: float = 300,
                   progress: Any = None) -> str:
    """Poll until the job is in one of `states` (or in a terminal state); returns the state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = job_state(jobmanager, job_id)
        if state in states or state in TERMINAL:
            return state
        if progress is not None:
            progress.note(f"job {job_id[:8]} {state}", force=False)
        time.sleep(0.5)
    raise ClusterError(f"job {job_id} not {'/'.join(sorted(states))} after {timeout_s:.0f}s "
                       f"(state {job_state(jobmanager, job_id)})")


def failure_cause(jobmanager: str, job_id: str) -> str:
    try:
        root = rest_call(f"http://{jobmanager}", f"/jobs/{job_id}/exceptions").get("exceptionHistory", {})
        entries = root.get("entries", [])
        return entries[0]["stacktrace"].split("\n\tat ")[0] if entries else "(no exception recorded)"
    except ClusterError as exc:
        return str(exc)


def _await_savepoint(jobmanager: str, job_id: str, trigger: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = rest_call(f"http://{jobmanager}", f"/jobs/{job_id}/savepoints/{trigger}")
        if info["status"]["id"] == "COMPLETED":
            operation = info.get("operation", {})
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("stack-trace", "").split("\n\tat ")[0]
                raise ClusterError(f"savepoint of job {job_id} failed: {cause}")
            return operation["location"]
        time.sleep(0.3)
    raise ClusterError(f"savepoint of job {job_id} not done after {timeout_s:.0f}s")


def savepoint(jobmanager: str, job_id: str, target_dir: str | None = None, timeout_s: float = 120) -> str:
    """Trigger a savepoint (the job keeps running); returns its path."""
    body = {"cancel-job": False, "formatType": "CANONICAL"}
    if target_dir:
        body["target-directory"] = target_dir
    trigger = rest_call(f"http://{jobmanager}", f"/jobs/{job_id}/savepoints", "POST", body)["request-id"]
    return _await_savepoint(jobmanager, job_id, trigger, timeout_s)


def stop_with_savepoint(jobmanager: str, job_id: str, target_dir: str | None = None,
                        timeout_s: float = 120) -> str:
    """Stop the job with a final savepoint (sources stop, Kafka transactions commit); returns its path."""
    body: dict[str, Any] = {"drain": False, "formatType": "CANONICAL"}
    if target_dir:
        body["targetDirectory"] = target_dir
    trigger = rest_call(f"http://{jobmanager}", f"/jobs/{job_id}/stop", "POST", body)["request-id"]
    location = _await_savepoint(jobmanager, job_id, trigger, timeout_s)
    wait_for_state(jobmanager, job_id, TERMINAL, timeout_s=60)
    return location


def cancel(jobmanager: str, job_id: str) -> None:
    rest_call(f"http://{jobmanager}", f"/jobs/{job_id}?mode=cancel", "PATCH")
    wait_for_state(jobmanager, job_id, TERMINAL, timeout_s=60)


def jobs_overview(jobmanager: str) -> list[dict[str, Any]]:
    """Jobs with state, duration and the latest completed checkpoint."""
    jobs = rest_call(f"http://{jobmanager}", "/jobs/overview")["jobs"]
    for job in jobs:
        try:
            checkpoints = rest_call(f"http://{jobmanager}", f"/jobs/{job['jid']}/checkpoints")
            job["last_checkpoint"] = (checkpoints.get("latest") or {}).get("completed")
            job["restored"] = (checkpoints.get("latest") or {}).get("restored")
        except ClusterError:
            job["last_checkpoint"] = None
    return jobs


def default_jobmanager() -> str:
    """The loopback cluster's REST address, when `ctxsync cluster up` started one."""
    cluster = Cluster.load()
    if cluster.spec.rest_port and cluster.pids("standalonesession"):
        return cluster.address
    raise ClusterError("no --jobmanager given and no loopback cluster is running (start one: ctxsync cluster up)")


def merge_file_outputs(out_dir: Path):
    """Merge the committed part files of a finished file-profile job into the contract layout."""
    import shutil

    from pipelines.file_outputs import OutputCollector
    from pipelines.flink.files import PARTS_DIR

    parts = out_dir / PARTS_DIR
    pending = [p for p in parts.rglob(".*") if p.is_file()]
    if pending:
        raise ClusterError(f"{len(pending)} part files in {parts} were never committed by a checkpoint: "
                           f"{[p.name for p in pending[:3]]}")
    collector = OutputCollector()
    for path in sorted(p for p in parts.rglob("*") if p.is_file()):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                collector.add(line.rstrip("\n"))
    summary = collector.write(out_dir)
    shutil.rmtree(parts)
    return summary

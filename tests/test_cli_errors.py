"""Bad usage, as a user types it: one line `ctxsync <command>: ...` on stderr, exit 2 or 1, never a traceback.

Every case runs the real command line in a subprocess (the console entry point), so what is asserted is
what a terminal shows, including what Python prints at exit.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctxsync import errors
from ctxsync.errors import explain, quiet_engine_logs
from ctxsync.servers import free_port
from tests.helpers import ROOT, SAMPLE

JOBS = str(ROOT / "jobs.yaml")


def ctxsync(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctxsync.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, code: int, *words: str) -> str:
    """The policy: exit `code`, and stderr ends with one line naming the command (progress lines may
    come before it), no traceback."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "\tat " not in result.stderr, result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("ctxsync ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert errors[0].startswith(f"ctxsync {command}: "), errors[0]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def latin1_jobs(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_bytes((ROOT / "jobs.yaml").read_bytes().replace(b"# ctxsync jobs.", b"# ctxsync jobs (caf\xe9).", 1))
    return path


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A plain file: paths under it can be neither created nor written, even by root."""
    path = tmp_path / "plain-file"
    path.write_text("x")
    return path


def test_a_jobs_file_that_is_not_utf8_is_named_with_its_line(latin1_jobs, tmp_path):
    assert_one_line_error(ctxsync("jobs", "--jobs", str(latin1_jobs)), "jobs", 2, "jobs.yaml:1", "UTF-8")
    result = ctxsync("run", "context-sync", "--jobs", str(latin1_jobs), "--input", str(SAMPLE),
                     "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "run", 2, "not UTF-8")


def test_a_missing_jobs_file_says_how_to_point_at_one(tmp_path):
    assert_one_line_error(ctxsync("jobs", cwd=tmp_path), "jobs", 2, "jobs.yaml", "--jobs")


def test_inputs_that_are_missing_or_directories_are_named(tmp_path):
    for args in (["run", "context-sync", "--jobs", JOBS, "--out", str(tmp_path / "o"), "--input"],
                 ["validate", "--report", str(tmp_path / "r.html")], ["replay", "--jobs", JOBS]):
        assert_one_line_error(ctxsync(*args, str(tmp_path)), args[0], 2, "is a directory")
        assert_one_line_error(ctxsync(*args, str(tmp_path / "missing.jsonl")), args[0], 2, "does not exist")
    assert_one_line_error(ctxsync("run", "context-sync", "--jobs", JOBS, "--profile", "nope"), "run", 2,
                          "no profile 'nope'", "embedded, local")


def test_unwritable_outputs_are_refused_before_any_work(a_file, tmp_path):
    out = a_file / "out"
    started = time.monotonic()
    result = ctxsync("run", "context-sync", "--jobs", JOBS, "--input", str(SAMPLE), "--out", str(out))
    assert_one_line_error(result, "run", 2, str(out))
    assert time.monotonic() - started < 60  # refused up front: Flink (10 s or more) never started
    assert_one_line_error(ctxsync("generate", "--events", "10", str(a_file / "g.jsonl")), "generate", 2)
    assert_one_line_error(ctxsync("validate", str(SAMPLE), "--report", str(a_file / "r.html")), "validate", 2)
    drift = tmp_path / "drift.jsonl"
    drift.write_text("")
    assert_one_line_error(ctxsync("drift-report", str(drift), "--html", str(a_file / "d.html")), "drift-report", 2)
    assert_one_line_error(ctxsync("validate", str(SAMPLE), "--report", str(tmp_path)), "validate", 2, "directory")


def test_drift_report_refuses_non_utf8_and_foreign_files(tmp_path):
    binary = tmp_path / "drift.jsonl"
    binary.write_bytes(b'{"a": "\xff"}\n')
    assert_one_line_error(ctxsync("drift-report", str(binary), "--html", str(tmp_path / "d.html")),
                          "drift-report", 2, "not UTF-8")
    foreign = tmp_path / "events.jsonl"
    foreign.write_text('{"eventId": "e1"}\n')
    assert_one_line_error(ctxsync("drift-report", str(foreign), "--html", str(tmp_path / "d.html")),
                          "drift-report", 2, "events.jsonl:1 is not a drift record")
    assert not (tmp_path / "d.html").exists()


def test_unreachable_servers_exit_1_naming_the_server(tmp_path):
    drift = tmp_path / "drift.jsonl"
    drift.write_text("")
    port = free_port()
    assert_one_line_error(ctxsync("drift-report", str(drift), "--es", f"http://127.0.0.1:{port}"),
                          "drift-report", 1, "cannot reach Elasticsearch")
    assert_one_line_error(ctxsync("drift-report", str(drift), "--kafka", f"127.0.0.1:{port}"),
                          "drift-report", 1, "cannot reach Kafka", f"127.0.0.1:{port}")
    assert_one_line_error(ctxsync("status", "--jobmanager", f"127.0.0.1:{port}"), "status", 1, "cannot reach Flink")


def test_commands_of_the_local_profile_without_dev_servers_say_to_start_them(tmp_path):
    env = {"CTXSYNC_DEV_DIR": str(tmp_path / "no-servers")}
    for args in (["view", "user-1"], ["history", "--user", "user-1"], ["replay", str(SAMPLE)],
                 ["connect", "all", "--until-caught-up"], ["run", "context-sync", "--profile", "local"]):
        assert_one_line_error(ctxsync(*args, "--jobs", JOBS, env=env), args[0], 2, "ctxsync dev up")


def test_cluster_commands_without_a_cluster_say_how_to_start_one(tmp_path):
    env = {"CTXSYNC_CLUSTER_HOME": str(tmp_path / "cluster")}
    for args in (["submit", "context-sync", "--profile", "embedded", "--input", str(SAMPLE), "--out", str(tmp_path)],
                 ["cancel", "0" * 32], ["savepoint", "0" * 32], ["status"]):
        assert_one_line_error(ctxsync(*args, "--jobs", JOBS, env=env) if args[0] == "submit"
                              else ctxsync(*args, env=env), args[0], 2, "ctxsync cluster up")
    assert_one_line_error(ctxsync("cancel", "not-a-job-id"), "cancel", 2, "32 hex digits")


def test_set_typos_suggest_the_close_key(tmp_path):
    base = ["run", "context-sync", "--runner", "reference", "--jobs", JOBS, "--input", str(SAMPLE),
            "--out", str(tmp_path)]
    for typo, meant in (("paralelism=2", "parallelism"), ("conflict_polcy=reject", "conflict_policy"),
                        ("profiles.local.source.bounde=false", "profiles.local.source.bounded")):
        assert_one_line_error(ctxsync(*base, "--set", typo), "run", 2, f"did you mean {meant}?")
    assert_one_line_error(ctxsync(*base, "--set", "flink.python.executable=/bin/false"), "run", 2, "sets this key itself")
    assert_one_line_error(ctxsync(*base, "--set", "flink.NotAKey=1"), "run", 2, "not a Flink configuration key")


def test_argparse_mistakes_are_one_line_too():
    assert_one_line_error(ctxsync("run"), "run", 2, "JOB", "--help")
    assert_one_line_error(ctxsync("generate", "--invalid-rate", "2", "x.jsonl"), "generate", 2, "between 0 and 1")
    assert_one_line_error(ctxsync("history", "--user", "u", "--since", "yesterday"), "history", 2, "ISO-8601")
    assert_one_line_error(ctxsync("history", "--user", "u", "--limit", "0"), "history", 2, "at least 1")
    assert_one_line_error(ctxsync("replay", str(SAMPLE), "--to", "2026-11-24"), "replay", 2, "with a zone")


def test_validate_strict_fails_when_nothing_was_valid(tmp_path):
    junk = tmp_path / "junk.jsonl"
    junk.write_text("[1, 2]\nnot json\n")
    result = ctxsync("validate", str(junk), "--report", str(tmp_path / "r.html"), "--strict")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ctxsync validate: nothing was validated: none of the 2 lines" in result.stderr
    assert ctxsync("validate", str(junk), "--report", str(tmp_path / "r.html")).returncode == 0  # not strict


def test_debug_adds_the_traceback(latin1_jobs):
    for result in (ctxsync("--debug", "jobs", "--jobs", str(latin1_jobs)),
                   ctxsync("jobs", "--jobs", str(latin1_jobs), env={"CTXSYNC_DEBUG": "1"})):
        assert result.returncode == 2
        assert "Traceback" in result.stderr and result.stderr.splitlines()[-1].startswith("ctxsync jobs: ")


def test_a_closed_output_pipe_exits_quietly():
    """`ctxsync ... | head -1`: the reader goes away before we are done writing."""
    child = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "jobs", "--jobs", JOBS], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    _, err = child.communicate(timeout=60)
    assert child.returncode == 141 and err == b"", err.decode()


@pytest.mark.flink
@pytest.mark.parametrize("after_s", [2.0, 12.0], ids=["while-flink-starts", "while-the-job-runs"])
def test_ctrl_c_during_a_flink_run_prints_one_line_and_exits_130(tmp_path, after_s):
    events = tmp_path / "events.jsonl"  # long enough (tens of seconds on Flink) to be interrupted mid-run
    assert ctxsync("generate", "--events", "100000", "--users", "1000", str(events)).returncode == 0
    child = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", "run", "context-sync", "--jobs", JOBS,
                              "--input", str(events), "--out", str(tmp_path / "out")], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert "Traceback" not in err and "ERROR" not in err, err[-3000:]
    assert child.returncode == 130, err[-3000:]
    assert err.splitlines()[-1] == "ctxsync run: interrupted"


def java_children(pid: int) -> list[int]:
    """Pids of the `java` processes whose parent is `pid` (the local mini-cluster's JVM)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue  # gone meanwhile
        if fields[0].endswith("(java") and int(fields[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.flink
@pytest.mark.parametrize("when, debug", [("running,", False), ("starting Flink", False), ("starting Flink", True)],
                         ids=["while-the-job-runs", "while-flink-starts", "debug-while-flink-starts"])
def test_a_jvm_that_dies_mid_run_is_one_line_and_exit_1(tmp_path, when, debug):
    """kill -9 of the job's JVM: py4j logged every broken call with its traceback (33 to 260 of them
    before and after the CLI's line); now the one line says what happened, --debug keeps the rest."""
    events = tmp_path / "events.jsonl"
    assert ctxsync("generate", "--events", "100000", "--users", "1000", str(events)).returncode == 0
    err_file = tmp_path / "stderr"
    with err_file.open("w") as err:
        child = subprocess.Popen([sys.executable, "-m", "ctxsync.cli", *(["--debug"] if debug else []), "run",
                                  "context-sync", "--jobs", JOBS, "--input", str(events), "--out",
                                  str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True)
    deadline = time.monotonic() + 240
    while not (when in err_file.read_text() and java_children(child.pid)) and child.poll() is None:
        assert time.monotonic() < deadline, err_file.read_text()
        time.sleep(0.5)
    for pid in java_children(child.pid):
        os.kill(pid, signal.SIGKILL)
    assert child.wait(timeout=120) == 1
    result = subprocess.CompletedProcess(child.args, 1, "", err_file.read_text())
    if debug:
        assert "Traceback" in result.stderr and "ctxsync run: the Flink engine's JVM exited " in result.stderr
        return
    assert_one_line_error(result, "run", 1, "the Flink engine's JVM exited ", "flink-logs")


def test_py4j_errors_of_a_lost_jvm_are_explained_and_its_logs_kept_quiet(capsys):
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError

    for lost in (Py4JNetworkError("An error occurred while trying to connect to the Java server (127.0.0.1:1)"),
                 Py4JError("An error occurred while calling o41.toDataStream")):
        error = explain(lost)
        assert error.exit_code == 1 and str(error).startswith("the Flink engine's JVM exited during the run")
    started = explain(RuntimeError("Java gateway process exited before sending its port number."))
    assert str(started).startswith("the Flink engine's JVM exited while starting")
    assert "JVM exited" not in str(explain(Py4JError("An error occurred while calling o41.x. Trace:\nat y")))
    assert not issubclass(Py4JJavaError, Py4JNetworkError)

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    try:
        quiet_engine_logs()
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            py4j_logged_on_root = root.makeRecord("root", logging.ERROR, f"{os.sep}py4j{os.sep}java_gateway.py", 1055,
                                                  "Exception while sending command.", (), sys.exc_info())
            root.handle(py4j_logged_on_root)
            logging.getLogger("py4j.java_gateway").exception("An error occurred while trying to connect")
            root.error("ours")
    finally:
        root.removeHandler(handler)
        root.removeFilter(errors._not_from_py4j)
        logging.getLogger("py4j").propagate = True
    assert capsys.readouterr().err == "ours\n"

"""Drive a running Flink job from the client: watch it, and stop it with a savepoint.

A Kafka run is started with `execute_async` on an unbounded source and stopped from here once its input is
processed (or on Ctrl-C). Stopping with a savepoint, rather than letting a bounded source finish, is what
keeps the job's state for the next run: Flink discards the checkpoints of a job that finishes.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from ctxsync.errors import RuntimeFailure, java_cause

TERMINAL = {"FAILED", "CANCELED", "FINISHED"}


class JobFailed(RuntimeFailure):
    """The job failed (after its restarts), or ended on its own before it was stopped."""


def job_status(client: Any) -> str:
    """The job's status name; a job whose mini-cluster is already gone reports its final result instead."""
    try:
        return client.get_job_status().result().name
    except Exception:  # the mini-cluster shuts down with the job: ask the result for the cause
        _raise_ended(client, "")


def _root_cause(exc: BaseException) -> str:
    text = str(exc)
    marker = "Caused by: "
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith(marker)]
    return causes[-1][len(marker):] if causes else java_cause(exc) or (text.splitlines()[0] if text else repr(exc))


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, acted on by the caller at a safe point (a Kafka run stops with a
    savepoint, a file run cancels). A second Ctrl-C raises KeyboardInterrupt (abort at once). Signals
    never interrupt a call into the JVM half-way."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, _frame: Any) -> None:
        if requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def watch(client: Any, done: Callable[[], bool], on_poll: Callable[[str], None] = lambda status: None,
          poll_s: float = 0.5) -> None:
    """Return once `done()` holds while the job runs; JobFailed if the job ends first."""
    while True:
        status = job_status(client)
        on_poll(status)
        if status in TERMINAL:
            _raise_ended(client, status)
        if status == "RUNNING" and done():
            return
        time.sleep(poll_s)


def _raise_ended(client: Any, status: str) -> NoReturn:
    """JobFailed with the job's root cause (or with the fact that it ended unasked); `status` if known."""
    ended = f"the Flink job ended {status}".rstrip()
    try:
        client.get_job_execution_result().result()
    except Exception as exc:
        raise JobFailed(f"{ended}: {_root_cause(exc)}") from exc
    raise JobFailed(f"{ended} before it was stopped")


def stop_with_savepoint(client: Any, directory: Path, timeout_s: float = 300.0) -> str:
    """Stop the job with a savepoint in `directory`; returns the savepoint's URI.

    PyFlink 2.3's JobClient.stop_with_savepoint calls a Java overload that no longer exists, so the Java
    client is called directly. A savepoint needs every task running: right after the start it is retried.
    """
    from pyflink.java_gateway import get_gateway

    fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(client._j_job_client.stopWithSavepoint(False, directory.resolve().as_uri(), fmt).get())
        except Exception as exc:
            if "not all required tasks are currently running" not in str(exc).lower() \
                    and "not all tasks are running" not in str(exc).lower():
                raise JobFailed(f"stopping the job with a savepoint failed: {_root_cause(exc)}") from exc
            if time.monotonic() > deadline:
                raise JobFailed(f"the job's tasks did not all run within {timeout_s:.0f}s; no savepoint") from exc
            time.sleep(1.0)

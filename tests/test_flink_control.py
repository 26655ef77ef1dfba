"""Watching a Flink job from the client, with a stand-in JobClient (the real one runs in the e2e tests)."""
from __future__ import annotations

import os
import signal

import pytest

from pipelines.flink.control import JobFailed, stop_requests, watch


class Done:
    def __init__(self, value=None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class Status:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeClient:
    """Reports the statuses given, then the last one forever; the execution result fails with `cause`."""

    def __init__(self, statuses: list[str], cause: Exception | None = None) -> None:
        self.statuses, self.cause = list(statuses), cause

    def get_job_status(self) -> Done:
        name = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Done(Status(name))

    def get_job_execution_result(self) -> Done:
        return Done(error=self.cause)


def test_watch_waits_for_running_before_asking_done() -> None:
    asked: list[int] = []
    seen: list[str] = []
    watch(FakeClient(["CREATED", "INITIALIZING", "RUNNING"]), lambda: asked.append(1) or len(asked) >= 2,
          on_poll=seen.append, poll_s=0)
    assert seen == ["CREATED", "INITIALIZING", "RUNNING", "RUNNING"] and len(asked) == 2


def test_a_job_that_fails_reports_its_root_cause() -> None:
    cause = RuntimeError("JobExecutionException: Job failed\nCaused by: Recovery is suppressed\n"
                         "Caused by: org.apache.kafka.common.errors.TimeoutException: broker gone")
    with pytest.raises(JobFailed, match="ended FAILED: org.apache.kafka.common.errors.TimeoutException: broker gone"):
        watch(FakeClient(["RUNNING", "FAILED"], cause), lambda: False, poll_s=0)


def test_a_job_that_finished_on_its_own_is_not_a_success() -> None:
    with pytest.raises(JobFailed, match="ended FINISHED before it was stopped"):
        watch(FakeClient(["FINISHED"]), lambda: False, poll_s=0)


def test_sigterm_asks_for_a_stop_and_a_second_ctrl_c_aborts() -> None:
    before = signal.getsignal(signal.SIGINT)
    with stop_requests() as requested:
        os.kill(os.getpid(), signal.SIGTERM)
        assert requested.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_job_whose_mini_cluster_is_gone_reports_the_cause_from_its_result() -> None:
    class Gone(FakeClient):
        def get_job_status(self) -> Done:
            return Done(error=RuntimeError("MiniCluster is not yet running or has already been shut down."))

    cause = RuntimeError("Job failed\nCaused by: java.io.IOException: disk full")
    with pytest.raises(JobFailed, match=r"^the Flink job ended: java.io.IOException: disk full$"):
        watch(Gone(["RUNNING"], cause), lambda: False, poll_s=0)

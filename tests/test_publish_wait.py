"""Read your own writes: `publish(wait=True)` against the real job (`ctxsync run --profile local`,
unbounded, on Apache Kafka and redis-server) returns once the event's views are applied in Redis, with
the job's outcome; duplicates, stale and rejected writes say so; a stopped job is a timeout, not a hang."""
from __future__ import annotations

import signal

import pytest
import yaml

from ctxsync.client import ContextClient, OutcomeTimeout, from_profile
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.test_e2e_local import finish, prepare, start_local, wait_for, with_source

pytestmark = [pytest.mark.servers, pytest.mark.flink]


def test_publish_wait_returns_the_outcome_once_the_view_is_readable(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path):  # noqa: F811
    prefix = f"pw{unique}"
    job, _ = prepare(servers, monkeypatch, prefix)
    job = with_source(job, bounded=False)
    jobs = tmp_path / "client-jobs.yaml"
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    client = ContextClient(from_profile("local", jobs), "risk-model")
    running = start_local(job, tmp_path, servers)
    try:
        # the first answer also waits for Flink to start
        first = client.publish("u1", {"riskTolerance": "low"}, wait=True, timeout_s=120)
        assert (first.outcome, first.applied, first.versions) == ("applied", ("riskTolerance",), {"financial:u1": 1})
        for version in range(2, 6):  # each answer means the view is there: read-your-writes, every time
            outcome = client.publish("u1", {"riskTolerance": f"level-{version}"}, wait=True, timeout_s=30)
            assert outcome.versions == {"financial:u1": version}
            assert client.get("u1").value("riskTolerance") == f"level-{version}"
        again = client.publish("u1", {"riskTolerance": "x"}, event_id=first.event_id, wait=True, timeout_s=30)
        assert again.outcome == "duplicate" and client.get("u1").version("financial") == 5
        stale = client.publish("u1", {"riskTolerance": "old"}, expected_version=1, wait=True, timeout_s=30)
        assert (stale.outcome, stale.conflict) == ("applied", True)  # last-writer-wins: applied, flagged
        assert 0 < stale.waited_ms < 30_000
    finally:
        running.send_signal(signal.SIGINT)
        finish(running)
    wait_for(lambda: running.poll() is not None, "the job to stop")
    with pytest.raises(OutcomeTimeout, match="ctxsync trace"):
        client.publish("u1", {"riskTolerance": "late"}, wait=True, timeout_s=1)
    client.close()

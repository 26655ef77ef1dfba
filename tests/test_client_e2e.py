"""ctxsync.client through the real job: models publish with the client, `ctxsync run context-sync
--profile local` (Flink, Apache Kafka, connectors to redis-server) applies the events, and the
client reads the views the job wrote, receives them on its change feed, and sees the conflict of a
concurrent read-modify-write in the violations topic."""
from __future__ import annotations

import time

import pytest
import yaml

from ctxsync.client import ContextClient, from_profile
from ctxsync.client.clock import EventClock
from ctxsync.io.redis_views import RedisViewSink
from tests.fixtures_servers import es_client, redis_client, servers, unique  # noqa: F401
from tests.test_e2e_local import prepare, run_local

pytestmark = [pytest.mark.servers, pytest.mark.flink]


@pytest.mark.flink
def test_publish_read_subscribe_and_conflict_through_the_job(
        servers, redis_client, es_client, unique, monkeypatch, tmp_path):  # noqa: F811
    prefix = f"cl{unique}"
    job, _ = prepare(servers, monkeypatch, prefix)
    jobs = tmp_path / "client-jobs.yaml"
    jobs.write_text(yaml.safe_dump({"version": 1, "jobs": {"context-sync": job.model_dump(mode="json")}}))
    endpoints = from_profile("local", jobs)
    assert endpoints.events_topic == f"{prefix}.events"
    risk = ContextClient(endpoints, "risk-model")
    churn = ContextClient(endpoints, "churn-predictor", cache=True)
    feed = churn.changes(group="churn", max_idle_s=1.0)  # before anything is written

    first = risk.publish("u1", {"riskTolerance": "low", "portfolioValue": 1000}, targets=["churn-predictor"])
    risk.publish("u2", {"segment": "power"}, targets=["churn-predictor"])
    run_local(job, tmp_path, servers)

    context = churn.get("u1")
    written = {v["category"]: v for v in RedisViewSink(redis_client).read_user("u1")}
    assert {c: v.version for c, v in context.views.items()} == {"financial": 1}
    assert context.views["financial"].attributes == {
        name: context.attributes[name] for name in ("riskTolerance", "portfolioValue")}
    assert written["financial"]["attributes"]["riskTolerance"] == {
        "value": "low", "confidence": 1.0, "updatedAt": context.attributes["riskTolerance"].updated_at,
        "eventId": first, "modelId": "risk-model"}
    assert churn.get("u2").value("segment") == "power"

    # two models read version 1 and both write against it: the second one conflicts
    seen_by_risk, seen_by_churn = risk.get("u1"), churn.get("u1")
    accepted = risk.update("u1", lambda ctx: {"riskTolerance": "mid"})
    assert accepted.expected_version == seen_by_risk.version("financial") == 1
    # no pause: a later write of this process sorts after the earlier one even in the same millisecond
    late = churn.publish("u1", {"riskTolerance": "high"}, expected_version=seen_by_churn.version("financial"),
                         targets=["churn-predictor"])
    # 60 writes of one client in one millisecond (its clock frozen): applied in the order published
    frozen = time.time_ns() // 1_000_000
    burst = ContextClient(endpoints, "burst-model", clock=EventClock(wall=lambda: frozen))
    for n in range(30):
        burst.update("u3", {"segment": f"read-{n}"})
        burst.publish("u3", {"segment": f"blind-{n}"})
    run_local(job, tmp_path, servers)
    u3 = churn.get("u3")
    assert (u3.version("behavioral"), u3.value("segment")) == (60, "blind-29")
    burst.close()

    violations = risk.conflicts([accepted.event_id, late])
    assert [(v["kind"], v["eventId"], v["key"], v["modelId"]) for v in violations] == [
        ("conflict", late, "financial:u1", "churn-predictor")]
    after = churn.get("u1")  # last-writer-wins: the conflicting update is still applied
    assert after.version("financial") == 3 and after.value("riskTolerance") == "high"
    assert churn.hit_rate > 0

    changes = [(c.key, c.version) for c in feed]
    u1 = [v for k, v in changes if k == "financial:u1"]
    assert u1[0] == 1 and u1[-1] == 3 and u1 == sorted(set(u1))
    assert ("behavioral:u2", 1) in changes
    risk.close()
    churn.close()

"""The history on a real OpenSearch 2.19 node (tests/fixtures_opensearch.py): what the connector writes (from a real
Kafka), what the commands read and delete (history, trace, verify, erase, drift-report --es) and the analyst
queries of docs/search.md, also run as curl."""
from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch
from opensearchpy import OpenSearch

from ctxsync import opensearch_dist
from ctxsync.cli import main
from ctxsync.config import ElasticsearchEndpoint, Profile
from ctxsync.errors import RuntimeFailure
from ctxsync.io.clients import es_client, search_client
from ctxsync.io.erasure import erase_elasticsearch
from ctxsync.io.es_history import (
    HISTORY_PREFIX, VIOLATIONS_INDEX, EsBulkWriter, EsDoc, history_doc, install_templates, missing_documents,
    search_history, violation_doc,
)
from ctxsync.io.connectors import elasticsearch_connector
from ctxsync.io.kafka_io import TopicSpec, ensure_topics, producer
from ctxsync.io.search import as_backend, queries
from ctxsync.observe.trace import ES_HISTORY, HISTORY, Hop, Trace, Tracer
from ctxsync.servers import free_port
from pipelines.drift_sinks import DRIFT_INDEX
from tests.fixtures_opensearch import opensearch, opensearch_url, os_client  # noqa: F401
from tests.fixtures_servers import kafka_config, servers, unique  # noqa: F401
from tests.helpers import event

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "search.md"


def history(event_id: str, ts: str, user: str = "u1", model: str = "risk-model", attr: str = "segment",
            value: str = "x", session: str = "s1", category: str = "behavioral") -> dict:
    doc = event(eventId=event_id, timestamp=ts, contextDelta__userId=user, contextDelta__sessionId=session,
                source__modelId=model)
    doc["contextDelta"]["updates"] = {attr: {"current": value, "confidence": 0.5}}
    doc.update(aggregates=[f"{category}:{user}"], applied=[attr], stale=[], violation=False, conflict=False)
    return doc


def write(client, records: list[dict]) -> None:
    writer = EsBulkWriter(client)
    done, rejected = writer.write([history_doc(r, f"context.history/0/{n}") for n, r in enumerate(records)])
    assert (done, rejected) == (len(records), [])
    writer.refresh()


def sample(client) -> None:
    """Two users over November and December, three models, two sessions, values to search."""
    install_templates(client)
    write(client, [
        history("a", "2026-11-24T10:00:00.000Z", value="Premium Gold"),
        history("b", "2026-11-30T23:59:59.999Z", attr="timezone", value="Europe/Paris", model="churn-predictor",
                category="preferences"),
        history("c", "2026-12-01T00:00:00.000Z", session="s2", model="churn-predictor"),
        history("d", "2026-12-02T08:00:00.000Z", user="u2", model="recommender", value="premium"),
    ])


def test_the_node_is_opensearch_2_19_with_the_distributions_modules(opensearch_url):
    with urllib.request.urlopen(opensearch_url) as response:
        info = json.load(response)
    assert info["version"]["distribution"] == "opensearch"
    assert info["version"]["number"].startswith("2.19.")
    with urllib.request.urlopen(f"{opensearch_url}/_nodes/plugins") as response:
        node = next(iter(json.load(response)["nodes"].values()))
    assert {m["name"] for m in node["modules"]} == {"transport-netty4", "analysis-common", "lang-painless", "reindex"}
    assert node["plugins"] == []  # no security plugin: a loopback node


def test_templates_map_updates_as_flat_object_and_rewrites_are_no_ops(os_client):
    install_templates(os_client)
    record = history("a", "2026-11-24T10:00:00.000Z")
    writer = EsBulkWriter(os_client)
    assert writer.write([history_doc(record, "o")]) == (1, [])
    assert writer.write([history_doc(record, "o")]) == (1, [])  # 409: already there
    writer.refresh()
    assert os_client.count(index="context-history-2026.11")["count"] == 1
    mapping = os_client.indices.get_mapping(index="context-history-2026.11")["context-history-2026.11"]
    assert mapping["mappings"]["properties"]["contextDelta"]["properties"]["updates"] == {"type": "flat_object"}
    assert as_backend(os_client).engine == "opensearch"


def test_the_connector_indexes_history_and_violations_from_kafka_once(os_client, kafka_config, unique):
    topics, dlq = (f"h-{unique}", f"v-{unique}"), f"d-{unique}"
    ensure_topics(kafka_config, [TopicSpec(topics[0], 2), TopicSpec(topics[1], 1), TopicSpec(dlq)])
    out = producer(kafka_config)
    for record in (history("a", "2026-11-24T10:00:00.000Z"), history("b", "2026-12-01T10:00:00.000Z"),
                   history("a", "2026-11-24T10:00:00.000Z", user="u2")):
        out.produce(topics[0], key=record["contextDelta"]["userId"].encode(), value=json.dumps(record).encode())
    out.produce(topics[1], key=b"behavioral:u1", value=json.dumps({
        "kind": "ordering", "key": "behavioral:u1", "eventId": "a", "timestamp": "2026-11-24T10:00:00.000Z",
        "maxTimestamp": "2026-11-24T11:00:00.000Z", "lagMs": 3600000, "policy": "accept", "modelId": "m"}).encode())
    assert out.flush(30) == 0

    def deliver(group: str) -> int:
        connector = elasticsearch_connector(kafka_config, os_client, topics, dlq, group)
        return connector.run(until_caught_up=True, idle_timeout_s=30).written

    assert deliver(f"g-{unique}") == 4
    assert [h["eventId"] for h in search_history(os_client, "u1")] == ["a", "b"]
    assert [h["eventId"] for h in search_history(os_client, "u2")] == ["a"]
    assert os_client.count(index=VIOLATIONS_INDEX)["count"] == 1
    assert deliver(f"g2-{unique}") == 4  # a new group reads everything again: same ids, nothing doubled
    os_client.indices.refresh(index=HISTORY_PREFIX + "*")
    assert os_client.count(index=HISTORY_PREFIX + "*")["count"] == 3


def test_rejected_documents_come_back_with_the_engines_reason(os_client):
    install_templates(os_client)
    bad = history("bad", "2026-11-24T10:00:00.000Z")
    bad["timestamp"] = "not a date"
    done, rejected = EsBulkWriter(os_client).write([EsDoc("context-history-2026.11", "bad", bad, "t/0/7")])
    assert done == 0
    assert [(r.doc.origin, r.error_type, r.status) for r in rejected] == [("t/0/7", "mapper_parsing_exception", 400)]
    assert "timestamp" in rejected[0].reason


def test_user_timeline_all_categories_one_attribute_one_session(os_client):
    sample(os_client)
    assert [h["eventId"] for h in search_history(os_client, "u1")] == ["a", "b", "c"]
    assert [h["eventId"] for h in search_history(os_client, "u1", attribute="timezone")] == ["b"]
    assert [h["eventId"] for h in search_history(os_client, "u1", session="s2")] == ["c"]
    assert [h["eventId"] for h in search_history(os_client, "u1", since="2026-12-01T00:00:00Z")] == ["c"]
    assert [h["eventId"] for h in search_history(os_client, "u1", model="churn-predictor")] == ["b", "c"]


def test_value_search_is_a_case_insensitive_substring_over_every_attribute(os_client):
    sample(os_client)
    assert [r["eventId"] for r in queries.events(os_client, text="premium")] == ["a", "d"]
    assert [r["eventId"] for r in queries.events(os_client, text="paris")] == ["b"]
    assert list(queries.events(os_client, text="nowhere")) == []


def test_model_counts_per_user_and_time_range(os_client):
    sample(os_client)
    assert queries.model_counts(os_client) == {"churn-predictor": 2, "risk-model": 1, "recommender": 1}
    assert queries.model_counts(os_client, user="u1") == {"churn-predictor": 2, "risk-model": 1}
    assert queries.model_counts(os_client, since="2026-12-01T00:00:00Z") == {"churn-predictor": 1, "recommender": 1}


def test_a_date_range_spans_the_monthly_indices(os_client):
    sample(os_client)
    found = list(queries.events(os_client, since="2026-11-30T00:00:00Z", until="2026-12-02T00:00:00Z"))
    assert [r["eventId"] for r in found] == ["b", "c"]
    indices = os_client.search(index=HISTORY_PREFIX + "*", body={"query": queries.time_range(
        "2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z")})["hits"]["hits"]
    assert sorted(hit["_index"] for hit in indices) == ["context-history-2026.11", "context-history-2026.12"]


def test_paging_past_10000_hits_reads_every_event_once_in_order(os_client):
    install_templates(os_client)
    total = 10_500
    records = [history(f"e{n:05d}", f"2026-{11 + n % 2}-{1 + n % 28:02d}T{n % 24:02d}:00:00.000Z", user=f"u{n % 7}")
               for n in range(total)]
    for start in range(0, total, 2500):
        write(os_client, records[start:start + 2500])
    with pytest.raises(Exception, match="(?i)result window is too large"):  # why the scan needs search_after
        os_client.search(index=HISTORY_PREFIX + "*", body={"from": 10_000, "size": 10})
    found = [(r["timestamp"], r["eventId"]) for r in queries.events(os_client)]
    assert len(found) == total
    assert found == sorted((r["timestamp"], r["eventId"]) for r in records)
    assert len(list(queries.events(os_client, limit=10_001))) == 10_001


def test_verify_finds_the_documents_the_history_lacks(os_client):
    sample(os_client)
    present, absent = history("a", "2026-11-24T10:00:00.000Z"), history("zz", "2026-12-24T10:00:00.000Z")
    assert missing_documents(os_client, [("t/0/1", present), ("t/0/2", absent)]) == ["t/0/2"]


def test_erase_deletes_the_users_history_and_violations(os_client):
    sample(os_client)
    finding = {"kind": "ordering", "key": "behavioral:u1", "eventId": "a", "timestamp": "2026-11-24T10:00:00.000Z",
               "maxTimestamp": "2026-11-24T11:00:00.000Z", "lagMs": 3600000, "policy": "accept", "modelId": "m"}
    writer = EsBulkWriter(os_client)
    assert writer.write([violation_doc(finding, "context.violations/0/1")]) == (1, [])
    writer.refresh()
    deleted = erase_elasticsearch(os_client, ["u1"], ["behavioral", "preferences"], HISTORY_PREFIX + "*",
                                  VIOLATIONS_INDEX)
    assert deleted == (3, 1)
    assert search_history(os_client, "u1") == []
    assert [h["eventId"] for h in search_history(os_client, "u2")] == ["d"]


def test_trace_reads_the_history_documents_by_id_and_by_event_id(os_client):
    sample(os_client)
    record = history("c", "2026-12-01T00:00:00.000Z", session="s2", model="churn-predictor")
    result = Trace("c", 0, [Hop(HISTORY, "context.history/0/2", 1, "", record)])
    Tracer({}, {}, "context.events", None, es=os_client)._es_hops(result)
    found = [h for h in result.hops if h.stage == ES_HISTORY]
    assert [h.where for h in found] == ["context-history-2026.12/c|u1|2026-12-01T00:00:00.000Z"]
    assert found[0].note.endswith("from context.history/0/2") and found[0].time_ms is not None


def jobs_file(tmp_path: Path, url: str) -> Path:
    """The project's jobs.yaml with a profile `os` whose history is the test node (search.engine: opensearch)."""
    data = yaml.safe_load((ROOT / "jobs.yaml").read_text())
    data["jobs"]["context-sync"]["profiles"]["os"] = {
        "source": {"type": "file"}, "sink": {"type": "files"},
        "elasticsearch": {"hosts": url}, "search": {"engine": "opensearch"}}
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_history_command_reads_opensearch(os_client, opensearch_url, tmp_path, capsys):
    sample(os_client)
    jobs = jobs_file(tmp_path, opensearch_url)
    assert main(["history", "--user", "u1", "--session", "s2", "--jobs", str(jobs), "--profile", "os", "--json"]) == 0
    assert [json.loads(line)["eventId"] for line in capsys.readouterr().out.splitlines()] == ["c"]
    assert main(["history", "--user", "u1", "--attr", "timezone", "--jobs", str(jobs), "--profile", "os"]) == 0
    out = capsys.readouterr().out
    assert "Europe/Paris" in out and "churn-predictor" in out
    profile = Profile.model_validate({"source": {"type": "file"}, "sink": {"type": "files"},
                                      "elasticsearch": {"hosts": opensearch_url}, "search": {"engine": "opensearch"}})
    assert type(search_client(profile)).__module__.startswith("opensearchpy")


def test_drift_report_publishes_to_the_profiles_opensearch_idempotently(os_client, opensearch_url, tmp_path, capsys):
    drift = tmp_path / "drift.jsonl"
    drift.write_text("".join(json.dumps({
        "windowStart": f"2026-11-24T0{hour}:00:00.000Z", "windowEnd": f"2026-11-24T0{hour + 1}:00:00.000Z",
        "category": "behavioral", "attribute": "segment", "scores": {"psi": 0.1 * hour, "js": 0.05},
        "thresholds": {"psi": 0.2}, "alerts": ["psi"] if hour > 2 else [], "categorical": True, "count": 10,
    }) + "\n" for hour in (1, 3)))
    args = ["drift-report", str(drift), "--es", "--profile", "os", "--jobs", str(jobs_file(tmp_path, opensearch_url))]
    assert main(args) == 0
    assert main(args) == 0  # same ids: nothing new
    assert "2 drift records -> Elasticsearch" in capsys.readouterr().out
    os_client.indices.refresh(index=DRIFT_INDEX)
    assert os_client.count(index=DRIFT_INDEX)["count"] == 2
    hits = os_client.search(index=DRIFT_INDEX, body={"query": {"term": {"alerts": "psi"}}})["hits"]["hits"]
    assert [h["_source"]["windowStart"] for h in hits] == ["2026-11-24T03:00:00.000Z"]


def doc_curls() -> list[str]:
    """The curl commands of docs/search.md's analyst session (```console blocks, lines starting `$ curl`)."""
    commands, current = [], None
    for line in DOC.read_text().splitlines():
        if line.startswith("$ ") and "curl " in line:
            current = line[2:]
        elif current is not None and line.startswith("  "):
            current += "\n" + line
        elif current is not None:
            commands.append(current)
            current = None
    return commands


def test_the_documented_curl_queries_answer_on_the_node(os_client, opensearch_url):
    """Each documented command, run with bash against records shaped like the doc's, finds something."""
    install_templates(os_client)
    write(os_client, [
        history("evt-1", "2026-11-24T08:03:25.514Z", user="user-00042", value="new", session="sess-5cdb2dcfad"),
        history("evt-2", "2026-11-24T08:05:54.926Z", user="user-00042", attr="timezone", value="Australia/Sydney",
                session="sess-5cdb2dcfad", model="session-tracker"),
        history("evt-3", "2026-12-01T09:00:00.000Z", user="user-00011", model="churn-predictor"),
    ])
    commands = doc_curls()
    assert len(commands) == 6
    for command in commands:
        run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "OS": opensearch_url})
        assert run.returncode == 0, (command, run.stderr)
        answer = json.loads(run.stdout)
        found = (answer.get("hits", {}).get("hits") or answer.get("count")
                 or answer.get("aggregations", {}).get("models", {}).get("buckets"))
        assert found, (command, answer)


def test_each_raw_client_gets_its_engines_backend():
    assert as_backend(Elasticsearch("http://127.0.0.1:9")).open_object_type == "flattened"
    assert as_backend(OpenSearch(["http://127.0.0.1:9"])).open_object_type == "flat_object"


def test_an_unreachable_opensearch_is_retried_then_a_failure_not_a_crash():
    client = es_client(ElasticsearchEndpoint(hosts=f"http://127.0.0.1:{free_port()}"), "opensearch")
    writer = EsBulkWriter(client, give_up_after_s=1.0, backoff_s=(0.1, 0.2))
    with pytest.raises(RuntimeFailure, match="still failing"):
        writer.write([history_doc(history("a", "2026-11-24T10:00:00.000Z"), "o")])
    assert writer.retries >= 1


def test_the_home_gives_each_module_its_own_jars_and_descriptor(tmp_path):
    home = opensearch_dist.home()
    lib = {jar.name for jar in (home / "lib").glob("*.jar")}
    assert any(name.startswith("opensearch-2.19.") for name in lib)
    for module in opensearch_dist.MODULES:
        folder = home / "modules" / module.name
        descriptor = dict(line.split("=", 1) for line in
                          (folder / "plugin-descriptor.properties").read_text().splitlines())
        assert descriptor["classname"] == module.classname
        assert descriptor["extended.plugins"] == ",".join(module.extends)
        jars = {jar.name for jar in folder.glob("*.jar")}
        assert jars and not jars & lib  # a class on both paths is jar hell: the node would refuse to start
    assert opensearch_dist.is_node_cmdline(opensearch_dist.command(tmp_path, 1, 2))


def test_an_unreachable_opensearch_is_one_line_exit_1(tmp_path, capsys):
    jobs = jobs_file(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert main(["history", "--user", "u1", "--jobs", str(jobs), "--profile", "os"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ctxsync history: cannot reach OpenSearch") and err.count("\n") == 1

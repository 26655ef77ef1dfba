"""`ctxsync drift-report`: a self-contained page that really renders (headless Chromium screenshot)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ctxsync.cli import main
from tests.fixtures_drift import DRIFT_AT, drift_streams, drifted_run  # noqa: F401 (fixtures)
from tests.fixtures_servers import es_client, kafka_config, servers  # noqa: F401 (fixtures)
from tests.png_colors import distinct_colours, pixels

def chromium() -> str:
    """Debian's chromium, installed by scripts/install-system-deps.sh (`make test`); a missing one fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run `make test` (scripts/install-system-deps.sh installs it)"
    return found


def screenshot(page, png, profile) -> None:
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,900", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )


def test_report_is_self_contained_and_marks_the_planted_alert(drifted_run, tmp_path, capsys):
    page = tmp_path / "drift.html"
    assert main(["drift-report", str(drifted_run / "drift.jsonl"), "--html", str(page)]) == 0
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing to fetch: works offline
    assert "<script" not in text and text.count("<svg") >= 2 * 12  # two charts per attribute
    assert f"ALERT {DRIFT_AT}: psi, js" in text  # the segment window where the drift starts
    assert "with alerts" in capsys.readouterr().out


def test_report_renders_in_headless_chromium(drifted_run, tmp_path):
    page, png = tmp_path / "drift.html", tmp_path / "drift.png"
    assert main(["drift-report", str(drifted_run / "drift.jsonl"), "--html", str(page)]) == 0
    screenshot(page, png, tmp_path / "chromium-profile")
    image = pixels(png)
    assert image.shape[:2] == (900, 1200)
    assert distinct_colours(png) > 500  # charts, stacked bars, text: not a blank or error page


def test_report_rejects_files_that_are_not_drift_records(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"a": 1}\n')
    assert main(["drift-report", str(bad), "--html", str(tmp_path / "x.html")]) == 2
    assert "x.jsonl:1 is not a drift record" in capsys.readouterr().err
    assert main(["drift-report", str(bad)]) == 2
    assert "--html FILE" in capsys.readouterr().err


@pytest.mark.servers
def test_publish_to_kafka_and_elasticsearch_is_idempotent(drifted_run, servers, es_client, kafka_config, capsys):
    from ctxsync.io.kafka_io import read_topic
    from pipelines.drift_sinks import DRIFT_INDEX, DRIFT_TOPIC

    records = [json.loads(line) for line in (drifted_run / "drift.jsonl").read_text().splitlines()]
    args = ["drift-report", str(drifted_run / "drift.jsonl"), "--kafka", kafka_config["bootstrap.servers"],
            "--es", servers.endpoints()["elasticsearch"]]
    assert main(args) == 0
    assert main(args[:2] + args[4:]) == 0  # ES again: same ids, nothing new
    es_client.indices.refresh(index=DRIFT_INDEX)
    assert es_client.count(index=DRIFT_INDEX)["count"] == len(records)
    hits = es_client.search(index=DRIFT_INDEX, query={"bool": {"filter": [
        {"term": {"attribute": "segment"}}, {"term": {"alerts": "psi"}}]}})["hits"]["hits"]
    assert [h["_source"]["windowStart"] for h in hits] == [DRIFT_AT]
    messages = list(read_topic(kafka_config, DRIFT_TOPIC))
    assert len(messages) == len(records)
    segment = [json.loads(m.value()) for m in messages if m.key() == b"behavioral/segment"]
    assert [r["windowStart"] for r in segment] == sorted(r["windowStart"] for r in segment)  # one partition, in order
    assert "-> Kafka" in capsys.readouterr().out

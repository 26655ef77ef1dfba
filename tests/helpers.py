"""Builders shared by the tests: valid events with overrides, settings, and a reference run to files."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pipelines.file_outputs import OutputCollector, Summary
from pipelines.reference import read_lines, run_reference
from transforms.settings import SyncSettings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data" / "context_events.jsonl"
NOW_MS = 1_795_000_000_000  # 2026-11-18, fixed so validation is deterministic in unit tests
SETTINGS = SyncSettings(categories={
    "riskTolerance": "financial", "portfolioValue": "financial", "creditScore": "financial",
    "segment": "behavioral", "lastAction": "behavioral", "preferredChannel": "behavioral",
    "engagementScore": "behavioral", "lastLogin": "temporal", "timezone": "temporal",
    "sessionLength": "temporal",
})

BASE_EVENT: dict[str, Any] = {
    "eventId": "evt-1",
    "timestamp": "2026-11-17T10:00:00.000Z",
    "eventType": "context.updated",
    "source": {"modelId": "risk-model", "instanceId": "risk-model-0"},
    "contextDelta": {"userId": "u1", "sessionId": "s1",
                     "updates": {"segment": {"current": "power", "confidence": 0.9}}},
    "propagationRules": {"targetModels": ["churn-predictor"], "priority": "high", "ttl": 3600},
}


def event(**changes: Any) -> dict[str, Any]:
    """A valid event; keyword `a__b=v` sets nested field a.b (value DELETE removes it)."""
    doc = copy.deepcopy(BASE_EVENT)
    for path, value in changes.items():
        parts = path.split("__")
        target = doc
        for part in parts[:-1]:
            target = target[part]
        if value is DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value
    return doc


DELETE = object()


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reference_files(input_path: Path, out_dir: Path, settings: SyncSettings = SETTINGS) -> Summary:
    collector = OutputCollector()
    collector.add_all(run_reference(read_lines(input_path), str(input_path), settings))
    return collector.write(out_dir)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]

"""Load the Avro schemas of schemas/ (parsed with fastavro, named types shared across files)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
# Order matters: later schemas refer to named types of earlier ones.
SCHEMA_FILES = ("context_event", "context_view", "context_history", "violation", "dead_letter")


@lru_cache(maxsize=1)
def load_schemas() -> dict[str, Any]:
    named: dict[str, Any] = {}
    parsed = {}
    for name in SCHEMA_FILES:
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        # A copy per file: fastavro's writer misresolves unions when later files re-register names.
        scope = dict(named)
        parsed[name] = fastavro.parse_schema(raw, named_schemas=scope)
        named.update(scope)
    return parsed

"""What each job type's graph does, step by step (shown by `ctxsync jobs` and in README)."""
from __future__ import annotations

STEPS: dict[str, list[tuple[str, str]]] = {
    "context-sync": [
        ("read", "file lines or Kafka records, in source order"),
        ("parse+validate", "UTF-8, strict JSON, contract rules; invalid -> dead letter (chained with read)"),
        ("key by user", "hash partition on contextDelta.userId: one user's events stay in order"),
        ("dedup", "drop re-delivered eventIds within the retention (per-user state)"),
        ("split categories", "one sub-event per category: aggregate key <category>:<userId>"),
        ("ordering", "flag sub-events older than the aggregate's max event time"),
        ("conflicts", "expectedVersion / previous mismatches; last-writer-wins or reject"),
        ("apply + view", "per-attribute (timestamp, eventId) wins; version += 1; emit view"),
        ("write", "views, history, violations, dead letters; summary"),
    ],
}

"""What each job type's graph does, step by step (shown by `ctxsync jobs` and in README.md and docs/architecture.md)."""
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
    "context-drift": [
        ("read", "file lines, in source order (embedded profile only)"),
        ("parse+validate", "as context-sync (optional GE suite); invalid -> dead letter"),
        ("stamp windows", "one global step: tumbling event-time window, watermark = max ts - delay, late rows"),
        ("key by attribute", "hash partition on (category, attribute)"),
        ("profile", "counts, tombstones, top-k, Welford, quantile sketch, confidence per model"),
        ("score + alert", "on window close: PSI, Jensen-Shannon, SPC 3-sigma vs the reference; thresholds"),
        ("write", "drift.jsonl sorted by (window, category, attribute), dead letters, summary"),
    ],
}

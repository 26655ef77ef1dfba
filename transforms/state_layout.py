"""The version of the per-user state layout the engines keep (aggregates, remembered eventIds).

Bumped whenever the shape of that state changes, so a saved Flink state (a Kafka run's savepoint) of an
older layout is refused with a pointer to `--fresh` instead of being misread. Layouts: 1 = up to 2026-12-01
(NamedTuple-shaped aggregates); 2 = 6-field aggregates with sorted attributes and timestamps as text;
3 = batched engine: one MapState per bucket of users, userId -> (aggregates, clock, limit, seen ids);
4 = the same, each bucket under its spread Flink key (pipelines/flink/sync.py spread_keys), not its number.
"""
STATE_LAYOUT = 4

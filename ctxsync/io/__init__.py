"""Real I/O of the `local` and `prod` profiles: Kafka (in and out), Redis views, Elasticsearch history.

The Flink job writes every output kind to Kafka; the sink connectors here (connectors.py) move the view
changelog to Redis and history/violations to Elasticsearch idempotently.
"""

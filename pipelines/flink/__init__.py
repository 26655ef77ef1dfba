"""The Flink part: the context-sync and drift graphs on PyFlink (embedded files, Kafka profiles), the
environment every job needs, and submission to a Flink cluster."""

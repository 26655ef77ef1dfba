"""The Beam part: the context-sync and drift pipelines on Apache Beam's local runners."""

"""ctxsync: real-time context synchronization for fleets of AI models."""

__version__ = "0.1.0"

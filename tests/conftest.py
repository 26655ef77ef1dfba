"""Shared pytest setup: Flink logs go to a temp dir, not into the venv or the user's cache."""
import os
import tempfile

os.environ.setdefault("FLINK_LOG_DIR", os.path.join(tempfile.gettempdir(), "ctxsync-test-flink-logs"))

from hypothesis import HealthCheck, settings

# CI machines are small and shared: judge properties, not the speed of example generation.
settings.register_profile("ctxsync", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ctxsync")

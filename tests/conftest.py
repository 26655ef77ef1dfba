"""Shared pytest setup: Flink logs go to a temp dir, not into the venv or the user's cache."""
import os
import tempfile

os.environ.setdefault("FLINK_LOG_DIR", os.path.join(tempfile.gettempdir(), "ctxsync-test-flink-logs"))

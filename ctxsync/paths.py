"""Where ctxsync keeps its own files (jars, logs, run state, the loopback cluster): one root to move."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """$CTXSYNC_HOME, else ~/.cache/ctxsync."""
    return Path(os.environ.get("CTXSYNC_HOME", Path.home() / ".cache" / "ctxsync"))

"""Where the last Kafka run of a job stopped, so the next run continues there with the same state.

A run stops with a savepoint: Flink's keyed state (views, versions, remembered eventIds) together with the
source's offsets. The ledger names that savepoint and the input positions it covers. The next run restores
it and reads only what arrived since, so running the same job twice changes nothing, and new input is
processed once, against the state it would have met in one long run. `ctxsync run --fresh` forgets it.

The state only fits the input and settings it was built from: a recreated topic or changed settings stop
the run with the choice spelled out instead of silently mixing old state with new semantics.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ctxsync.config import ConfigError
from transforms.state_layout import STATE_LAYOUT

LEDGER_FILE = "ledger.json"


@dataclass(frozen=True)
class RunLedger:
    savepoint: str | None    # URI of the savepoint the last run stopped with (None: none yet)
    bootstrap: str
    input_topic: str
    offsets: dict[int, int]  # per input partition: the committed position when the run stopped
    settings: dict[str, Any]  # the job settings the state was built with
    stopped_at: str
    state_layout: int = STATE_LAYOUT  # shape of the saved keyed state (transforms/state_layout.py)


def state_path(state_dir: Path, job: str, profile: str, group_id: str) -> Path:
    """One directory per (job, profile, consumer group): the group is the Kafka side of the same position."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{job}.{profile}.{group_id}")
    return state_dir / safe


def load(path: Path) -> RunLedger | None:
    file = path / LEDGER_FILE
    if not file.is_file():
        return None
    data = json.loads(file.read_text())
    data["offsets"] = {int(p): int(o) for p, o in data["offsets"].items()}
    data.setdefault("state_layout", 1)  # ledgers written before the layout was recorded
    return RunLedger(**data)


def save(path: Path, ledger: RunLedger) -> None:
    """Write the ledger atomically, then delete the savepoints it no longer names."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (LEDGER_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(ledger), indent=2, sort_keys=True) + "\n")
    tmp.replace(path / LEDGER_FILE)
    keep = Path(unquote(urlparse(ledger.savepoint).path)).resolve() if ledger.savepoint else None
    for old in (path / "savepoints").glob("savepoint-*"):
        if old.resolve() != keep:
            shutil.rmtree(old, ignore_errors=True)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_continuation(ledger: RunLedger, bootstrap: str, topic: str, settings: dict[str, Any],
                       high: dict[int, int], path: Path) -> None:
    """ConfigError unless the saved state fits this run's input and settings."""
    fresh = f"run with --fresh to recompute from the start of the input (state in {path})"
    if ledger.savepoint and ledger.state_layout != STATE_LAYOUT:
        raise ConfigError(f"the saved state has layout {ledger.state_layout}, written by an older ctxsync; this "
                          f"version keeps layout {STATE_LAYOUT} and cannot read it: {fresh}")
    if (ledger.bootstrap, ledger.input_topic) != (bootstrap, topic):
        raise ConfigError(f"the saved state was built from {ledger.input_topic} at {ledger.bootstrap}, "
                          f"not {topic} at {bootstrap}: {fresh}")
    shrunk = {p: (o, high.get(p, 0)) for p, o in ledger.offsets.items() if high.get(p, 0) < o}
    if shrunk:
        detail = ", ".join(f"partition {p} ends at {h}, the last run stopped at {o}" for p, (o, h) in shrunk.items())
        raise ConfigError(f"input topic {topic} was recreated or truncated since the last run ({detail}): {fresh}")
    changed = sorted(k for k in settings.keys() | ledger.settings.keys() if settings.get(k) != ledger.settings.get(k))
    if changed:
        raise ConfigError(f"job settings changed since the saved state was built ({', '.join(changed)}); "
                          f"continuing would mix old and new semantics: {fresh}, or restore the old settings")

"""The context-drift job in plain Python: the parity oracle for the Flink and Beam drift adapters."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.drift_outputs import DriftCollector, DriftSummary
from pipelines.reference import ingest_all, read_lines
from transforms.drift import (
    DriftSettings, baseline_profiles, drift_line, drift_step, flush, new_key_state, new_stamp_state,
    stamp_event, stats_line,
)
from transforms.settings import SyncSettings

if TYPE_CHECKING:
    from ctxsync.config import JobConfig
    from pipelines.runners import RunRequest


def drift_settings(job: "JobConfig") -> DriftSettings:
    """The job's drift knobs, with the pinned baseline loaded when `reference: baseline`."""
    from ctxsync.config import ConfigError, DriftSettingsModel

    model = job.drift or DriftSettingsModel()
    settings = model.to_settings()
    if model.reference != "baseline":
        return settings
    path = Path(model.baseline or "")
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"drift.baseline {path}: cannot read a drift.jsonl there ({exc})") from exc
    return DriftSettings(**{**settings.__dict__, "baseline": baseline_profiles(records, settings)})


def run_drift_reference(
    records: Iterable[tuple[int, bytes]], origin_prefix: str, settings: SyncSettings, drift: DriftSettings,
    now_ms: int | None = None,
) -> Iterator[str]:
    """Tagged output lines (drift records, dead letters, final stats) for (seq, raw) records in order."""
    stamp = new_stamp_state()
    keys: dict[str, dict] = {}

    def apply(messages: list[tuple]) -> Iterator[str]:
        for message in messages:
            state = keys.get(message[1])
            if state is None:
                state = keys[message[1]] = new_key_state()
            for record in drift_step(state, message, drift):
                yield drift_line(record)

    for _, value in ingest_all(records, origin_prefix, settings, now_ms):
        if isinstance(value, str):
            yield value
            continue
        yield from apply(stamp_event(stamp, value, drift))
    yield from apply(flush(stamp, drift))
    yield stats_line(stamp)


def run_embedded(request: "RunRequest") -> DriftSummary:
    collector = DriftCollector()
    lines = run_drift_reference(
        read_lines(request.input_path), str(request.input_path), request.job.settings.to_settings(),
        drift_settings(request.job),
    )
    for n, line in enumerate(lines, 1):
        collector.add(line)
        if n % 10_000 == 0:
            request.progress.update(n, "output records")
    return collector.write(request.out_dir)

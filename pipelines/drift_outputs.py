"""The context-drift job's embedded outputs, built from tagged lines of any runner.

drift.jsonl is sorted by (windowStart, category, attribute), so every engine writes the same bytes;
dead letters (invalid events are never lost) keep source order; summary.json has the counts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from transforms.drift import DRIFT_RECORD, DRIFT_STATS
from transforms.records import DEAD_LETTER, untag

DRIFT_FILES = ("drift.jsonl", "dead_letter.jsonl", "summary.json")


@dataclass
class DriftSummary:
    """`read = accepted + duplicates + dead_lettered` (the drift job does not deduplicate: duplicates = 0)."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    rows: int = 0
    late_rows: int = 0
    windows: int = 0
    alerts: int = 0
    files: tuple[str, ...] = DRIFT_FILES

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "files"}


@dataclass
class DriftCollector:
    records: list[tuple[tuple[str, str, str], str]] = field(default_factory=list)
    dead_letters: list[tuple[int, str]] = field(default_factory=list)
    summary: DriftSummary = field(default_factory=DriftSummary)

    def add(self, line: str) -> None:
        kind, seq, _, text = untag(line)
        if kind == DRIFT_RECORD:
            record = json.loads(text)
            self.records.append(((record["windowStart"], record["category"], record["attribute"]), text))
            self.summary.windows += 1
            self.summary.alerts += bool(record["alerts"])
        elif kind == DEAD_LETTER:
            self.dead_letters.append((seq, text))
            self.summary.dead_lettered += 1
        elif kind == DRIFT_STATS:
            stats = json.loads(text)
            self.summary.accepted += stats["accepted"]
            self.summary.rows += stats["rows"]
            self.summary.late_rows += stats["late_rows"]
        else:
            raise ValueError(f"unknown drift output kind {kind!r} in line {line[:80]!r}")

    def add_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add(line)

    def write(self, out_dir: Path) -> DriftSummary:
        s = self.summary
        s.read = s.accepted + s.duplicates + s.dead_lettered
        out_dir.mkdir(parents=True, exist_ok=True)
        self.records.sort(key=lambda r: r[0])
        self.dead_letters.sort(key=lambda r: r[0])
        for name, rows in (("drift.jsonl", self.records), ("dead_letter.jsonl", self.dead_letters)):
            with (out_dir / name).open("w", encoding="utf-8") as handle:
                handle.writelines(text + "\n" for _, text in rows)
        (out_dir / "summary.json").write_text(json.dumps(s.as_dict(), indent=2) + "\n")
        return s

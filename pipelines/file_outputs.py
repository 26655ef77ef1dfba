"""The embedded profile's outputs (contract v1 section 6) built from tagged output lines of any runner.

Runners emit tagged lines in whatever order their parallel tasks produce them; this module orders them by
source position so that every runner and every parallelism writes byte-identical files.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from transforms.records import CONFLICT, DEAD_LETTER, DUPLICATE, HISTORY, ORDERING, TOMBSTONE, VIEW, untag

OUTPUT_FILES = ("views.jsonl", "history.jsonl", "violations.jsonl", "dead_letter.jsonl", "summary.json")


@dataclass
class Summary:
    """Counts of contract v1 section 5; `read = accepted + duplicates + dead_lettered` holds by design."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    ordering_violations: int = 0
    conflicts: int = 0
    stale_updates: int = 0
    views: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class OutputCollector:
    """Gathers tagged lines, then writes the five files of the embedded layout."""

    history: list[tuple[int, str]] = field(default_factory=list)
    violations: list[tuple[int, str]] = field(default_factory=list)
    dead_letters: list[tuple[int, str]] = field(default_factory=list)
    views: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # latest per key; None: tombstone
    summary: Summary = field(default_factory=Summary)

    def add(self, line: str) -> None:
        kind, seq, aux, text = untag(line)
        s = self.summary
        if kind == HISTORY:
            self.history.append((seq, text))
            s.accepted += 1
            s.stale_updates += int(aux)
        elif kind == VIEW:
            key = json.loads(aux)
            current = self.views.get(key)
            if current is None or seq > current[0] or (seq == current[0] and current[1] is None):
                self.views[key] = (seq, text)  # a view follows its key's tombstone within one event
        elif kind == TOMBSTONE:
            key = json.loads(text)["key"]
            current = self.views.get(key)
            if current is None or seq > current[0]:
                self.views[key] = (seq, None)
        elif kind in (ORDERING, CONFLICT):
            self.violations.append((seq, text))
            if kind == ORDERING:
                s.ordering_violations += 1
            else:
                s.conflicts += 1
        elif kind == DEAD_LETTER:
            self.dead_letters.append((seq, text))
            s.dead_lettered += 1
        elif kind == DUPLICATE:
            s.duplicates += 1
        else:
            raise ValueError(f"unknown output kind {kind!r} in line {line[:80]!r}")

    def add_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add(line)

    def finish(self) -> Summary:
        s = self.summary
        s.read = s.accepted + s.duplicates + s.dead_lettered
        s.views = sum(text is not None for _, text in self.views.values())
        return s

    def write(self, out_dir: Path) -> Summary:
        """Write views (sorted by key), history, violations and dead letters (source order), summary."""
        summary = self.finish()
        out_dir.mkdir(parents=True, exist_ok=True)
        latest = (self.views[key][1] for key in sorted(self.views))
        _write_lines(out_dir / "views.jsonl", (text for text in latest if text is not None))
        for name, rows in (("history.jsonl", self.history), ("violations.jsonl", self.violations),
                           ("dead_letter.jsonl", self.dead_letters)):
            rows.sort(key=lambda row: row[0])  # stable: keeps the order within one event
            _write_lines(out_dir / name, (text for _, text in rows))
        (out_dir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        return summary


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line)
            handle.write("\n")

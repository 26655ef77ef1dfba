"""Progress on stderr for long work: a redrawn line on a terminal, a line every few seconds otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, every_s: float = 2.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.start = self._last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, count: int, extra: str = "") -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else self.every_s):
            return
        self._last = now
        elapsed = now - self.start
        rate = count / elapsed if elapsed > 0 else 0.0
        share = f"/{self.total} ({100 * count / self.total:.0f}%)" if self.total else ""
        line = f"{self.label}: {count}{share}  {rate:,.0f}/s  {elapsed:.1f}s {extra}".rstrip()
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def note(self, text: str, force: bool = True) -> None:
        """A status line for work that has no count; `force=False` throttles it like update()."""
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else self.every_s):
            return
        self._last = now
        text = f"{text}  {now - self.start:.1f}s"
        sys.stderr.write(("\r" if self.tty else "") + f"{self.label}: {text}" + ("\x1b[K" if self.tty else "\n"))
        sys.stderr.flush()

    def done(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        sys.stderr.write(("\r" if self.tty else "") + f"{self.label}: {text} in {elapsed:.1f}s" + ("\x1b[K\n" if self.tty else "\n"))
        sys.stderr.flush()

"""Metrics endpoints that running processes announce, so `ctxsync signals` finds ports chosen at start.

A profile may fix its ports (Prometheus and dashboards need that) or set them to 0: the job or connector then
takes a free port — two jobs, or several copies of a connector, never collide — and announces it in
`<ctxsync home>/metrics/<job>/<profile>/<name>-<pid>.json` for as long as it runs. Readers skip (and remove)
announcements whose process is gone, so a killed process never leaves a phantom endpoint behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from ctxsync import paths
from ctxsync.servers import pid_alive


class Announced(NamedTuple):
    name: str   # "job", or the connector kind
    url: str
    pid: int


def directory(job: str, profile: str) -> Path:
    return paths.home() / "metrics" / job / profile


def announce(job: str, profile: str, name: str, url: str) -> Path:
    """Record this process's endpoint; the file is written whole (rename), never seen half-written."""
    folder = directory(job, profile)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{os.getpid()}.json"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps({"name": name, "url": url, "pid": os.getpid()}) + "\n")
    scratch.replace(path)
    return path


@contextmanager
def announced(job: str, profile: str, name: str, url: str) -> Iterator[None]:
    """Announce for the duration of the block (a process killed inside it is skipped by readers)."""
    path = announce(job, profile, name, url)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def announcements(job: str, profile: str) -> list[Announced]:
    """The live announcements of a job's profile, job first, then connectors by name and pid."""
    found = []
    for path in sorted(directory(job, profile).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            entry = Announced(str(data["name"]), str(data["url"]), int(data["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours or mid-removal: an unreadable file names no endpoint
        if pid_alive(entry.pid):
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda a: (a.name != "job", a.name, a.pid))

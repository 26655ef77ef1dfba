"""CPU time per process from /proc, for the latency bench's per-process table.

Why /proc and not psutil: it is not a dependency, and two reads of `/proc/<pid>/stat` per process and
phase are all the bench needs. utime + stime are the process' own CPU (all its threads: a JVM with the
embedded Python interpreter in thread mode is one process); a child's CPU shows in the parent's
cutime/cstime only once it has exited and been reaped, so living children are listed as processes of
their own (`descendants`), never added to their parent.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")  # /proc times are in clock ticks (100 per second on Linux)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[1].split()


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds the process has used so far (None once it is gone)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every living process below `root` (children, grandchildren, ...), by scanning /proc once."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


@dataclass
class Sample:
    """CPU seconds of named processes and of the whole machine at one moment."""

    at: float
    machine: float
    processes: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # name -> (pid, seconds)


def sample(processes: dict[str, int]) -> Sample:
    return Sample(time.monotonic(), machine_busy_seconds(),
                  {name: (pid, cpu_seconds(pid)) for name, pid in processes.items()})


def usage(before: Sample, after: Sample, events: int) -> dict:
    """Cores (CPU seconds per wall second) and µs of CPU per event of each process between two samples.

    A process missing from either sample (started or gone in between) has null figures: a partial
    interval would understate it."""
    wall = max(after.at - before.at, 1e-9)
    rows: dict[str, dict] = {}
    for name, (pid, start) in before.processes.items():
        end = after.processes.get(name, (pid, None))[1]
        used = None if start is None or end is None else end - start
        rows[name] = {"pid": pid, "cores": None if used is None else round(used / wall, 3),
                      "us_per_event": None if used is None or not events else round(used / events * 1e6, 1)}
    ours = sum(r["cores"] or 0 for r in rows.values())
    machine = (after.machine - before.machine) / wall
    return {"seconds": round(wall, 2), "processes": rows, "ours_cores": round(ours, 3),
            "machine_busy_cores": round(machine, 3), "others_cores": round(max(machine - ours, 0), 3)}

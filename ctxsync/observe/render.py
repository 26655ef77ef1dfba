"""`ctxsync signals` as terminal text: one screen of signals, colored when the output is a terminal.

Thresholds that turn a value red are the seed's targets: propagation p95 above 100 ms, any growth of the
dead-letter topics, any consumer lag; an endpoint that is down is red with its reason.
"""
from __future__ import annotations

from ctxsync.observe.signals import Counter, Latency, Status

PROPAGATION_TARGET_S = 0.100
GREEN, RED, YELLOW, DIM, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[1m", "\x1b[0m"
NONE = "–"


class Paint:
    """ANSI colors, or nothing (a pipe, --no-color)."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text


def lines(status: Status, title: str, color: bool) -> list[str]:
    """The screen, line by line (no trailing newlines)."""
    paint = Paint(color)
    out = [paint(title, BOLD) + paint(f"   rates over {status.interval_s:.1f} s" if status.interval_s else
                                      "   totals only (one scrape)", DIM)]
    marks = []
    for e in status.endpoints:
        marks.append(paint(f"{e.name} up", GREEN) if e.up else paint(f"{e.name} DOWN ({e.error})", RED))
    out += ["endpoints    " + "   ".join(marks), ""]

    out.append(paint("job", BOLD))
    if not status.events and status.events_per_s is None:
        out.append("  " + paint("no job metrics (job endpoint down, or no job running)", DIM))
    else:
        outcomes = "  ".join(f"{name} {value:,.0f}" for name, value in status.events.items())
        out.append(f"  throughput        {_rate(status.events_per_s, 'events/s'):>16}   {outcomes}")
        out.append(f"  views emitted     {_rate(status.views_per_s, 'views/s'):>16}   "
                   f"event lag p95 {_latency(status.event_lag, paint, None)}")
        out.append(f"  ordering viol.    {_counter(status.ordering_violations, paint)}")
        out.append(f"  conflicts         {_counter(status.conflicts, paint)}")
        out.append(f"  stale updates     {_counter(status.stale_updates, paint)}")
        reasons = "  ".join(f"{reason} {value:,.0f}" for reason, value in status.dead_letters.items()) or "none"
        total = sum(status.dead_letters.values())
        out.append(f"  dead letters      {total:>8,.0f} {_per_s(status.dead_letters_per_s, paint)}   {reasons}")
    out.append("")

    out.append(paint(f"{'connector':<15}{'records/s':>11}{'written':>10}{'skipped':>9}{'dead-let.':>11}"
                     f"{'propagation p95':>18}{'write p95':>12}", BOLD))
    if not status.connectors:
        out.append("  " + paint("no connector metrics (connectors down, or not running)", DIM))
    for name, c in status.connectors.items():
        out.append(f"{name:<15}{_number(c.records_per_s, '{:,.1f}'):>11}{c.records.get('written', 0):>10,.0f}"
                   f"{c.records.get('skipped', 0):>9,.0f}{c.records.get('dead_lettered', 0):>11,.0f}"
                   f"{_latency(c.propagation, paint, PROPAGATION_TARGET_S):>18}{_latency(c.write, paint, None):>12}")
    latencies = [x for x in [status.event_lag] + [y for c in status.connectors.values() for y in (c.propagation, c.write)]
                 if x is not None]
    notes = (["* since the process started (nothing observed between the two scrapes)"]
             if any(x.window == "total" for x in latencies) else [])
    notes += ["> above the histogram's largest bucket"] if any(x.beyond for x in latencies) else []
    if notes:
        out.append(paint("  " + "; ".join(notes), DIM))
    out.append("")

    if status.lag:
        out.append(paint("consumer lag", BOLD) + paint("   (records behind the partition's end, partition:records)", DIM))
        topics: dict[tuple[str, str], list[str]] = {}
        for connector, topic, partition, records in status.lag:
            topics.setdefault((connector, topic), []).append(
                f"{partition}:" + paint(f"{records:,.0f}", RED if records > 0 else GREEN))
        for (connector, topic), parts in topics.items():
            out.append(f"  {connector:<15}{topic:<24} {'  '.join(parts)}")
    else:
        out.append(paint("consumer lag", BOLD) + "   " + paint("no lag metrics", DIM))
    if status.dlq_records:
        grows = status.dlq_per_s is not None and status.dlq_per_s > 0
        sizes = "  ".join(f"{topic} {records:,.0f}" for topic, records in status.dlq_records.items())
        out.append(paint("dead-letter topics", BOLD) + f"   {sizes}   "
                   + paint(f"{_rate(status.dlq_per_s, 'records/s')} growth", RED if grows else GREEN))
    return out


def _number(value: float | None, spec: str) -> str:
    return NONE if value is None else spec.format(value)


def _rate(value: float | None, unit: str) -> str:
    return NONE if value is None else f"{value:,.1f} {unit}"


def _per_s(value: float | None, paint: Paint) -> str:
    return paint(f"({NONE}/s)" if value is None else f"({value:,.1f}/s)", DIM)


def _counter(counter: Counter | None, paint: Paint) -> str:
    if counter is None:
        return NONE
    return f"{counter.total:>8,.0f} {_per_s(counter.per_s, paint)}"


def _latency(latency: Latency | None, paint: Paint, target_s: float | None) -> str:
    if latency is None:
        return NONE
    text = (">" if latency.beyond else "") + f"{latency.p95_s * 1000:,.1f} ms" + (
        "" if latency.window == "interval" else "*")
    if target_s is None:
        return text
    # pad before painting so that the escape codes do not count towards the column width
    return " " * max(0, 18 - len(text)) + paint(text, RED if latency.p95_s > target_s else GREEN)

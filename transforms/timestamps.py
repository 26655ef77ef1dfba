"""ISO-8601 timestamps <-> epoch milliseconds (contract v1: zone required, millisecond precision, any year).

Producers almost always write the canonical output form (`2026-11-24T10:00:00.123Z`): that form is read
by `datetime.fromisoformat` (C speed) and kept as text, so it is never formatted again. Every other
spelling goes through the exact regex parser.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
# The separators of `YYYY-MM-DDTHH:MM:SS.mmmZ` sit every 3 characters from index 4. With them in place,
# fromisoformat accepts only ASCII digits in the other positions (tests/test_timestamps.py checks it).
_CANONICAL_SEPARATORS = "--T::."
_UTC_OFFSETS = ("+00:00", "-00:00")  # zero offsets: `...+00:00` (29 chars) reads as `...Z`
_UNIX_EPOCH_ORDINAL = 719_163  # datetime(1970, 1, 1).toordinal()
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def parse_iso(text: str) -> tuple[int, str] | None:
    """(epoch milliseconds, canonical text) of an ISO-8601 timestamp with a zone, or None if it is not one.

    The canonical text is `text` itself when it is already in output form (no formatting needed).
    """
    if len(text) == 29 and text[23:] in _UTC_OFFSETS:
        text = text[:23] + "Z"  # the same instant, spelled as the output writes it
    if len(text) == 24 and text[23] == "Z" and text[4:20:3] == _CANONICAL_SEPARATORS:
        try:
            d = datetime.fromisoformat(text)
        except ValueError:  # e.g. year 0000, which datetime cannot hold: the exact parser decides
            pass
        else:
            return (
                (d.toordinal() - _UNIX_EPOCH_ORDINAL) * 86_400_000 + d.hour * 3_600_000
                + d.minute * 60_000 + d.second * 1000 + d.microsecond // 1000
            ), text
    ms = _parse_any(text)
    return None if ms is None else (ms, format_iso_ms(ms))


def parse_iso_ms(text: str) -> int | None:
    """Epoch milliseconds of an ISO-8601 timestamp with a zone, or None if it is not one.

    Fractions finer than a millisecond are truncated: event time has millisecond precision.
    """
    parsed = parse_iso(text)
    return None if parsed is None else parsed[0]


def _parse_any(text: str) -> int | None:
    """The exact parser for every spelling the contract accepts (offsets, 0-9 fraction digits, year 0000)."""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return None
    limit = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= limit:
        return None
    fraction = match.group(7)
    millis = int((fraction + "00")[:3]) if fraction else 0
    zone = match.group(8)
    offset_min = 0
    if zone != "Z":
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 23 or zm > 59:
            return None
        offset_min = (zh * 60 + zm) * (1 if zone[0] == "+" else -1)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset_min * 60) * 1000 + millis


@lru_cache(maxsize=1 << 16)
def format_iso_ms(epoch_ms: int) -> str:
    """`2026-11-24T10:00:00.123Z` for an epoch-milliseconds value (UTC); cached: views repeat them."""
    days, ms_of_day = divmod(epoch_ms, 86_400_000)
    y, m, d = _civil_from_days(days)
    secs, millis = divmod(ms_of_day, 1000)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    return f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{millis:03d}Z"

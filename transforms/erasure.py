"""Erase as a state (pure part): what "this user was erased at T" means for an event, a user's state and a
dead letter. The record itself lives in Redis (ctxsync/io/erase_record.py); every writer asks it.

The rule is one comparison of event time: an erase at T removes every event of the user whose event time
is at or before T, now and whenever it comes by again (a queued event, a re-drive, a replay, a --fresh run,
a restore from an older savepoint). Events after T are the user coming back: they are processed as a new
user's (their state started empty at the erase).

An event dropped this way is dead-lettered with reason `erased` (contract v1 section 5: it is not accepted,
it is no duplicate, so `read = accepted + duplicates + dead_lettered` needs it there), and the dead letter
carries none of the user: no `raw`, no `detail` beyond the two times, only where the event is (`origin`)
and `erased: true`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from transforms.aggregate import A_UPDATED_AT, ATTRS
from transforms.records import DEAD_LETTER, tagged, untag
from transforms.sync import UserState
from transforms.timestamps import format_iso_ms, parse_iso_ms

ERASED_REASON, ERASED_STAGE = "erased", "erase"
ErasedAt = Callable[[str], "int | None"]  # a userId (or token) -> its erase time (epoch ms), or None


def erased_dead_letter(seq: int, origin: str, event_ms: int, erased_ms: int) -> str:
    """The tagged dead-letter line of an event dropped because its user was erased after it happened."""
    return tagged(DEAD_LETTER, seq, {
        "reason": ERASED_REASON, "stage": ERASED_STAGE, "raw": None, "rawEncoding": None, "origin": origin,
        "detail": f"the user was erased at {format_iso_ms(erased_ms)}; the event (event time "
                  f"{format_iso_ms(event_ms)}) is from before the erase and is not processed",
        "erased": True})


def state_predates(state: UserState, erased_ms: int) -> bool:
    """Whether a user's state holds anything from at or before the erase (it comes from an older savepoint
    or snapshot): such a state is dropped, the user starts afresh."""
    if any(ts <= erased_ms for ts in state["dedup"]["seen"].values()):
        return True
    return any(entry[A_UPDATED_AT] <= erased_ms for agg in state["aggs"].values() for entry in agg[ATTRS].values())


def oldest_stamp(view: dict[str, Any]) -> str:
    """The oldest event time a view record holds, as its text (its oldest attribute's, or its own with no
    attribute): what a writer compares with the user's erase time. The job's ISO texts (one format, UTC,
    milliseconds) order as their times do, so no parse is needed on the write path."""
    stamps = [a["updatedAt"] for a in view["attributes"].values()
              if isinstance(a, dict) and isinstance(a.get("updatedAt"), str)]
    return min(stamps) if stamps else str(view.get("updatedAt", ""))


def oldest_ms(view: dict[str, Any]) -> int:
    """`oldest_stamp` in epoch ms; a view whose time cannot be read counts as old (0)."""
    return parse_iso_ms(oldest_stamp(view)) or 0


def payload_erased(doc: Any, erased_at: ErasedAt) -> int | None:
    """The erase time of the user a payload (a parsed event) names, if it is from before that erase; an
    event of an erased user whose time cannot be read counts as from before (it is not let through)."""
    try:
        user = doc["contextDelta"]["userId"]
    except (KeyError, TypeError):
        return None
    if not isinstance(user, str):
        return None
    at = erased_at(user)
    if at is None:
        return None
    stamp = doc.get("timestamp")
    ts = parse_iso_ms(stamp) if isinstance(stamp, str) else None
    return at if ts is None or ts <= at else None


def scrub_dead_letter(line: str, erased_at: ErasedAt) -> str:
    """A dead-letter line whose payload names an erased user and predates the erase, without the payload
    (`raw` and `detail` null, `erased: true`: it names no one, not even by token); other lines are
    returned as they are (the same object)."""
    kind, seq, aux, text = untag(line)
    record = orjson.loads(text)
    if record.get("rawEncoding") != "utf-8" or not record.get("raw"):
        return line
    try:
        doc = orjson.loads(record["raw"])
    except orjson.JSONDecodeError:
        return line
    if payload_erased(doc, erased_at) is None:
        return line
    return tagged(kind, seq, {**record, "raw": None, "rawEncoding": None, "detail": None, "erased": True}, aux)

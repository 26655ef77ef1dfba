"""The stateless step before the shuffle: raw payload -> (partition key, Event) or a dead-letter line.

Kept separate from the keyed step so engines can chain it with the source (one Python crossing).
"""
from __future__ import annotations

from transforms.expectations import check_expectations
from transforms.model import DeadLetter, Event
from transforms.records import DEAD_LETTER, dead_letter_record, tagged
from transforms.settings import SyncSettings
from transforms.validate import dead_letter, parse_event

# Dead letters have no user; they travel under a key no userId can take (userIds are non-empty).
DEAD_LETTER_KEY = ""


def dead_letter_line(dl: DeadLetter) -> str:
    return tagged(DEAD_LETTER, dl.seq, dead_letter_record(dl))


def ingest(
    raw: bytes, seq: int, origin: str, now_ms: int, settings: SyncSettings, original: bytes | None = None
) -> tuple[str, Event | str]:
    """(userId, Event) for a valid event, (DEAD_LETTER_KEY, tagged dead-letter line) otherwise.

    `original` is the payload as received when `raw` is a decoded form of it (the JSON of an Avro record):
    a dead letter carries the original bytes, as the contract asks, not our decoding of them.
    """
    parsed = parse_event(raw, seq, origin, now_ms, settings)
    if isinstance(parsed, Event) and settings.expectations is not None:  # opt-in: off by default
        parsed = check_expectations(parsed, raw, now_ms, settings.expectations) or parsed
    if isinstance(parsed, DeadLetter):
        if original is not None:
            parsed = dead_letter(original, parsed.seq, parsed.origin, parsed.reason, parsed.detail, parsed.stage)
        return DEAD_LETTER_KEY, dead_letter_line(parsed)
    return parsed.user_id, parsed


def is_blank(raw: bytes) -> bool:
    """Blank lines of a JSON Lines file are skipped, not read (contract v1 section 1)."""
    return not raw.strip()

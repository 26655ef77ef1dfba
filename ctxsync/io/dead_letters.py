"""Dead letters read back and re-driven to the input topic after a fix (of a schema, a setting, a producer).

Re-driving sends a dead letter's original bytes to the input topic, keyed by userId like `replay`, with
headers naming where it came from (`ctxsync-redrive-of`: the dead letter's position, `ctxsync-origin`: the
input position it first failed at, `ctxsync-redrive-attempt`). Every re-drive is also written to a ledger,
the compacted topic `<dlq>.redriven` keyed by the dead letter's position: what was sent where, and when.

Why a ledger: the job dead-letters a record that fails again with its new input position as origin, and
knows nothing of re-drives. The ledger links that position back to the earlier dead letter, so a dead letter
is shown with its history (attempt n, first failure at ...), a dead letter already re-driven is not sent
twice, and a chain stops after `max_attempts` re-drives: a record that keeps failing is never looped.
Only dead letters of input records are re-driven (their origin is in the input topic); those of the
connectors (a view or history record Redis/ES refused) are not events and are left alone.
"""
from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ctxsync.errors import RuntimeFailure
from ctxsync.io.kafka_io import RDKAFKA_LOG, TopicSpec, ensure_topics, producer, read_topic
from transforms.privacy import is_encrypted
from transforms.timestamps import format_iso_ms

HEADER_OF, HEADER_ORIGIN, HEADER_ATTEMPT = "ctxsync-redrive-of", "ctxsync-origin", "ctxsync-redrive-attempt"


def ledger_topic(dlq_topic: str) -> str:
    return f"{dlq_topic}.redriven"


@dataclass
class DeadLetter:
    position: str            # dlq topic/partition/offset
    written_ms: int          # Kafka timestamp: when it was dead-lettered
    record: dict[str, Any]   # reason, detail, stage, raw, rawEncoding, origin
    attempt: int = 0         # re-drives before this failure (0: a first failure)
    first_origin: str = ""   # where the chain began
    redriven_to: str = ""    # input position it was re-driven to ("" = not re-driven)

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", "?"))

    @property
    def origin(self) -> str:
        return str(self.record.get("origin", ""))

    @property
    def has_payload(self) -> bool:
        """False when the original bytes are gone: kept encrypted under an erased user's deleted key (or
        dropped at the erase), which nobody can re-drive."""
        raw = self.record.get("raw")
        return isinstance(raw, str) and not is_encrypted(raw)

    def payload(self) -> bytes:
        raw = str(self.record.get("raw", ""))
        return base64.b64decode(raw) if self.record.get("rawEncoding") == "base64" else raw.encode("utf-8")


@dataclass
class Selection:
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def accepts(self, letter: DeadLetter) -> bool:
        return (self.reason is None or letter.reason == self.reason) and \
            (self.since_ms is None or letter.written_ms >= self.since_ms) and \
            (self.until_ms is None or letter.written_ms < self.until_ms)


def read_dead_letters(config: dict[str, Any], dlq_topic: str) -> list[DeadLetter]:
    """Every dead letter, oldest first per partition, joined with the re-drive ledger."""
    letters = []
    for message in read_topic(config, dlq_topic):
        position = f"{dlq_topic}/{message.partition()}/{message.offset()}"
        try:
            record = orjson.loads(message.value())
            if not isinstance(record, dict):
                raise TypeError("not an object")
        except (orjson.JSONDecodeError, TypeError):
            record = {"reason": "unreadable", "detail": "the dead letter itself is not a JSON object", "raw": ""}
        letters.append(DeadLetter(position, message.timestamp()[1], record))
    ledger = read_ledger(config, dlq_topic)
    by_target = {entry["sentTo"]: entry for entry in ledger.values()}
    for letter in letters:
        earlier = by_target.get(letter.origin)
        letter.attempt = int(earlier["attempt"]) if earlier else 0
        letter.first_origin = earlier["firstOrigin"] if earlier else letter.origin
        if letter.position in ledger:
            letter.redriven_to = ledger[letter.position]["sentTo"]
    return letters


def read_ledger(config: dict[str, Any], dlq_topic: str) -> dict[str, dict[str, Any]]:
    """Dead-letter position -> its re-drive entry (the newest per key)."""
    from confluent_kafka.admin import AdminClient

    topic = ledger_topic(dlq_topic)
    if topic not in AdminClient({**config, "logger": RDKAFKA_LOG}).list_topics(timeout=10).topics:
        return {}
    return {message.key().decode(): orjson.loads(message.value()) for message in read_topic(config, topic)}


def summarize(letters: Iterable[DeadLetter]) -> list[tuple[str, str, int, int, int]]:
    """(reason, stage, count, re-driven, failed again after a re-drive) per reason and stage."""
    counts: Counter[tuple[str, str]] = Counter()
    redriven: Counter[tuple[str, str]] = Counter()
    again: Counter[tuple[str, str]] = Counter()
    for letter in letters:
        key = (letter.reason, str(letter.record.get("stage", "?")))
        counts[key] += 1
        redriven[key] += bool(letter.redriven_to)
        again[key] += letter.attempt > 0
    return [(r, s, n, redriven[(r, s)], again[(r, s)]) for (r, s), n in sorted(counts.items())]


@dataclass
class RedriveResult:
    sent: list[DeadLetter] = field(default_factory=list)  # re-driven (or, in a dry run, would be)
    left: int = 0            # eligible but beyond the limit: not sent this time
    already: int = 0         # re-driven before: not sent again
    gave_up: int = 0         # chains at max_attempts
    not_input: int = 0       # connector dead letters (not events)
    shredded: int = 0        # payload gone (privacy on, user erased): nothing to send
    erased: int = 0          # payload of a user erased after it happened: never sent back


def _oldest_first(letter: DeadLetter) -> tuple[int, int, int]:
    """When it was dead-lettered, then its dlq position: a limited re-drive takes the oldest, and the
    next one continues where it stopped."""
    _, partition, offset = letter.position.rsplit("/", 2)
    return letter.written_ms, int(partition), int(offset)


def redrive(config: dict[str, Any], letters: list[DeadLetter], selection: Selection, input_topic: str,
            dlq_topic: str, max_attempts: int = 3, dry_run: bool = False, limit: int | None = None,
            erased: Callable[[Any], bool] | None = None) -> RedriveResult:
    """Send the selected dead letters' original bytes (at most `limit`, oldest first) to the input topic
    and record each one delivered in the ledger; a dry run only says which would be sent. `erased` (a
    parsed payload -> its user was erased after it: ctxsync/io/erase_record.py) keeps those back."""
    result = RedriveResult()
    chosen = []
    for letter in letters:
        if not selection.accepts(letter):
            continue
        if not letter.origin.startswith(f"{input_topic}/"):
            result.not_input += 1
        elif letter.redriven_to:
            result.already += 1
        elif not letter.has_payload:
            result.shredded += 1
        elif erased is not None and erased(_parsed(letter.payload())):
            result.erased += 1
        elif letter.attempt >= max_attempts:
            result.gave_up += 1
        else:
            chosen.append(letter)
    chosen.sort(key=_oldest_first)
    if limit is not None:
        chosen, result.left = chosen[:limit], max(0, len(chosen) - limit)
    if dry_run or not chosen:
        result.sent = chosen
        return result
    ledger = ledger_topic(dlq_topic)
    ensure_topics(config, [TopicSpec(ledger, 1, (("cleanup.policy", "compact"),))])
    out = producer(config)
    delivered: dict[int, str] = {}
    failures: list[str] = []

    def on_delivery(n: int) -> Any:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                delivered[n] = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
        return report

    for n, letter in enumerate(chosen):
        headers = [(HEADER_OF, letter.position.encode()), (HEADER_ORIGIN, letter.first_origin.encode()),
                   (HEADER_ATTEMPT, str(letter.attempt + 1).encode())]
        out.produce(input_topic, key=_user_key(letter.payload()), value=letter.payload(), headers=headers,
                    on_delivery=on_delivery(n))
    out.flush(60)
    now = format_iso_ms(int(time.time() * 1000))
    for n, letter in enumerate(chosen):
        if n not in delivered:
            continue  # not sent: no entry, a later redrive may send it
        letter.redriven_to = delivered[n]
        entry = {"deadLetter": letter.position, "sentTo": delivered[n], "at": now, "attempt": letter.attempt + 1,
                 "firstOrigin": letter.first_origin, "reason": letter.reason}
        out.produce(ledger, key=letter.position.encode(), value=orjson.dumps(entry))
    if out.flush(60):
        raise RuntimeFailure(f"the re-drive ledger could not be written; {len(delivered)} records were sent",
                             f"they may be sent again by another redrive: check {ledger}")
    if len(delivered) < len(chosen):
        raise RuntimeFailure(f"{len(chosen) - len(delivered)} of {len(chosen)} re-driven records not delivered: "
                             f"{failures[:3]}", f"the {len(delivered)} delivered are in {ledger}; rerun to send "
                             "the rest")
    result.sent = chosen
    return result


def _parsed(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _user_key(payload: bytes) -> bytes | None:
    """userId as the key, like `replay` (one user's events stay in one partition); None if unreadable."""
    try:
        user = orjson.loads(payload)["contextDelta"]["userId"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return user.encode() if isinstance(user, str) and user else None

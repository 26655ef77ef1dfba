"""Decode, parse and validate one raw context event (contract v1 sections 1 and 2).

`parse_event` never raises on bad input: every rule it enforces ends in a DeadLetter with a short
`reason` code, a sentence in `detail` naming the field, and the original bytes.
"""
from __future__ import annotations

import base64
from typing import Any

from transforms.json_values import loads_strict
from transforms.model import DeadLetter, Event, SubEvent, Update
from transforms.settings import SyncSettings
from transforms.timestamps import parse_iso

EVENT_TYPES = ("context.updated", "context.deleted")
PRIORITIES = ("low", "normal", "high", "critical")
MAX_EVENT_ID_CHARS = 128
# The largest values a sink can hold: versions are Avro/Java longs; a TTL becomes a Redis EXPIRE (ms since
# the epoch in a signed 64-bit integer, read as a double by Lua): 10^12 s (~31,700 years) is safe for both.
MAX_EXPECTED_VERSION = 2**63 - 1
MAX_TTL_SECONDS = 10**12
# How deep objects and arrays may nest, the event object counted: the JSON writer of every output stops at
# 254 (orjson); a deeper unknown field was accepted, then its history record halted the job (issue 22).
MAX_NESTING = 128
# A value's integers must fit a signed 64-bit long (Avro's long, Java's): the JSON parser reads
# 2^63..2^64-1 as exact integers, which the Avro form of the event wrote as a double (value changed).
MIN_LONG, MAX_LONG = -(2**63), 2**63 - 1
# Event times an output can spell (`YYYY-MM-DDTHH:MM:SS.mmmZ`): 0000-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z.
# `0000-01-01T00:00:00+01:00` is in year -1 in UTC: its history record read `-001-12-31T23:00:00.000Z`,
# which no reader (ours, Elasticsearch's date) parses back (issue 22).
MIN_EVENT_MS = -62_167_219_200_000
MAX_EVENT_MS = 253_402_300_799_999
_SCALARS = (str, bool, int, float)  # with None: a JSON scalar (see json_values.is_scalar)
_NUMBERS = (int, float)  # booleans are ints in Python: excluded where a number is checked
_LONG_RANGE = "a JSON scalar or null whose integers fit 64 bits (-2^63 to 2^63-1)"


class Invalid(Exception):
    """A rule of the contract is broken; carries the dead-letter reason code and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _missing(path: str) -> Invalid:
    return Invalid("missing_field", f"required field '{path}' is missing")


def _wrong(path: str, expected: str, value: Any) -> Invalid:
    return Invalid("invalid_field", f"field '{path}' must be {expected}, got {_describe(value)}")


def _object(parent: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    if name not in parent:
        raise _missing(path)
    value = parent[name]
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)
    return value


def _text(parent: dict[str, Any], name: str, path: str) -> str:
    if name not in parent:
        raise _missing(path)
    value = parent[name]
    if not isinstance(value, str) or not value:
        raise _wrong(path, "a non-empty string", value)
    return value


def _whole_number(value: Any) -> int | None:
    """An integer, also when written as 3.0 (JSON does not distinguish); booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _nesting_exceeds(doc: dict[str, Any], limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit` levels (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _update_path(attribute: str) -> str:
    """The field path for a detail; a long attribute name is cut, so a detail stays one readable line
    (a 3,000-character name made a detail as long, repeated in every dead-letter view; issue 22)."""
    name = attribute if len(attribute) <= 60 else repr(attribute[:57])[1:-1] + "..."
    return f"contextDelta.updates.{name}"


def _grouped_updates(
    delta: dict[str, Any], deleted: bool, settings: SyncSettings
) -> dict[str, list[Update]]:
    """The updates, checked in order and grouped by category (insertion order = first appearance)."""
    raw_updates = _object(delta, "updates", "contextDelta.updates")
    if not raw_updates:
        raise Invalid("invalid_field", "field 'contextDelta.updates' must hold at least one attribute")
    categories, default = settings.categories, settings.default_category
    by_category: dict[str, list[Update]] = {}
    for attribute, body in raw_updates.items():
        if not attribute:
            raise Invalid("invalid_field", "an attribute name in 'contextDelta.updates' is empty")
        if not isinstance(body, dict):
            raise _wrong(_update_path(attribute), "an object", body)
        if "current" not in body:
            raise _missing(_update_path(attribute) + ".current")
        current = body["current"]
        if current is not None:
            if not isinstance(current, _SCALARS):
                raise _wrong(_update_path(attribute) + ".current", "a JSON scalar or null", current)
            if type(current) is int and not MIN_LONG <= current <= MAX_LONG:
                raise _wrong(_update_path(attribute) + ".current", _LONG_RANGE, current)
            if deleted:
                raise Invalid(
                    "delete_with_value", f"context.deleted must set '{_update_path(attribute)}.current' to null"
                )
        if "confidence" not in body:
            raise _missing(_update_path(attribute) + ".confidence")
        confidence = body["confidence"]
        if not isinstance(confidence, _NUMBERS) or confidence is True or confidence is False \
                or not 0 <= confidence <= 1:
            raise _wrong(_update_path(attribute) + ".confidence", "a number between 0 and 1", confidence)
        if "previous" in body:
            previous = body["previous"]
            if previous is not None and not isinstance(previous, _SCALARS):
                raise _wrong(_update_path(attribute) + ".previous", "a JSON scalar or null", previous)
            if type(previous) is int and not MIN_LONG <= previous <= MAX_LONG:
                raise _wrong(_update_path(attribute) + ".previous", _LONG_RANGE, previous)
            update = (attribute, current, float(confidence), True, previous)
        else:
            update = (attribute, current, float(confidence), False, None)
        category = categories.get(attribute, default)
        group = by_category.get(category)
        if group is None:
            by_category[category] = [update]
        else:
            group.append(update)
    return by_category


def _propagation(doc: dict[str, Any]) -> tuple[tuple[str, ...], int | None]:
    rules = doc.get("propagationRules")
    if rules is None:
        return (), None
    if not isinstance(rules, dict):
        raise _wrong("propagationRules", "an object", rules)
    targets = rules.get("targetModels")
    if targets is not None:
        if not isinstance(targets, list):
            raise _wrong("propagationRules.targetModels", "a list of non-empty strings", targets)
        for target in targets:
            if not target or not isinstance(target, str):
                raise _wrong("propagationRules.targetModels", "a list of non-empty strings", targets)
    priority = rules.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise _wrong("propagationRules.priority", "one of " + ", ".join(PRIORITIES), priority)
    ttl = rules.get("ttl")
    if ttl is not None and (type(ttl) is not int or not 0 < ttl <= MAX_TTL_SECONDS):
        ttl = _whole_number(rules["ttl"])
        if ttl is None or not 0 < ttl <= MAX_TTL_SECONDS:
            raise _wrong("propagationRules.ttl", f"an integer number of seconds from 1 to {MAX_TTL_SECONDS}",
                         rules["ttl"])
        rules["ttl"] = ttl  # 3600.0 is the integer 3600 (JSON): written as one, as Avro's long and ES need
    return (tuple(targets) if targets else ()), ttl


def validate_document(
    doc: dict[str, Any], seq: int, origin: str, now_ms: int, settings: SyncSettings
) -> Event:
    """Check a parsed JSON object against every rule of contract v1 section 1; raise Invalid if broken.

    The checks run in a fixed order (the first broken rule names the dead letter) and build the Event's
    parts as they go, so a valid event is read once.
    """
    # Each required text field is taken directly when it is a non-empty str; otherwise _text raises the
    # contract's error for it.
    event_id = doc.get("eventId")
    if type(event_id) is not str or not event_id:
        event_id = _text(doc, "eventId", "eventId")
    if len(event_id) > MAX_EVENT_ID_CHARS:
        raise _wrong("eventId", f"at most {MAX_EVENT_ID_CHARS} characters", event_id)
    if "timestamp" not in doc:
        raise _missing("timestamp")
    text = doc["timestamp"]
    parsed = parse_iso(text) if isinstance(text, str) else None
    if parsed is None:
        raise _wrong("timestamp", "ISO-8601 with a zone, e.g. 2026-11-24T10:00:00.123Z", text)
    ts, stamp = parsed
    if not MIN_EVENT_MS <= ts <= MAX_EVENT_MS:
        raise _wrong("timestamp", "from year 0000 to 9999 in UTC", text)
    if "eventType" not in doc:
        raise _missing("eventType")
    event_type = doc["eventType"]
    if event_type not in EVENT_TYPES:
        raise _wrong("eventType", "context.updated or context.deleted", event_type)
    source = _object(doc, "source", "source")
    model_id = source.get("modelId")
    if type(model_id) is not str or not model_id:
        model_id = _text(source, "modelId", "source.modelId")
    instance_id = source.get("instanceId")
    if type(instance_id) is not str or not instance_id:
        _text(source, "instanceId", "source.instanceId")
    delta = _object(doc, "contextDelta", "contextDelta")
    user_id = delta.get("userId")
    if type(user_id) is not str or not user_id:
        user_id = _text(delta, "userId", "contextDelta.userId")
    session = delta.get("sessionId")
    if session is not None and not isinstance(session, str):
        raise _wrong("contextDelta.sessionId", "a string", session)
    expected_version = delta.get("expectedVersion")
    if expected_version is not None:
        expected_version = _whole_number(delta["expectedVersion"])
        if expected_version is None or not 0 <= expected_version <= MAX_EXPECTED_VERSION:
            raise _wrong("contextDelta.expectedVersion", f"an integer from 0 to {MAX_EXPECTED_VERSION}",
                         delta["expectedVersion"])
        delta["expectedVersion"] = expected_version  # 1E2 is the integer 100: written as one (see ttl)
    by_category = _grouped_updates(delta, event_type == "context.deleted", settings)
    targets, ttl = _propagation(doc)
    if ts > now_ms + settings.future_skew_ms:
        raise Invalid(
            "future_timestamp",
            f"timestamp {text} is more than {settings.future_skew_ms // 1000} s ahead of the "
            "processing clock",
        )
    if len(by_category) == 1:
        ((category, group),) = by_category.items()
        sub_events: tuple[SubEvent, ...] = ((category, tuple(group)),)
    else:
        if expected_version is not None:
            raise Invalid(
                "multi_category_expected_version",
                "an event with contextDelta.expectedVersion must touch one category, this one touches "
                + ", ".join(sorted(by_category)),
            )
        sub_events = tuple([(category, tuple(by_category[category])) for category in sorted(by_category)])
    doc["timestamp"] = stamp
    return Event(
        seq, origin, event_id, ts, stamp, user_id, model_id, expected_version, sub_events, targets, ttl, doc
    )


def dead_letter(raw: bytes, seq: int, origin: str, reason: str, detail: str, stage: str) -> DeadLetter:
    """Keep the original payload: as text when it is UTF-8, else as base64."""
    try:
        return DeadLetter(seq, origin, reason, detail, stage, raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return DeadLetter(
            seq, origin, reason, detail, stage, base64.b64encode(raw).decode("ascii"), "base64"
        )


def parse_event(
    raw: bytes, seq: int, origin: str, now_ms: int, settings: SyncSettings
) -> Event | DeadLetter:
    """Turn one raw payload into a valid Event or a DeadLetter; never raises for bad input."""
    if len(raw) > settings.max_event_bytes:
        return dead_letter(
            raw, seq, origin, "too_large",
            f"event is {len(raw)} bytes, the limit (max_event_bytes) is {settings.max_event_bytes}",
            "decode",
        )
    try:
        doc = loads_strict(raw)
    except ValueError as exc:
        # orjson also rejects every non-UTF-8 payload, so the decoder runs only to name the reason.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            return dead_letter(raw, seq, origin, "not_utf8", f"payload is not UTF-8: {not_utf8}", "decode")
        return dead_letter(raw, seq, origin, "invalid_json", f"payload is not JSON: {exc}", "parse")
    if not isinstance(doc, dict):
        return dead_letter(raw, seq, origin, "not_object",
                           f"a context event must be a JSON object, got {type(doc).__name__}", "parse")
    # Counting brackets is C speed; only a payload with enough of them is walked.
    if raw.count(b"{") + raw.count(b"[") > MAX_NESTING and _nesting_exceeds(doc, MAX_NESTING):
        return dead_letter(raw, seq, origin, "too_deep",
                           f"objects and arrays nest more than {MAX_NESTING} levels deep", "parse")
    try:
        return validate_document(doc, seq, origin, now_ms, settings)
    except Invalid as exc:
        return dead_letter(raw, seq, origin, exc.reason, exc.detail, "validate")

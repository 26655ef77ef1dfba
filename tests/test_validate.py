"""Every rule of contract v1 section 1 ends in a dead letter with reason, detail and the raw bytes."""
import base64
import json

import pytest

from transforms.model import DeadLetter, Event
from transforms.validate import parse_event
from tests.helpers import DELETE, NOW_MS, SETTINGS, event, raw


def parse(payload: bytes):
    return parse_event(payload, 7, "f.jsonl:7", NOW_MS, SETTINGS)


def test_valid_event_is_parsed_with_categories_and_normalized_time():
    doc = event(timestamp="2026-11-17T11:00:00.5+01:00", contextDelta__updates={
        "segment": {"current": "power", "confidence": 1},
        "riskTolerance": {"current": "growth", "confidence": 0.5, "previous": None},
        "favoriteColor": {"current": True, "confidence": 0}})
    doc["vendorField"] = {"kept": 1}
    parsed = parse(raw(doc))
    assert isinstance(parsed, Event)
    assert [category for category, _ in parsed.sub_events] == ["behavioral", "financial", "general"]
    assert parsed.doc["timestamp"] == "2026-11-17T10:00:00.500Z"
    assert parsed.doc["vendorField"] == {"kept": 1}
    assert parsed.targets == ("churn-predictor",) and parsed.ttl == 3600
    attribute, current, confidence, has_previous, previous = parsed.sub_events[1][1][0]
    assert attribute == "riskTolerance" and has_previous and previous is None


@pytest.mark.parametrize("payload, reason, stage, field", [
    (b'{"eventId": "a", ', "invalid_json", "parse", ""),
    (b'{"a": NaN}', "invalid_json", "parse", ""),
    (b'{"a": Infinity}', "invalid_json", "parse", ""),
    (b'{"a": 1e400}', "invalid_json", "parse", ""),
    (b'{"a": "\\ud800"}', "invalid_json", "parse", ""),
    (b'[1, 2]', "not_object", "parse", ""),
    (b'"text"', "not_object", "parse", ""),
    (raw(event(eventId=DELETE)), "missing_field", "validate", "eventId"),
    (raw(event(eventId="")), "invalid_field", "validate", "eventId"),
    (raw(event(eventId="x" * 129)), "invalid_field", "validate", "eventId"),
    (raw(event(eventId=5)), "invalid_field", "validate", "eventId"),
    (raw(event(timestamp="2026-11-17T10:00:00")), "invalid_field", "validate", "timestamp"),
    (raw(event(timestamp=1795000000)), "invalid_field", "validate", "timestamp"),
    (raw(event(eventType="context.patched")), "invalid_field", "validate", "eventType"),
    (raw(event(source__modelId="")), "invalid_field", "validate", "source.modelId"),
    (raw(event(source__instanceId=DELETE)), "missing_field", "validate", "source.instanceId"),
    (raw(event(source="m1")), "invalid_field", "validate", "source"),
    (raw(event(contextDelta__userId=DELETE)), "missing_field", "validate", "contextDelta.userId"),
    (raw(event(contextDelta__sessionId=3)), "invalid_field", "validate", "contextDelta.sessionId"),
    (raw(event(contextDelta__expectedVersion=-1)), "invalid_field", "validate", "contextDelta.expectedVersion"),
    (raw(event(contextDelta__expectedVersion=True)), "invalid_field", "validate", "contextDelta.expectedVersion"),
    (raw(event(contextDelta__expectedVersion=1.5)), "invalid_field", "validate", "contextDelta.expectedVersion"),
    # beyond a 64-bit long (read as a float by the JSON parser): stopped the Flink job before (issue 22)
    (raw(event(contextDelta__expectedVersion=18446744073709551616)), "invalid_field", "validate", "expectedVersion"),
    (raw(event(contextDelta__expectedVersion=1e300)), "invalid_field", "validate", "expectedVersion"),
    (raw(event(contextDelta__expectedVersion=2**63)), "invalid_field", "validate", "expectedVersion"),
    (raw(event(contextDelta__updates={})), "invalid_field", "validate", "contextDelta.updates"),
    (raw(event(contextDelta__updates=[])), "invalid_field", "validate", "contextDelta.updates"),
    (raw(event(contextDelta__updates__segment__current=[1])), "invalid_field", "validate", "segment.current"),
    (raw(event(contextDelta__updates__segment__current=DELETE)), "missing_field", "validate", "segment.current"),
    (raw(event(contextDelta__updates__segment__previous={"a": 1})), "invalid_field", "validate", "segment.previous"),
    (raw(event(contextDelta__updates__segment__confidence=1.01)), "invalid_field", "validate", "confidence"),
    (raw(event(contextDelta__updates__segment__confidence=-0.1)), "invalid_field", "validate", "confidence"),
    (raw(event(contextDelta__updates__segment__confidence=True)), "invalid_field", "validate", "confidence"),
    (raw(event(contextDelta__updates__segment__confidence="0.5")), "invalid_field", "validate", "confidence"),
    (raw(event(contextDelta__updates__segment__confidence=DELETE)), "missing_field", "validate", "confidence"),
    (raw(event(eventType="context.deleted")), "delete_with_value", "validate", "segment.current"),
    (raw(event(propagationRules=[])), "invalid_field", "validate", "propagationRules"),
    (raw(event(propagationRules__targetModels=["a", ""])), "invalid_field", "validate", "targetModels"),
    (raw(event(propagationRules__targetModels="a")), "invalid_field", "validate", "targetModels"),
    (raw(event(propagationRules__priority="urgent")), "invalid_field", "validate", "priority"),
    (raw(event(propagationRules__ttl=0)), "invalid_field", "validate", "ttl"),
    (raw(event(propagationRules__ttl="1h")), "invalid_field", "validate", "ttl"),
    (raw(event(propagationRules__ttl=1e300)), "invalid_field", "validate", "ttl"),
    (raw(event(propagationRules__ttl=10**12 + 1)), "invalid_field", "validate", "ttl"),
    (raw(event(timestamp="2099-01-01T00:00:00Z")), "future_timestamp", "validate", "2099"),
    (raw(event(contextDelta__expectedVersion=2, contextDelta__updates={
        "segment": {"current": "a", "confidence": 1}, "creditScore": {"current": 700, "confidence": 1}})),
     "multi_category_expected_version", "validate", "behavioral, financial"),
])
def test_invalid_events_are_dead_lettered_with_reason(payload, reason, stage, field):
    result = parse(payload)
    assert isinstance(result, DeadLetter), result
    assert (result.reason, result.stage) == (reason, stage)
    assert field in result.detail
    assert result.raw == payload.decode() and result.raw_encoding == "utf-8"
    assert result.origin == "f.jsonl:7" and result.seq == 7


def test_non_utf8_keeps_original_bytes_as_base64():
    payload = raw(event()).replace(b"power", b"p\xffwer")
    result = parse(payload)
    assert (result.reason, result.stage, result.raw_encoding) == ("not_utf8", "decode", "base64")
    assert base64.b64decode(result.raw) == payload


def test_oversized_event_is_dead_lettered_not_parsed():
    doc = event(contextDelta__updates__segment__current="x" * 1_000_100)
    result = parse(raw(doc))
    assert result.reason == "too_large" and "max_event_bytes" in result.detail
    assert json.loads(result.raw) == doc


def test_timestamp_within_future_skew_is_accepted():
    just_inside = NOW_MS + SETTINGS.future_skew_ms
    from transforms.timestamps import format_iso_ms
    assert isinstance(parse(raw(event(timestamp=format_iso_ms(just_inside)))), Event)
    assert isinstance(parse(raw(event(timestamp=format_iso_ms(just_inside + 1)))), DeadLetter)


def test_optional_fields_may_be_null_or_absent_and_integers_may_be_written_as_floats():
    parsed = parse(raw(event(contextDelta__sessionId=None, propagationRules=None,
                             contextDelta__expectedVersion=3.0)))
    assert isinstance(parsed, Event) and parsed.expected_version == 3 and parsed.targets == ()
    parsed = parse(raw(event(propagationRules__ttl=60.0, propagationRules__priority=None)))
    assert isinstance(parsed, Event) and parsed.ttl == 60

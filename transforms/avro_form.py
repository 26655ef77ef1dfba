"""The Avro form of a context event (schemas/context_event.avsc) <-> its JSON form.

Avro cannot tell an absent field from null, so the schema wraps `previous` in a record: null means
"no expectation", {"value": null} means "expected absent". Optional fields that are null in Avro are
left out of the JSON form, so an event read from Avro looks like the JSON a producer would write.
Version 2 of the schema adds the optional top-level strings `traceId` and `modelVersion`: in JSON they are
extra fields (carried along); a JSON value that is not a string has no Avro form and is left out.
"""
from __future__ import annotations

from typing import Any

_OPTIONAL_DELTA = ("sessionId", "expectedVersion")
_RULE_FIELDS = ("targetModels", "priority", "ttl")
_V2_STRINGS = ("traceId", "modelVersion")


def to_avro(doc: dict[str, Any]) -> dict[str, Any]:
    """The Avro datum of a JSON event (unknown extra fields are not part of the Avro form)."""
    delta = doc["contextDelta"]
    updates = {}
    for name, body in delta["updates"].items():
        updates[name] = {
            "current": body["current"],
            "confidence": body["confidence"],
            "previous": {"value": body["previous"]} if "previous" in body else None,
        }
    rules = doc.get("propagationRules")
    return {
        "eventId": doc["eventId"],
        "timestamp": doc["timestamp"],
        "eventType": doc["eventType"],
        "source": {"modelId": doc["source"]["modelId"], "instanceId": doc["source"]["instanceId"]},
        "contextDelta": {
            "userId": delta["userId"],
            **{k: delta.get(k) for k in _OPTIONAL_DELTA},
            "updates": updates,
        },
        "propagationRules": None if rules is None else {k: rules.get(k) for k in _RULE_FIELDS},
        **{k: doc[k] if isinstance(doc.get(k), str) else None for k in _V2_STRINGS},
    }


def from_avro(datum: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of an Avro datum, with null optional fields left out."""
    delta = datum["contextDelta"]
    updates = {}
    for name, body in delta["updates"].items():
        update: dict[str, Any] = {"current": body["current"], "confidence": body["confidence"]}
        if body.get("previous") is not None:
            update["previous"] = body["previous"]["value"]
        updates[name] = update
    out_delta: dict[str, Any] = {"userId": delta["userId"]}
    out_delta.update({k: delta[k] for k in _OPTIONAL_DELTA if delta.get(k) is not None})
    out_delta["updates"] = updates
    doc: dict[str, Any] = {
        "eventId": datum["eventId"],
        "timestamp": datum["timestamp"],
        "eventType": datum["eventType"],
        "source": dict(datum["source"]),
        "contextDelta": out_delta,
    }
    rules = datum.get("propagationRules")
    if rules is not None:
        doc["propagationRules"] = {k: rules[k] for k in _RULE_FIELDS if rules.get(k) is not None}
    doc.update({k: datum[k] for k in _V2_STRINGS if datum.get(k) is not None})  # absent from a v1 reader
    return doc

"""What happened to one event, from its tagged output lines: the answer `publish(wait=True)` waits for.

Pure and engine-neutral: the job pushes it to Redis after the event's views are applied, so a model that
reads it can read its own write.
"""
from __future__ import annotations

from typing import Any

import orjson

from transforms.records import CONFLICT, DUPLICATE, HISTORY, VIEW, untag


MAX_NONCE_CHARS = 64


def ack_nonce(doc: dict[str, Any]) -> str | None:
    """The event's `"ack"`: a nonce the publisher waits on (ctxsync/client/acks.py), or None. Not part of the
    contract's rules: any other value is carried along like every unknown field, and asks for nothing."""
    nonce = doc.get("ack")
    return nonce if type(nonce) is str and 0 < len(nonce) <= MAX_NONCE_CHARS else None


def event_outcome(event_id: str, lines: list[str]) -> dict[str, Any]:
    """`outcome`: applied (at least one update applied), stale (every update older than what is held),
    rejected (a conflict under the reject policy) or duplicate; plus the attributes applied and stale, the
    conflict and ordering-violation flags and the new version of each view it changed."""
    if lines and lines[0][0] == DUPLICATE:
        return {"eventId": event_id, "outcome": "duplicate"}
    history: dict[str, Any] = {}
    versions: dict[str, int] = {}
    conflict_rejected = False
    for line in lines:
        kind, _, _, text = untag(line)
        if kind == HISTORY:
            history = orjson.loads(text)
        elif kind == VIEW:
            view = orjson.loads(text)
            versions[view["key"]] = view["version"]
        elif kind == CONFLICT:
            conflict_rejected = conflict_rejected or orjson.loads(text).get("policy") == "reject"
    applied = history.get("applied", [])
    outcome = "applied" if applied else "rejected" if conflict_rejected else "stale"
    return {"eventId": event_id, "outcome": outcome, "applied": applied, "stale": history.get("stale", []),
            "conflict": history.get("conflict", False), "violation": history.get("violation", False),
            "versions": versions}

"""Control records: an operator's command to the running job, sent on its input topic (`ctxsync erase`).

A control record is keyed and bucketed like the user's events (its payload names the user under
contextDelta.userId), so it reaches the user's state after every event of theirs produced before it. It is
recognized by its first bytes, before validation: a context event is never dead-lettered for being one, and
no valid event is taken for one unless a producer forges the prefix, which the signature then refuses when
the job has keys (privacy on: HMAC-SHA256 with the job's control key, held in the key store under the
master key). Without keys, anyone who may write the input topic may erase (as they may write any event).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

import orjson

CONTROL_PREFIX = b'{"ctxsyncControl":'


class Erase(NamedTuple):
    user_id: str
    at_ms: int


def _control_mac(control_key: bytes, body: bytes) -> str:
    return hmac.new(control_key, body, hashlib.sha256).hexdigest()


def erase_command(user_id: str, at_ms: int, control_key: bytes | None) -> bytes:
    """The payload of an erase command for the input topic; signed when the profile has keys."""
    body = orjson.dumps({"command": "erase", "userId": user_id, "at": at_ms})
    sig = _control_mac(control_key, body) if control_key else ""
    return (CONTROL_PREFIX + orjson.dumps(body.decode()) + b',"sig":' + orjson.dumps(sig)
            + b',"contextDelta":' + orjson.dumps({"userId": user_id}) + b"}")


def is_control(raw: bytes) -> bool:
    return raw.startswith(CONTROL_PREFIX)


def parse_control(raw: bytes, control_key: bytes | None) -> Erase | str:
    """The command of a control record, or why it is refused (bad form, or a missing or wrong signature
    when the job has a control key: only holders of the master key may erase)."""
    try:
        doc = orjson.loads(raw)
        body = doc["ctxsyncControl"].encode()
        command = orjson.loads(body)
        user, at = command["userId"], command["at"]
        if command.get("command") != "erase" or not isinstance(user, str) or not user or type(at) is not int:
            return "not an erase command with userId and at"
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "control record is not of the form ctxsync erase writes"
    if control_key is not None and not hmac.compare_digest(str(doc.get("sig", "")), _control_mac(control_key, body)):
        return "control record is not signed with this job's key"
    return Erase(user, at)

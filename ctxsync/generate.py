"""A realistic synthetic context-event stream with planted anomalies at configurable rates.

Deterministic for a seed, so sample data, tests and benchmarks can be regenerated exactly.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from transforms.timestamps import format_iso_ms, parse_iso_ms

MODELS = {  # modelId -> attributes it writes
    "recommendation-engine": ["segment", "preferredChannel", "engagementScore", "lastAction"],
    "risk-model": ["riskTolerance", "portfolioValue", "creditScore"],
    "churn-predictor": ["segment", "engagementScore"],
    "session-tracker": ["lastLogin", "timezone", "sessionLength", "lastAction"],
    "support-assistant": ["preferredChannel", "language", "sentiment"],
}
VALUES = {
    "segment": ["new", "casual", "engaged", "power", "at-risk", "dormant"],
    "preferredChannel": ["email", "sms", "push", "in-app", "phone"],
    "lastAction": ["view", "search", "add_to_cart", "purchase", "support_chat", "logout"],
    "riskTolerance": ["conservative", "moderate", "balanced", "growth", "aggressive"],
    "timezone": ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"],
    "language": ["en", "de", "ja", "es", "fr"],
    "sentiment": ["negative", "neutral", "positive"],
}
# The shipped jobs.yaml categories, so generated expectedVersions track real aggregate versions.
CATEGORY_OF = {
    "riskTolerance": "financial", "portfolioValue": "financial", "creditScore": "financial",
    "segment": "behavioral", "lastAction": "behavioral", "preferredChannel": "behavioral",
    "engagementScore": "behavioral", "lastLogin": "temporal", "timezone": "temporal",
    "sessionLength": "temporal",
}
INVALID_KINDS = (
    "malformed_json", "not_utf8", "nan", "not_object", "missing_user", "bad_confidence",
    "bad_event_type", "bad_timestamp", "future_timestamp", "delete_with_value",
    "multi_category_expected_version", "bad_ttl", "bad_priority", "empty_updates", "long_event_id",
)
START = "2026-11-24T08:00:00.000Z"


@dataclass(frozen=True)
class GeneratorOptions:
    events: int = 3000
    users: int = 50
    seed: int = 7
    duplicate_rate: float = 0.03
    late_rate: float = 0.04
    conflict_rate: float = 0.03
    invalid_rate: float = 0.03
    delete_rate: float = 0.02
    mean_gap_ms: int = 400
    drift: tuple[tuple[str, int], ...] = ()  # (attribute, epoch ms): shift its distribution from then on


def _value(rng: random.Random, attribute: str) -> object:
    if attribute in VALUES:
        return rng.choice(VALUES[attribute])
    if attribute == "engagementScore":
        return round(rng.betavariate(2, 3), 3)
    if attribute == "creditScore":
        return rng.randint(300, 850)
    if attribute == "portfolioValue":
        return round(rng.lognormvariate(10, 1.2), 2)
    if attribute == "sessionLength":
        return rng.randint(5, 7200)
    if attribute == "lastLogin":
        return format_iso_ms(parse_iso_ms(START) - rng.randint(0, 30 * 86_400_000))
    return rng.random()


def _drifted_value(rng: random.Random, attribute: str) -> object:
    """The shifted distribution of `--drift`: one dominant category, or a moved numeric range."""
    if attribute in VALUES:
        values = VALUES[attribute]
        return values[-1] if rng.random() < 0.6 else rng.choice(values)
    if attribute == "engagementScore":
        return round(rng.betavariate(5, 2), 3)
    if attribute == "creditScore":
        return rng.randint(300, 580)
    if attribute == "portfolioValue":
        return round(rng.lognormvariate(11, 1.2), 2)
    if attribute == "sessionLength":
        return rng.randint(3600, 14_400)
    return _value(rng, attribute)


DRIFTABLE = tuple(VALUES) + ("engagementScore", "creditScore", "portfolioValue", "sessionLength")


def parse_drift(spec: str) -> tuple[str, int]:
    """`ATTR@T`, T an ISO-8601 time or an offset from the stream start like +45m, +2h, +90s."""
    attribute, sep, when = spec.partition("@")
    if not sep or attribute not in DRIFTABLE:
        raise ValueError(f"--drift expects ATTR@TIME with ATTR one of {', '.join(DRIFTABLE)}, got {spec!r}")
    if when.startswith("+"):
        units = {"s": 1000, "m": 60_000, "h": 3_600_000}
        if when[-1:] not in units or not when[1:-1].isdigit():
            raise ValueError(f"--drift offset must look like +90s, +45m or +2h, got {when!r}")
        return attribute, parse_iso_ms(START) + int(when[1:-1]) * units[when[-1]]
    ts = parse_iso_ms(when)
    if ts is None:
        raise ValueError(f"--drift time must be ISO-8601 with a zone (e.g. {START}) or +45m, got {when!r}")
    return attribute, ts


class _Stream:
    """Tracks what the generator believes each aggregate holds, to write realistic `previous` values."""

    def __init__(self, options: GeneratorOptions) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.clock = parse_iso_ms(START)
        self.values: dict[tuple[str, str], object] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.sessions: dict[str, str] = {}
        self.count = 0

    def _event(self, ts: int) -> dict:
        rng = self.rng
        user = f"user-{rng.randrange(self.o.users):05d}"
        model = rng.choice(list(MODELS))
        attrs = rng.sample(MODELS[model], k=min(len(MODELS[model]), rng.choice((1, 1, 1, 2, 2, 3))))
        deleted = rng.random() < self.o.delete_rate
        updates = {}
        for attr in attrs:
            drifted = any(attr == a and ts >= since for a, since in self.o.drift)
            update: dict = {"current": None if deleted else (_drifted_value if drifted else _value)(rng, attr),
                            "confidence": round(rng.uniform(0.55, 0.99), 3)}
            if rng.random() < 0.3 and (user, attr) in self.values:
                update["previous"] = self.values[(user, attr)]
            updates[attr] = update
            self.values[(user, attr)] = update["current"]
        if user not in self.sessions or rng.random() < 0.05:
            self.sessions[user] = f"sess-{rng.getrandbits(40):010x}"
        self.count += 1
        event = {
            "eventId": f"evt-{self.o.seed}-{self.count:08d}",
            "timestamp": format_iso_ms(ts),
            "eventType": "context.deleted" if deleted else "context.updated",
            "source": {"modelId": model, "instanceId": f"{model}-{rng.randrange(3)}"},
            "contextDelta": {"userId": user, "sessionId": self.sessions[user], "updates": updates},
            "propagationRules": {
                "targetModels": sorted(rng.sample([m for m in MODELS if m != model], k=rng.randint(1, 3))),
                "priority": rng.choice(("low", "normal", "normal", "high", "critical")),
                "ttl": rng.choice((300, 3600, 86400)),
            },
        }
        categories = {CATEGORY_OF.get(a, "general") for a in attrs}
        if len(categories) == 1 and rng.random() < 0.15:
            event["contextDelta"]["expectedVersion"] = self.versions.get((user, *categories), 0)
        for category in categories:
            self.versions[(user, category)] = self.versions.get((user, category), 0) + 1
        return event

    def _conflicting(self, event: dict) -> dict:
        updates = event["contextDelta"]["updates"]
        attr = next(iter(updates))
        if self.rng.random() < 0.5 and len(updates) == 1:
            event["contextDelta"]["expectedVersion"] = 10_000 + self.rng.randrange(100)
        else:
            updates[attr]["previous"] = "stale-belief"
        return event

    def _invalid(self, event: dict) -> bytes:
        kind = INVALID_KINDS[self.rng.randrange(len(INVALID_KINDS))]
        delta = event["contextDelta"]
        first = next(iter(delta["updates"].values()))
        if kind == "malformed_json":
            return json.dumps(event).encode()[:-7]
        if kind == "not_utf8":
            return json.dumps(event).encode().replace(b'"context', b'"\xff\xfecontext', 1)
        if kind == "nan":
            first["confidence"] = float("nan")
            return json.dumps(event).encode()  # Python writes NaN, which is not JSON
        if kind == "not_object":
            return json.dumps([event]).encode()
        if kind == "missing_user":
            del delta["userId"]
        elif kind == "bad_confidence":
            first["confidence"] = self.rng.choice((1.7, -0.2, "high", True))
        elif kind == "bad_event_type":
            event["eventType"] = "context.patched"
        elif kind == "bad_timestamp":
            event["timestamp"] = self.rng.choice(("2026-11-24 10:00:00", "2026-11-24T10:00:00", "yesterday"))
        elif kind == "future_timestamp":
            event["timestamp"] = "2099-01-01T00:00:00.000Z"
        elif kind == "delete_with_value":
            event["eventType"] = "context.deleted"
            first["current"] = "still-here"
        elif kind == "multi_category_expected_version":
            delta["updates"] = {"segment": {"current": "new", "confidence": 0.9},
                                "riskTolerance": {"current": "moderate", "confidence": 0.8}}
            delta["expectedVersion"] = 1
        elif kind == "bad_ttl":
            event["propagationRules"]["ttl"] = self.rng.choice((0, -5, "1h"))
        elif kind == "bad_priority":
            event["propagationRules"]["priority"] = "urgent"
        elif kind == "empty_updates":
            delta["updates"] = {}
        elif kind == "long_event_id":
            event["eventId"] = "x" * 129
        return json.dumps(event).encode()

    def lines(self) -> Iterator[bytes]:
        o, rng = self.o, self.rng
        recent: list[bytes] = []
        for _ in range(o.events):
            roll = rng.random()
            if recent and roll < o.duplicate_rate:
                yield rng.choice(recent)  # a re-delivery: byte-identical
                continue
            self.clock += int(rng.expovariate(1 / o.mean_gap_ms)) + 1
            ts = self.clock
            if rng.random() < o.late_rate:
                ts -= rng.randint(1_000, 600_000)
            event = self._event(ts)
            roll = rng.random()
            if roll < o.invalid_rate:
                yield self._invalid(event)
                continue
            if roll < o.invalid_rate + o.conflict_rate:
                event = self._conflicting(event)
            if rng.random() < 0.05:  # some producers write offsets instead of Z
                event["timestamp"] = event["timestamp"].replace("Z", "+00:00")
            line = json.dumps(event, separators=(",", ":")).encode()
            recent = (recent + [line])[-50:]
            yield line


def generate_lines(options: GeneratorOptions) -> Iterator[bytes]:
    """JSON Lines payloads (without newline) of a synthetic stream."""
    return _Stream(options).lines()

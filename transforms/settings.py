"""The knobs the operators read, as one plain, picklable value (built from jobs.yaml by ctxsync.config)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transforms.compiled_suite import CompiledSuite

ConflictPolicy = Literal["last-writer-wins", "reject"]
Mode = Literal["pseudonymize", "encrypt"]
USER_FIELD = "contextDelta.userId"


@dataclass(frozen=True)
class PrivacyPolicy:
    """What transforms/privacy.py protects, and where the operator finds its keys (`keys`: a description
    such as `{"store": "file", "path": ...}` that ctxsync.io.keystore opens; never a key itself)."""

    fields: dict[str, Mode] = field(default_factory=lambda: {USER_FIELD: "pseudonymize"})
    attributes: dict[str, Mode] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncSettings:
    """Semantics settings of the context-sync job; defaults are contract v1's."""

    categories: dict[str, str] = field(default_factory=dict)
    default_category: str = "general"
    conflict_policy: ConflictPolicy = "last-writer-wins"
    dedup_retention_ms: int = 24 * 3600 * 1000
    state_ttl_ms: int | None = None  # a user idle longer (event time) leaves state; None: never (state_ttl.py)
    future_skew_ms: int = 5 * 60 * 1000
    max_event_bytes: int = 1_000_000
    expectations: CompiledSuite | None = None  # opt-in GE suite, compiled (transforms/expectations.py)
    privacy: PrivacyPolicy | None = None  # PII protection of outputs, on where the profile says (privacy.py)

    def category_of(self, attribute: str) -> str:
        return self.categories.get(attribute, self.default_category)

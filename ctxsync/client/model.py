"""What a model reads: typed, immutable forms of the view records (contract v1 section 5)."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from transforms.timestamps import parse_iso_ms

Scalar = str | int | float | bool | None


class Attribute(NamedTuple):
    """One attribute of a view: its value and where it came from. (NamedTuples: a get_many of 100
    users builds hundreds of these, and a frozen dataclass costs several times more to construct.)"""

    value: Scalar
    confidence: float
    updated_at: str
    event_id: str
    model_id: str


class View(NamedTuple):
    """One context aggregate (`<category>:<userId>`) as the job last materialized it."""

    key: str
    category: str
    user_id: str
    version: int
    updated_at: str
    attributes: Mapping[str, Attribute]  # read-only: a cached View is shared by every reader
    target_models: tuple[str, ...]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "View":
        """From the view record (redis_views.view_from_hash, a change-stream entry's `view`)."""
        attributes = {name: Attribute(a["value"], a["confidence"], a["updatedAt"], a["eventId"], a["modelId"])
                      for name, a in record["attributes"].items()}
        return cls(record["key"], record["category"], record["userId"], int(record["version"]),
                   record["updatedAt"], MappingProxyType(attributes), tuple(record["targetModels"]))


@dataclass(frozen=True, slots=True)
class Context:
    """A user's views, one per category that has one, read at `read_at_ms` (wall clock, epoch ms)."""

    user_id: str
    views: dict[str, View]
    read_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    @property
    def attributes(self) -> dict[str, Attribute]:
        """Every attribute of every category (an attribute belongs to exactly one category)."""
        return {name: a for view in self.views.values() for name, a in view.attributes.items()}

    def value(self, name: str, default: Scalar = None) -> Scalar:
        found = self.attributes.get(name)
        return default if found is None else found.value

    def version(self, category: str) -> int:
        """The aggregate's version, 0 when it has no view yet (what `expectedVersion` must then say)."""
        view = self.views.get(category)
        return 0 if view is None else view.version

    @property
    def staleness_ms(self) -> int | None:
        """How far the newest update in this context lies behind the read (event time to wall clock);
        None when the user has no view."""
        newest = max((parse_iso_ms(v.updated_at) or 0 for v in self.views.values()), default=None)
        return None if newest is None else self.read_at_ms - newest


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the model's change stream: a view the connector applied; `key` is the aggregate's
    (`<category>:<userId>`), `entry_id` the stream entry's.

    `duplicate` is True when this group has already acknowledged this version (or a newer one) of the
    aggregate: a redelivery after a crash, or an older entry claimed after a newer one was handled.
    """

    entry_id: str
    key: str
    version: int
    view: View
    duplicate: bool = False
    redelivered: bool = False  # taken from a pending list (this instance's after a restart, or a crashed one's)

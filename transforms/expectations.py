"""The compiled fast path of a Great Expectations suite: the same expectations, evaluated row by row.

The suite JSON under schemas/expectations/ is the one source of truth. Running GE per event costs a
fixed ~0.1 s per validation, so the stream evaluates a compiled form instead: the suite's row-level
expectations read from the same JSON, with GE's semantics (nulls are skipped, bounds inclusive unless
strict). tests/test_expectations.py proves it agrees with real GE on every row. No GE import here.

Rows are flattened events: one row per (event, attribute update); see `flatten`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from transforms.compiled_suite import Check, CompiledSuite
from transforms.model import DeadLetter, Event
from transforms.timestamps import parse_iso_ms
from transforms.validate import dead_letter

SUITES_DIR = Path(__file__).resolve().parent.parent / "schemas" / "expectations"
VALUE_PREFIX, TYPE_PREFIX = "value.", "type."

# Columns every flattened row has (per-attribute `value.<attr>` / `type.<attr>` columns are added for
# the attributes a suite names).
BASE_COLUMNS = (
    "eventId", "eventType", "userId", "modelId", "timestamp", "eventTimeMs", "msAfterClock", "ttl",
    "ttlType", "priority", "attribute", "valueType", "confidence", "confidenceType",
)


def _json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scalar(value: Any) -> Any:
    """Scalars as they are; objects and arrays become null (their type column says what they were)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else None


def _get(doc: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def flatten(doc: Any, now_ms: int, suite: CompiledSuite, sparse: bool = False) -> list[dict[str, Any]]:
    """One row per (event, attribute update) of a parsed JSON document (valid or not).

    A document with no usable updates still gives one row (attribute null), so it cannot slip through.
    `msAfterClock` (event time minus the processing clock) lets a static suite say "not in the future".
    Range-checked columns hold numbers only (else null) and a `...Type` column says what was there:
    GE's between-expectations silently pass strings, so a type expectation must catch them instead.
    `sparse` leaves out the other attributes' columns (all null) for the hot path; `.get` reads them as null.
    """
    stamp = _get(doc, "timestamp")
    ts = parse_iso_ms(stamp) if isinstance(stamp, str) else None
    ttl = _get(doc, "propagationRules", "ttl")
    base = {
        "eventId": _scalar(_get(doc, "eventId")),
        "eventType": _scalar(_get(doc, "eventType")),
        "userId": _scalar(_get(doc, "contextDelta", "userId")),
        "modelId": _scalar(_get(doc, "source", "modelId")),
        "timestamp": stamp if isinstance(stamp, str) else None,
        "eventTimeMs": ts,
        "msAfterClock": None if ts is None else ts - now_ms,
        "ttl": _number(ttl),
        "ttlType": _json_type(ttl),
        "priority": _scalar(_get(doc, "propagationRules", "priority")),
    }
    updates = _get(doc, "contextDelta", "updates")
    items = list(updates.items()) if isinstance(updates, dict) else []
    rows = []
    for attribute, body in items or [(None, None)]:
        current = _get(body, "current")
        confidence = _get(body, "confidence")
        row = dict(base)
        row["attribute"] = attribute or None
        row["valueType"] = _json_type(current)
        row["confidence"] = _number(confidence)
        row["confidenceType"] = _json_type(confidence)
        for name in ((attribute,) if attribute in suite.attributes else ()) if sparse else suite.attributes:
            mine = name == attribute
            value = (_number(current) if name in suite.numeric else _scalar(current)) if mine else None
            row[VALUE_PREFIX + name] = value
            row[TYPE_PREFIX + name] = _json_type(current) if mine else None
        rows.append(row)
    return rows


def _between(value: float, kw: dict[str, Any]) -> bool:
    low, high = kw.get("min_value"), kw.get("max_value")
    if low is not None and (value <= low if kw.get("strict_min") else value < low):
        return False
    if high is not None and (value >= high if kw.get("strict_max") else value > high):
        return False
    return True


def _passes(check: Check, value: Any) -> bool:
    """GE's per-row verdict; nulls pass every expectation except not_be_null (GE skips them)."""
    if check.type == "expect_column_values_to_not_be_null":
        return value is not None
    if value is None:
        return True
    kw = check.kwargs
    if check.type == "expect_column_values_to_be_in_set":
        return value in kw["_set"]
    if check.type == "expect_column_values_to_be_between":
        return _between(value, kw)
    if check.type == "expect_column_values_to_match_regex":
        return kw["_regex"].search(str(value)) is not None
    raise AssertionError(check.type)


ROW_LEVEL = frozenset({
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
    "expect_column_values_to_be_between", "expect_column_values_to_match_regex",
})
_ALLOWED_KWARGS = {"column", "value_set", "min_value", "max_value", "strict_min", "strict_max", "regex"}


def compile_suite(suite: dict[str, Any]) -> CompiledSuite:
    """Compile a GE 1.x suite dict; refuse what the fast path cannot evaluate exactly like GE."""
    checks: list[Check] = []
    for number, expectation in enumerate(suite.get("expectations", []), start=1):
        etype, kwargs = expectation.get("type"), dict(expectation.get("kwargs", {}))
        where = f"suite {suite.get('name')!r}, expectation {number} ({etype})"
        if etype not in ROW_LEVEL:
            raise ValueError(f"{where}: only row-level expectations can be compiled: {sorted(ROW_LEVEL)}")
        unknown = set(kwargs) - _ALLOWED_KWARGS
        if unknown:
            raise ValueError(f"{where}: unsupported arguments {sorted(unknown)} (e.g. 'mostly' is not row-level)")
        if etype.endswith("in_set"):
            # The sets hold strings; a frozenset lookup then matches pandas' isin on object columns.
            kwargs["_set"] = frozenset(kwargs["value_set"])
        if etype.endswith("match_regex"):
            kwargs["_regex"] = re.compile(kwargs["regex"])
        name = f"{etype}:{kwargs['column']}"
        if any(c.name == name for c in checks):
            raise ValueError(f"{where}: {name} appears twice; names must be unique (they are dead-letter reasons)")
        checks.append(Check(name, etype, kwargs["column"], kwargs))
    columns = {c.column for c in checks}
    attributes = sorted({c.split(".", 1)[1] for c in columns if c.startswith((VALUE_PREFIX, TYPE_PREFIX))})
    numeric = frozenset(
        c.column[len(VALUE_PREFIX):] for c in checks
        if c.type == "expect_column_values_to_be_between" and c.column.startswith(VALUE_PREFIX)
    )
    return CompiledSuite(str(suite.get("name")), tuple(checks), tuple(attributes), numeric,
                         _plans(checks, attributes))


def _plans(checks: list[Check], attributes: list[str]) -> dict[str | None, tuple[Check, ...]]:
    """Per attribute, the checks (suite order) whose verdict on its rows is not known in advance.

    On a row of attribute A every other attribute's column is null, and GE passes nulls in every
    expectation but not_be_null: those checks can be skipped without changing any verdict.
    """
    def owner(column: str) -> str | None:
        return column.split(".", 1)[1] if column.startswith((VALUE_PREFIX, TYPE_PREFIX)) else None

    def plan(attribute: str | None) -> tuple[Check, ...]:
        return tuple(c for c in checks if owner(c.column) in (None, attribute)
                     or c.type == "expect_column_values_to_not_be_null")

    plans: dict[str | None, tuple[Check, ...]] = {a: plan(a) for a in attributes}
    plans[None] = plan(None)
    return plans


def suite_path(name_or_path: str) -> Path:
    """A suite name (file under schemas/expectations/) or a path to a suite JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return path
    return SUITES_DIR / f"{name_or_path}.json"


def load_suite_dict(name_or_path: str) -> dict[str, Any]:
    path = suite_path(name_or_path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.json")))
        raise ValueError(f"cannot read expectation suite {path}: {exc.strerror}; suites: {known}") from exc


def load_compiled(name_or_path: str) -> CompiledSuite:
    return compile_suite(load_suite_dict(name_or_path))


def failures(row: dict[str, Any], suite: CompiledSuite) -> list[Check]:
    """The checks one flattened row fails, in suite order."""
    return [c for c in suite.checks if not _passes(c, row.get(c.column))]


def describe_failure(check: Check, row: dict[str, Any]) -> str:
    """A GE-style sentence: expectation, its arguments, the unexpected value and where it came from."""
    args = ", ".join(f"{k}={v!r}" for k, v in check.kwargs.items() if not k.startswith("_") and k != "column")
    attribute = f" (attribute {row.get('attribute')!r})" if row.get("attribute") is not None else ""
    return (f"{check.type}(column={check.column!r}{', ' + args if args else ''}) failed: "
            f"unexpected value {row.get(check.column)!r}{attribute}")


def check_expectations(event: Event, raw: bytes, now_ms: int, suite: CompiledSuite) -> DeadLetter | None:
    """Dead letter (reason = the first failing expectation's name) for a valid event that breaks the suite."""
    found: list[tuple[Check, dict[str, Any]]] = []
    plans = suite.plans
    for row in flatten(event.doc, now_ms, suite, sparse=True):
        for check in plans.get(row["attribute"], plans[None]):
            if not _passes(check, row.get(check.column)):
                found.append((check, row))
    if not found:
        return None
    check, row = found[0]
    detail = describe_failure(check, row)
    if len(found) > 1:
        detail += f"; and {len(found) - 1} more: " + ", ".join(c.name for c, _ in found[1:])
    return dead_letter(raw, event.seq, event.origin, check.name, detail, "expectations")

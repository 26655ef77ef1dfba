"""The compiled form of an expectations suite, as plain data.

Its own module so that settings (which carries a suite to the workers) and expectations (which builds and
evaluates it) both import it, and the layer reads top-down: validate -> settings -> compiled_suite, and
expectations -> validate, compiled_suite.
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Check(NamedTuple):
    """One compiled row-level expectation; `name` is the dead-letter reason (`<type>:<column>`)."""

    name: str
    type: str
    column: str
    kwargs: dict[str, Any]


class CompiledSuite(NamedTuple):
    """A suite reduced to plain, picklable data: engines ship it to their workers with the settings."""

    name: str
    checks: tuple[Check, ...]
    attributes: tuple[str, ...]  # attributes with per-attribute columns
    numeric: frozenset[str]  # attributes whose value column is range-checked: it holds numbers only
    plans: dict[str | None, tuple[Check, ...]]  # attribute -> the checks its rows can fail (see expectations._plans)

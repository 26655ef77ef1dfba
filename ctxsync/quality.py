"""Run an expectation suite with real Great Expectations on a batch of flattened event rows.

This is the slow, authoritative path (GE 1.x, ephemeral context, one pandas batch): `ctxsync validate`
uses it for batch reports, and the tests use it as the oracle for the compiled fast path in
transforms/expectations.py. GE is imported lazily because its import alone takes ~4.5 s.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from transforms.expectations import BASE_COLUMNS, TYPE_PREFIX, VALUE_PREFIX, CompiledSuite


@dataclass
class ExpectationResult:
    """GE's verdict on one expectation over the batch; `unexpected_rows` are row indexes."""

    name: str
    type: str
    column: str
    kwargs: dict[str, Any]
    success: bool
    element_count: int
    unexpected_rows: list[int] = field(default_factory=list)
    unexpected_values: list[Any] = field(default_factory=list)
    exception: str | None = None


def _quiet_ge() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx


def row_columns(suite: CompiledSuite) -> list[str]:
    return list(BASE_COLUMNS) + [p + a for a in suite.attributes for p in (VALUE_PREFIX, TYPE_PREFIX)]


def run_ge(suite_dict: dict[str, Any], compiled: CompiledSuite, rows: list[dict[str, Any]]) -> list[ExpectationResult]:
    """Validate rows with GE (result_format COMPLETE) and return one result per expectation, suite order."""
    gx = _quiet_ge()
    import pandas as pd

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    frame = pd.DataFrame(rows, columns=row_columns(compiled)).astype(object)
    frame = frame.where(frame.notna(), None)
    batch = (
        context.data_sources.add_pandas("ctxsync")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(
        name=suite_dict["name"],
        expectations=[
            gx.expectations.registry.get_expectation_impl(e["type"])(**e["kwargs"])
            for e in suite_dict["expectations"]
        ],
    )
    outcome = batch.validate(suite, result_format="COMPLETE")
    by_name = {f"{r.expectation_config.type}:{r.expectation_config.kwargs['column']}": r for r in outcome.results}
    results = []
    for check in compiled.checks:
        res = by_name[check.name]  # GE does not keep suite order
        info = res.exception_info or {}
        results.append(ExpectationResult(
            check.name, check.type, check.column,
            {k: v for k, v in check.kwargs.items() if not k.startswith("_")},
            bool(res.success), int(res.result.get("element_count", len(rows))),
            [int(i) for i in res.result.get("unexpected_index_list") or []],
            list(res.result.get("unexpected_list") or []),
            info.get("exception_message") if info.get("raised_exception") else None,
        ))
    return results

"""Beam and PyFlink in one Python process.

PyFlink's Python operators are built on Beam's SDK harness. Importing its Beam glue
(`pyflink.fn_execution.beam.beam_operations`, which a PyFlink job loads into the submitting process)
re-registers two of Beam's standard URNs process-wide (measured with PyFlink 2.3 over Beam 2.61):

- the ParDo transform URN -> PyFlink's operation factory: a Beam pipeline run afterwards fails with
  `DecodeError: Error parsing message with type '...UserDefinedDataStreamFunction'`;
- the length-prefix coder URN -> a coder that writes no length prefix: the FnApiRunner then loops
  decoding the same bytes and eats all memory (seen: 22 GB, killed by the OOM killer).

Both happen in any process that runs a Flink job and then a Beam pipeline (a test session, a benchmark).
`beam_urns()` puts Beam's own registrations in place for one Beam run and restores whatever was there
before, so later Flink jobs in the process keep working.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apache_beam.coders.coders import Coder, LengthPrefixCoder
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.worker import bundle_processor


def _length_prefix_from_runner_api(unused_payload: Any, components: list[Coder], unused_context: Any) -> Coder:
    return LengthPrefixCoder(*components)


def _beams_own() -> list[tuple[dict[str, Any], str, Any]]:
    """(registry, urn, Beam's registration) for each URN PyFlink overrides."""
    return [
        (bundle_processor.BeamTransformFactory._known_urns, common_urns.primitives.PAR_DO.urn,
         (bundle_processor.create_par_do, beam_runner_api_pb2.ParDoPayload)),
        (Coder._known_urns, common_urns.coders.LENGTH_PREFIX.urn, (None, _length_prefix_from_runner_api)),
    ]


@contextmanager
def beam_urns() -> Iterator[None]:
    """Run the block with Beam's own ParDo factory and length-prefix coder (the registries are global;
    Beam has no public API to look them up or restore them)."""
    saved = []
    for registry, urn, own in _beams_own():
        saved.append((registry, urn, registry.get(urn)))
        registry[urn] = own
    try:
        yield
    finally:
        for registry, urn, previous in saved:
            if previous is not None:
                registry[urn] = previous

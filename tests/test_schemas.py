"""The Avro schemas and the validator agree: every accepted event has an Avro form that round-trips,
every output record fits its schema, and the schema refuses what the validator refuses."""
import io
import json

import fastavro
import pytest
from fastavro.validation import validate

from ctxsync.schemas import load_schemas
from transforms.avro_form import from_avro, to_avro
from transforms.model import Event
from transforms.validate import parse_event
from tests.helpers import DELETE, NOW_MS, SAMPLE, SETTINGS, event, raw, read_jsonl, reference_files

KNOWN = {"eventId", "timestamp", "eventType", "source", "contextDelta", "propagationRules"}


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    reference_files(SAMPLE, out)
    return out


def test_every_accepted_sample_event_fits_the_event_schema_and_round_trips(sample_out):
    schema = load_schemas()["context_event"]
    history = read_jsonl(sample_out / "history.jsonl")
    assert len(history) > 2000
    for record in history:
        doc = {k: v for k, v in record.items() if k in KNOWN}
        datum = to_avro(doc)
        assert validate(datum, schema, raise_errors=False), doc["eventId"]
        assert from_avro(datum) == doc
        again = parse_event(json.dumps(from_avro(datum)).encode(), 1, "x", NOW_MS + 10**10, SETTINGS)
        assert isinstance(again, Event)


@pytest.mark.parametrize("name, file", [("context_view", "views.jsonl"), ("violation", "violations.jsonl"),
                                        ("dead_letter", "dead_letter.jsonl")])
def test_output_records_fit_their_schemas(sample_out, name, file):
    schema = load_schemas()[name]
    records = read_jsonl(sample_out / file)
    assert records
    for record in records:
        assert validate(record, schema, raise_errors=False), record


def test_history_records_fit_their_schema(sample_out):
    schema = load_schemas()["context_history"]
    for record in read_jsonl(sample_out / "history.jsonl")[:300]:
        datum = {**to_avro({k: v for k, v in record.items() if k in KNOWN}),
                 **{k: record[k] for k in ("aggregates", "applied", "stale", "violation", "conflict")}}
        assert validate(datum, schema, raise_errors=False)


@pytest.mark.parametrize("doc", [
    event(contextDelta__userId=DELETE), event(contextDelta__updates__segment__confidence="high"),
    event(propagationRules__priority="urgent"), event(contextDelta__updates__segment__current=[1]),
])
def test_schema_refuses_what_the_validator_refuses(doc):
    assert not isinstance(parse_event(raw(doc), 1, "x", NOW_MS, SETTINGS), Event)
    with pytest.raises(Exception):  # the Avro writer refuses the datum
        fastavro.schemaless_writer(io.BytesIO(), load_schemas()["context_event"], to_avro(doc))

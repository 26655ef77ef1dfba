"""The Beam runner: file reading that matches the reference line for line, and runs that equal it."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from pipelines.beam.runner import fold_user, plan_chunks
from pipelines.reference import read_lines
from tests.helpers import SETTINGS, event, raw, read_jsonl
from tests.runs import assert_same_files, run_with
from transforms.ingest import ingest, is_blank

pieces = st.lists(st.sampled_from([b"a", b"{}", b" ", b"\n", b"\r", b"\r\n", b"\n\n", b"\xff", b"xyz"]),
                  max_size=40)


@settings(max_examples=300)
@given(pieces, st.integers(1, 8))
def test_chunks_split_lines_exactly_like_the_reference(tmp_path_factory, parts, chunk_bytes):
    path = tmp_path_factory.mktemp("chunks") / "in.jsonl"
    data = b"".join(parts)
    path.write_bytes(data)
    got = []
    for chunk in plan_chunks(path, chunk_bytes):
        block = data[chunk.offset:chunk.offset + chunk.length]
        got += [(n, line) for n, line in enumerate(block.splitlines(), chunk.first_line) if not is_blank(line)]
    assert got == list(read_lines(path))


def test_fold_sorts_by_seq_and_keeps_only_the_last_view_per_aggregate():
    docs = [event(eventId=f"e{i}", timestamp=f"2026-11-17T10:00:0{i}Z",
                  contextDelta__updates={"segment": {"current": f"v{i}", "confidence": 0.5},
                                         "riskTolerance": {"current": i, "confidence": 0.5}})
            for i in range(4)]
    events = [ingest(raw(d), seq, f"t:{seq}", 1_795_000_000_000, SETTINGS)[1] for seq, d in enumerate(docs, 1)]
    _, outputs = fold_user(None, reversed(events), SETTINGS)
    history = [line for line in outputs if line[0] == "H"]
    assert [json.loads(h.split("\t", 2)[2])["eventId"] for h in history] == ["e0", "e1", "e2", "e3"]
    views = [line for line in outputs if line[0] == "V"]
    assert sorted(v.split("\t")[1] for v in views) == ['"behavioral:u1"', '"financial:u1"']
    assert all(v.startswith("V4\t") for v in views)


@pytest.mark.beam
def test_bad_lines_are_dead_lettered_with_their_line_numbers_and_the_job_keeps_going(tmp_path):
    good = [raw(event(eventId=f"ok-{i}", timestamp=f"2026-11-17T10:00:0{i}Z")) for i in range(4)]
    lines = [good[0], b'{"eventId": "broken", ', good[1], b'{"x": "\xff\xfe"}', b"", b"   ",
             b'{"eventId": "nan", "confidence": NaN}', good[2] + b"\r", good[3], good[3]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\r\n".join(lines))
    summary = run_with("beam", path, tmp_path / "beam")
    run_with("reference", path, tmp_path / "ref")
    assert_same_files(tmp_path / "beam", tmp_path / "ref")
    # `...}\r\r\n` ends line 8 at \r and makes line 9 blank, so the last two events are lines 10 and 11
    assert (summary.read, summary.accepted, summary.duplicates, summary.dead_lettered) == (8, 4, 1, 3)
    dead = read_jsonl(tmp_path / "beam" / "dead_letter.jsonl")
    assert [(d["reason"], d["origin"]) for d in dead] == [
        ("invalid_json", f"{path}:2"), ("not_utf8", f"{path}:4"), ("invalid_json", f"{path}:7")]
    assert dead[1]["rawEncoding"] == "base64"


@pytest.mark.beam
def test_cli_runs_the_beam_runner(tmp_path, capsys):
    from ctxsync.cli import main

    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(raw(event(eventId=f"e{i}")) for i in range(3)) + b"\n")
    assert main(["run", "context-sync", "--runner", "beam", "--input", str(path), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["duplicates"] == 0
    assert "holds" in capsys.readouterr().out


@pytest.mark.beam
def test_beam_runs_after_pyflink_took_over_beams_urns_and_gives_them_back(tmp_path):
    from apache_beam.coders.coders import Coder
    from apache_beam.portability import common_urns
    from apache_beam.runners.worker.bundle_processor import BeamTransformFactory

    import pyflink.fn_execution.beam.beam_operations  # noqa: F401  (what a Flink job in this process loads)

    par_do, length_prefix = common_urns.primitives.PAR_DO.urn, common_urns.coders.LENGTH_PREFIX.urn
    flinks = BeamTransformFactory._known_urns[par_do], Coder._known_urns[length_prefix]
    assert flinks[0][0].__module__.startswith("pyflink")
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(raw(event(eventId=f"e{i}", timestamp=f"2026-11-17T10:00:0{3 - i}Z"))
                                for i in range(3)))
    summary = run_with("beam", path, tmp_path / "beam")
    run_with("reference", path, tmp_path / "ref")
    assert_same_files(tmp_path / "beam", tmp_path / "ref")
    assert summary.ordering_violations == 2
    assert (BeamTransformFactory._known_urns[par_do], Coder._known_urns[length_prefix]) == flinks


@pytest.mark.beam
def test_two_sdk_worker_processes_give_the_same_files(tmp_path):
    from ctxsync.generate import GeneratorOptions, generate_lines

    path = tmp_path / "gen.jsonl"
    path.write_bytes(b"\n".join(generate_lines(GeneratorOptions(events=600, users=40, seed=5, late_rate=0.1))))
    run_with("reference", path, tmp_path / "ref")
    summary = run_with("beam", path, tmp_path / "beam", parallelism=2)
    assert_same_files(tmp_path / "beam", tmp_path / "ref")
    assert summary.read == 600 and summary.ordering_violations > 0

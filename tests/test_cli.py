"""The `ctxsync` command line: run, --set, jobs, generate, and clear errors."""
import json
import subprocess
import sys

import pytest

from ctxsync.cli import main
from tests.helpers import ROOT, SAMPLE, read_jsonl

JOBS = str(ROOT / "jobs.yaml")


def test_run_on_reference_writes_the_contract_files_and_prints_a_summary(tmp_path, capsys):
    code = main(["run", "context-sync", "--runner", "reference", "--jobs", JOBS,
                 "--input", str(SAMPLE), "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"{summary['read']:,}" in printed and "holds" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dead_letter.jsonl", "history.jsonl", "summary.json", "views.jsonl", "violations.jsonl"]
    keys = [v["key"] for v in read_jsonl(tmp_path / "views.jsonl")]
    assert keys == sorted(keys) and len(keys) == summary["views"]


def test_set_conflict_policy_reject_changes_the_outcome(tmp_path):
    args = ["run", "context-sync", "--runner", "reference", "--jobs", JOBS, "--input", str(SAMPLE)]
    assert main(args + ["--out", str(tmp_path / "lww")]) == 0
    assert main(args + ["--out", str(tmp_path / "reject"), "--set", "conflict_policy=reject"]) == 0
    lww = json.loads((tmp_path / "lww" / "summary.json").read_text())
    reject = json.loads((tmp_path / "reject" / "summary.json").read_text())
    assert lww["conflicts"] > 0
    conflicts = read_jsonl(tmp_path / "reject" / "violations.jsonl")
    assert {v["policy"] for v in conflicts if v["kind"] == "conflict"} == {"reject"}
    assert (tmp_path / "lww" / "views.jsonl").read_bytes() != (tmp_path / "reject" / "views.jsonl").read_bytes()
    assert reject["read"] == lww["read"]


def test_configuration_errors_exit_2_with_a_clear_message(tmp_path, capsys):
    bad = tmp_path / "jobs.yaml"
    bad.write_text((ROOT / "jobs.yaml").read_text().replace("parallelism: 1", "parallelism: many"))
    code = main(["run", "context-sync", "--jobs", str(bad), "--input", str(SAMPLE), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "jobs.context-sync.parallelism" in err and "jobs.yaml:" in err
    assert main(["run", "nope", "--jobs", JOBS, "--input", str(SAMPLE), "--out", str(tmp_path)]) == 2
    assert main(["run", "context-sync", "--jobs", JOBS, "--input", "missing.jsonl", "--out", str(tmp_path)]) == 2
    assert main(["run", "context-sync", "--jobs", JOBS, "--input", str(SAMPLE), "--out", str(tmp_path),
                 "--set", "conflict_policy=sometimes"]) == 2


def test_an_unreachable_flink_cluster_exits_1_naming_the_command(capsys):
    for argv in (["status"], ["savepoint", "0" * 32], ["cancel", "0" * 32]):
        assert main([*argv, "--jobmanager", "127.0.0.1:1"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"ctxsync {argv[0]}: cannot reach Flink at http://127.0.0.1:1")


def test_jobs_lists_jobs_and_steps(capsys):
    assert main(["jobs", "--jobs", JOBS]) == 0
    out = capsys.readouterr().out
    assert "context-sync" in out and "dedup" in out and "conflicts" in out and "embedded" in out


def test_generate_is_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for path, seed in ((a, "5"), (b, "5"), (c, "6")):
        assert main(["generate", "--events", "500", "--users", "20", "--seed", seed, str(path)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert len(a.read_bytes().splitlines()) == 500
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects a rate outside [0, 1]
        main(["generate", "--events", "5", "--invalid-rate", "2", str(a)])
    assert exit_info.value.code == 2


@pytest.mark.flink
def test_run_command_on_flink_end_to_end(tmp_path):
    """The installed console script, on the default runner (local Flink), as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "ctxsync.cli", "run", "context-sync", "--jobs", JOBS,
         "--input", str(SAMPLE), "--out", str(tmp_path), "--parallelism", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = json.loads((ROOT / "sample_data" / "summary.json").read_text())
    assert json.loads((tmp_path / "summary.json").read_text()) == expected
    assert "read = accepted + duplicates + dead_lettered: holds" in result.stdout
    assert "context-sync [flink]" in result.stderr  # progress lines

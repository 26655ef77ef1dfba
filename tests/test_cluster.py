"""context-sync on a real Flink standalone cluster: submit, checkpoints, TaskManager crashes, savepoints."""
from __future__ import annotations

import pytest

from ctxsync import cli
from ctxsync import flink_client as fc
from tests.fixtures_cluster import flink_cluster  # noqa: F401  (fixture)
from tests.helpers import SAMPLE
from tests.runs import assert_same_files, run_with

pytestmark = pytest.mark.cluster


def test_file_profile_submitted_with_the_cli_equals_reference(flink_cluster, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cluster"
    code = cli.main(["submit", "context-sync", "--profile", "embedded", "--input", str(SAMPLE),
                     "--out", str(out), "--parallelism", "2", "--wait"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    job_id = printed.split("as job ")[1].split()[0]
    assert fc.job_state(flink_cluster.address, job_id) == "FINISHED"
    # part files were committed by checkpoints on the cluster (none left in-progress), then merged
    assert not (out / "_parts").exists()
    run_with("reference", SAMPLE, tmp_path / "ref")
    assert_same_files(out, tmp_path / "ref")
    checkpoints = flink_cluster.rest(f"/jobs/{job_id}/checkpoints")
    assert checkpoints["counts"]["completed"] >= 1

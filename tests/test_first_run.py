"""The README's local flow, typed as written: `ctxsync dev up` with the relative default dev dir, replay,
run, then read the outputs at once (history searchable, views in Redis) without waiting."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SAMPLE

pytestmark = pytest.mark.servers


def ctxsync(*args: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ctxsync.cli", *args], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user who never set CTXSYNC_DEV_DIR (the tests' own fixtures may have)."""
    env = {k: v for k, v in os.environ.items() if k != "CTXSYNC_DEV_DIR"}
    return {**env, **extra}


def test_readme_local_flow_from_the_project_folder(tmp_path):
    project = tmp_path / "project"  # a project folder: jobs.yaml and the sample, default `.ctxsync/dev`
    (project / "sample_data").mkdir(parents=True)
    shutil.copy(ROOT / "jobs.yaml", project / "jobs.yaml")
    shutil.copy(SAMPLE, project / "sample_data" / SAMPLE.name)
    env = user_env()
    up = ctxsync("dev", "up", cwd=project, env=env, timeout=120)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert (project / ".ctxsync" / "dev" / "servers.json").is_file()
        assert ctxsync("replay", "sample_data/context_events.jsonl", cwd=project, env=env).returncode == 0
        run = ctxsync("run", "context-sync", "--profile", "local", cwd=project, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        history = ctxsync("history", "--user", "user-00042", "--attr", "segment", cwd=project, env=env)
        assert history.returncode == 0, history.stdout + history.stderr  # searchable as soon as run returns
        assert "segment=" in history.stdout
        view = ctxsync("view", "user-00042", cwd=project, env=env)
        assert view.returncode == 0 and "behavioral:user-00042" in view.stdout
    finally:
        ctxsync("dev", "down", "--reset", cwd=project, env=env, timeout=120)
    assert not (project / ".ctxsync" / "dev").exists()


def test_dev_up_with_a_relative_dev_dir_from_another_folder(tmp_path):
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    env = user_env(CTXSYNC_DEV_DIR="relative/dev")
    try:
        up = ctxsync("dev", "up", cwd=cwd, env=env, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        status = ctxsync("dev", "status", cwd=cwd, env=env)
        assert status.returncode == 0 and status.stdout.count("ready") == 3, status.stdout  # redis, kafka, noida
        assert (cwd / "relative" / "dev" / "redis").is_dir()
    finally:
        ctxsync("dev", "down", cwd=cwd, env=env, timeout=120)
    assert ctxsync("dev", "status", cwd=cwd, env=env).returncode == 1  # all stopped

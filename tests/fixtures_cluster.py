"""A real Flink standalone session cluster on loopback for the `cluster` tests (ctxsync/cluster.py).

Module-scoped: starting one costs ~15-60 s and ~1.5 GB, so the tests of a module share it. It is
always stopped in teardown, also when a test or the start itself fails, and its logs are kept in the
pytest temp dir for post-mortems.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ctxsync.cluster import Cluster, ClusterSpec


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("flink-cluster")
    previous = os.environ.get("CTXSYNC_CLUSTER_HOME")
    os.environ["CTXSYNC_CLUSTER_HOME"] = str(home)  # `ctxsync submit` without --jobmanager finds it
    cluster = Cluster(home.resolve(), ClusterSpec(taskmanagers=1, slots=2, checkpoint_interval="1s"))
    try:
        cluster.up(timeout_s=180)
        yield cluster
    finally:
        cluster.down()
        if previous is None:
            os.environ.pop("CTXSYNC_CLUSTER_HOME", None)
        else:
            os.environ["CTXSYNC_CLUSTER_HOME"] = previous

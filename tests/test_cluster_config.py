"""The loopback cluster's generated configuration and the submit command line, without starting Flink."""
from __future__ import annotations

import yaml

from ctxsync import cli
from ctxsync.cluster import Cluster, ClusterSpec, cluster_config
from ctxsync.metric_names import FLINK_REPORTER_FACTORY
from pipelines.flink.client import ENTRY, SHIPPED_PACKAGES, Submission, run_command
from pipelines.flink import main as flink_main
from tests.helpers import SAMPLE


def test_generated_conf_binds_loopback_only_and_needs_no_ssh(tmp_path):
    cluster = Cluster(tmp_path, ClusterSpec(taskmanagers=2))
    cluster.write_conf()
    conf = yaml.safe_load((tmp_path / "conf" / "config.yaml").read_text())
    for key in ("jobmanager.bind-host", "jobmanager.rpc.address", "taskmanager.bind-host", "taskmanager.host",
                "rest.address", "rest.bind-address"):
        assert conf[key] == "127.0.0.1", key
    assert conf["rest.port"] == cluster.spec.rest_port > 0 and conf["jobmanager.rpc.port"] == cluster.spec.rpc_port > 0
    assert (tmp_path / "conf" / "masters").read_text() == f"127.0.0.1:{cluster.spec.rest_port}\n"
    assert (tmp_path / "conf" / "workers").read_text() == "127.0.0.1\n127.0.0.1\n"
    # thread mode on a cluster: pemja parent-first and flink-python on the system classpath
    assert conf["classloader.parent-first-patterns.additional"] == "pemja."
    jars = {p.name for p in (tmp_path / "lib").iterdir()}
    assert any(j.startswith("flink-python-") for j in jars) and any(j.startswith("flink-dist-") for j in jars)
    assert all((tmp_path / "lib" / j).resolve().is_file() for j in jars)
    assert conf["execution.checkpointing.dir"] == (tmp_path / "checkpoints").as_uri()
    assert conf["env.pid.dir"] == str(tmp_path / "pids")  # never /tmp, shared with other users' clusters
    again = Cluster.load(tmp_path)  # ports are kept for later commands
    assert again.spec == cluster.spec and again.address == cluster.address


def test_prometheus_reporter_is_off_by_default_and_else_gives_each_process_a_port_of_a_range(tmp_path):
    assert not any(k.startswith("metrics.") for k in cluster_config(tmp_path, ClusterSpec()))
    conf = cluster_config(tmp_path, ClusterSpec(taskmanagers=2, metrics_port=9300))
    assert conf["metrics.reporter.prom.factory.class"] == FLINK_REPORTER_FACTORY
    assert conf["metrics.reporter.prom.port"] == "9300-9302"  # the JobManager and two TaskManagers
    assert conf["metrics.reporter.prom.filterLabelValueCharacters"] == "false"  # le="+Inf" survives


def test_submit_command_ships_the_packages_and_passes_the_job_arguments(tmp_path):
    sub = Submission("context-sync", "local", "127.0.0.1:8081", parallelism=2, from_savepoint="file:///sp/1",
                     overrides=("profiles.local.source.bounded=false",), dev_dir=tmp_path)
    cmd = run_command(sub)
    assert cmd[1:5] == ["run", "-d", "-m", "127.0.0.1:8081"]
    assert cmd[cmd.index("-s") + 1] == "file:///sp/1" and cmd[cmd.index("-p") + 1] == "2"
    assert cmd[cmd.index("--python") + 1] == str(ENTRY)
    shipped = cmd[cmd.index("-pyfs") + 1].split(",")
    assert [p.rsplit("/", 1)[1] for p in shipped] == list(SHIPPED_PACKAGES)
    args = flink_main.parse_args(cmd[cmd.index("-pyfs") + 2:])
    assert (args.job, args.profile, args.parallelism) == ("context-sync", "local", 2)
    assert args.overrides == ["profiles.local.source.bounded=false"] and args.dev_dir == tmp_path.resolve()


def test_submit_and_status_without_a_cluster_are_configuration_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXSYNC_CLUSTER_HOME", str(tmp_path / "none"))
    out = tmp_path / "out"
    assert cli.main(["submit", "context-sync", "--profile", "embedded", "--input", str(SAMPLE), "--out", str(out)]) == 2
    assert "ctxsync cluster up" in capsys.readouterr().err
    assert cli.main(["submit", "context-sync", "--profile", "embedded", "--out", str(out)]) == 2
    assert "--input" in capsys.readouterr().err
    assert cli.main(["status", "--jobmanager", "nohost"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert cli.main(["submit", "context-sync", "--profile", "nope", "--jobmanager", "127.0.0.1:1"]) == 2
    assert cli.main(["cluster", "status", "--home", str(tmp_path / "none")]) == 3

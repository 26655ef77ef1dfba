"""A configured PyFlink environment: the settings every ctxsync job needs on this engine.

Ground facts: the Python worker must run the interpreter that runs us (`python.executable`), thread mode
needs site-packages on `python.pythonpath` (pemja), and logs belong outside the venv (FLINK_LOG_DIR).
"""
from __future__ import annotations

import os
import site
import sys
from collections.abc import Iterable
from pathlib import Path

from ctxsync import paths
from ctxsync.metric_names import FLINK_REPORTER_FACTORY
import transforms

PROJECT_ROOT = Path(transforms.__file__).resolve().parent.parent
DEFAULT_LOG_DIR = paths.home() / "flink-logs"


def python_path() -> str:
    """Where the worker finds pyflink, pemja and our packages (an editable install is not a site dir)."""
    paths = [str(PROJECT_ROOT), *site.getsitepackages()]
    return os.pathsep.join(dict.fromkeys(paths))


def flink_configuration(job_flink: dict[str, str], jars: Iterable[str] = ()) -> dict[str, str]:
    """The job's `flink:` keys over ctxsync's required defaults."""
    conf = {
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "python.execution-mode": "thread",
        "python.pythonpath": python_path(),
        "pipeline.object-reuse": "true",
        "python.state.cache-size": "10000",
    }
    conf.update(job_flink)
    jar_urls = [f"file://{Path(j).resolve()}" for j in jars]
    if jar_urls:
        conf["pipeline.jars"] = ";".join(jar_urls)
    return conf


def prometheus_reporter(port: int) -> dict[str, str]:
    """Flink settings that expose the job's metrics for Prometheus on `port` (0: none). The reporter has
    no host option: it listens on every interface. Label values are kept as they are, so a histogram's
    `le="+Inf"` stays readable by PromQL (the default filter would turn it into `_Inf`)."""
    if not port:
        return {}
    return {"metrics.reporter.prom.factory.class": FLINK_REPORTER_FACTORY, "metrics.reporter.prom.port": str(port),
            "metrics.reporter.prom.filterLabelValueCharacters": "false"}


def reporter_on_classpath() -> None:
    """Put the Prometheus reporter jar shipped in pyflink/plugins on the local JVM's classpath.

    The local mini-cluster creates its reporters without a plugin manager, so plugins/ is never read
    there ("could not be found for reporter prom. Available factories: []"); PyFlink's local gateway
    appends $HADOOP_CLASSPATH to its classpath. Effective only before this process's first Flink call
    starts the gateway. A standalone cluster loads the jar as a plugin instead (FLINK_PLUGINS_DIR)."""
    import pyflink

    jars = sorted((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus").glob("*.jar"))
    current = [p for p in os.environ.get("HADOOP_CLASSPATH", "").split(os.pathsep) if p]
    missing = [str(j) for j in jars if str(j) not in current]
    if missing:
        os.environ["HADOOP_CLASSPATH"] = os.pathsep.join([*current, *missing])


def flink_environment(job_flink: dict[str, str], parallelism: int, jars: Iterable[str] = ()):
    """A StreamExecutionEnvironment (local mini-cluster unless submitted to a cluster)."""
    os.environ.setdefault("FLINK_LOG_DIR", str(DEFAULT_LOG_DIR))
    reporter_on_classpath()
    Path(os.environ["FLINK_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    for key, value in flink_configuration(job_flink, jars).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env

"""deploy/flink/ cannot run here (no Docker engine, no Kubernetes): check what can be checked without them.

config.yaml is read by Flink's own config parser; the compose file by `docker compose config` (or the
docker-compose v1 client); every ctxsync command line inside the manifests is parsed by ctxsync's own
argument parser, so a renamed option breaks this test rather than a deployment.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ctxsync import cli, jars
from ctxsync.cluster import ClusterSpec, cluster_config, flink_home
from ctxsync.config import load_jobs
from pipelines.flink import main as flink_main
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy" / "flink"
K8S = DEPLOY / "k8s"
IMAGE = "ctxsync-flink:0.1.0"
POM = DEPLOY / "pom.xml"                      # the connector jars: ctxsync/jars.py and the image resolve it
JARS_DIR = "/opt/ctxsync/jars"                # where the image holds them (CTXSYNC_JARS_DIR)
MVN = {"dependency:copy-dependencies", "-DincludeScope=runtime", "-Dmdep.stripVersion=true"}


def flatten(node: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def deploy_config() -> dict[str, object]:
    return flatten(yaml.safe_load((DEPLOY / "config.yaml").read_text()))


def flink_version() -> str:
    from pyflink.version import __version__

    return __version__


def pom() -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """deploy/flink/pom.xml: its properties and its dependencies as (groupId, artifactId, version), the
    ${...} properties filled in."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(POM).getroot()
    props = {el.tag.split("}", 1)[1]: (el.text or "").strip() for el in root.find("m:properties", ns)}
    deps = []
    for dep in root.findall("m:dependencies/m:dependency", ns):
        version = re.sub(r"\$\{([^}]+)\}", lambda m: props[m.group(1)], dep.findtext("m:version", "", ns).strip())
        deps.append((dep.findtext("m:groupId", "", ns).strip(), dep.findtext("m:artifactId", "", ns).strip(), version))
    return props, deps


def pom_jar_names(monkeypatch) -> list[str]:
    """The jars the pom resolves to, in ctxsync.jars' order (connector, kafka-clients, then the rest: zstd-jni):
    the real cache, which tests/test_jars.py checks against the pom's versions."""
    monkeypatch.delenv("CTXSYNC_JARS_DIR", raising=False)
    names = [p.name for p in jars.kafka_jars()]
    _props, deps = pom()
    assert [f"{artifact}.jar" for _group, artifact, _version in deps] == names[:len(deps)] == list(jars.JARS)
    return names


# -- config.yaml ---------------------------------------------------------------------------------------

def test_config_promises_exactly_once_with_durable_state_restarts_and_metrics():
    conf = deploy_config()
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert re.fullmatch(r"\d+(ms|s|min)", str(conf["execution.checkpointing.interval"]))
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
        assert str(conf[key]).startswith(("file:///flink-data/", "s3://")), key
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["restart-strategy.type"] == "exponential-delay"
    assert conf["metrics.reporter.prom.factory.class"] == "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    assert (flink_home() / "plugins" / "metrics-prometheus").is_dir()  # the reporter ships with Flink
    # what thread mode needs on any cluster (ground facts), the same as on the loopback cluster
    assert conf["classloader.parent-first-patterns.additional"] == "pemja."
    assert conf["python.execution-mode"] == "thread"


def test_config_uses_the_option_names_the_loopback_cluster_runs_with():
    """Keys shared with ctxsync/cluster.py are proven on a real cluster by tests/test_cluster.py; the
    others must be on this short list of documented Flink 2.x options (a guard against typos)."""
    tested = set(cluster_config(Path("/tmp/x"), ClusterSpec(rest_port=1, rpc_port=2)))
    documented = {
        "execution.checkpointing.min-pause", "execution.checkpointing.timeout",
        "execution.checkpointing.tolerable-failed-checkpoints", "execution.checkpointing.max-concurrent-checkpoints",
        "execution.checkpointing.incremental", "state.backend.rocksdb.memory.managed",
        "restart-strategy.exponential-delay.backoff-multiplier", "restart-strategy.exponential-delay.jitter-factor",
        "restart-strategy.exponential-delay.reset-backoff-threshold", "metrics.reporters",
        "metrics.reporter.prom.factory.class", "metrics.reporter.prom.port", "python.execution-mode",
        "metrics.reporter.prom.filterLabelValueCharacters",  # used by every local Kafka run (test_job_metrics)
    }
    unknown = set(deploy_config()) - tested - documented
    assert not unknown, f"unverified option names in deploy/flink/config.yaml: {sorted(unknown)}"


def test_flinks_own_parser_reads_config_yaml(tmp_path):
    shutil.copy(DEPLOY / "config.yaml", tmp_path / "config.yaml")
    bin_dir = flink_home() / "bin"
    script = (f"source {shlex.quote(str(bin_dir / 'bash-java-utils.sh'))}; "
              f"setJavaRun {shlex.quote(str(tmp_path / 'config.yaml'))}; "
              f"updateAndGetFlinkConfiguration {shlex.quote(str(tmp_path))} {shlex.quote(str(bin_dir))} "
              f"{shlex.quote(str(flink_home() / 'lib'))} -flatten")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    parsed = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert parsed["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert parsed["restart-strategy.type"] == "exponential-delay"
    assert len(parsed) == len(deploy_config())


# -- Dockerfile ----------------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """The Dockerfile's build stages: (FROM arguments, the stage's rows after FROM)."""
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for word, rest in dockerfile():
        if word == "FROM":
            found.append((rest, []))
        elif found:
            found[-1][1].append((word, rest))
    return found


def test_dockerfile_builds_the_image_the_manifests_run():
    rows = dockerfile()
    known = {"FROM", "ARG", "USER", "RUN", "ADD", "COPY", "WORKDIR", "ENV"}
    assert {word for word, _ in rows} <= known
    args = dict(a.split("=", 1) for w, a in rows if w == "ARG" and "=" in a)
    assert args["FLINK_VERSION"] == flink_version()  # image Flink == the pyflink we test with
    assert f'apache-flink=={flink_version()}' in (ROOT / "pyproject.toml").read_text()
    assert stages()[-1][0] == "flink:${FLINK_VERSION}-scala_2.12-java17"  # the image is the last stage
    assert rows[-1] == ("USER", "flink")  # never run Flink as root
    for word, rest in rows:
        if word == "COPY" and "--from=" not in rest:
            *sources, _target = [part for part in rest.split() if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    text = (DEPLOY / "Dockerfile").read_text()
    conf = deploy_config()
    assert str(conf["python.executable"]).startswith("/opt/ctxsync/venv/") and "python3 -m venv /opt/ctxsync/venv" in text
    assert "/opt/flink/opt/flink-python-${FLINK_VERSION}.jar /opt/flink/lib/" in text  # thread mode
    assert f"CTXSYNC_JARS_DIR={JARS_DIR}" in text


def test_dockerfile_resolves_the_jars_with_the_pom_and_the_command_of_ctxsync_jars(monkeypatch):
    """One source of truth: a build stage runs ctxsync/jars.py's mvn command on deploy/flink/pom.xml and the
    image takes every jar it resolves (the connector, kafka-clients, zstd-jni) into CTXSYNC_JARS_DIR."""
    import inspect

    names = pom_jar_names(monkeypatch)
    assert "zstd-jni.jar" in names  # kafka-clients' zstd codec: nothing in Flink's lib/ has it
    (*builders, (_image, final)) = stages()
    (jar_stage,) = [(base, body) for base, body in builders if re.search(r"\bAS\s+jars$", base, re.I)]
    body = jar_stage[1]
    copies = [rest.split() for word, rest in body if word == "COPY"]
    assert ["deploy/flink/pom.xml", "./pom.xml"] in copies, copies
    (mvn,) = [rest for word, rest in body if word == "RUN" and rest.startswith("mvn ")]
    assert MVN <= set(mvn.split()), mvn
    resolve = inspect.getsource(jars._resolve)
    assert all(f'"{flag}"' in resolve for flag in MVN), "the image and ctxsync.jars run different mvn commands"
    out = re.search(r"-DoutputDirectory=(\S+)", mvn).group(1).rstrip("/")
    for name in names:  # the build fails unless mvn produced every jar
        assert f"test -f {out}/{name}" in mvn, name
    assert ("COPY", f"--from=jars --chown=flink:flink {out}/ {JARS_DIR}/") in final
    assert any(word == "ENV" and f"CTXSYNC_JARS_DIR={JARS_DIR}" in rest for word, rest in final)
    text = (DEPLOY / "Dockerfile").read_text()
    assert "repo1.maven.org" not in text and not re.search(r"KAFKA_(CONNECTOR|CLIENTS)_VERSION", text)


def test_no_deploy_file_names_other_connector_or_client_versions_than_the_pom():
    """Stale versions (a downloaded jar, a comment, an image) are caught wherever they are in deploy/."""
    props, deps = pom()
    versions = {artifact: version for _group, artifact, version in deps}
    assert versions == {"flink-connector-kafka": props["connector.version"], "kafka-clients": props["kafka.version"]}
    pattern = re.compile(r"\b(flink-connector-kafka|kafka-clients)[-:/=](\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?)")
    for path in sorted((ROOT / "deploy").rglob("*")):
        if path.is_file() and path.suffix in {"", ".xml", ".yaml", ".yml", ".md", ".properties"}:
            for artifact, version in pattern.findall(path.read_text()):
                assert version == versions[artifact], f"{path.relative_to(ROOT)}: {artifact} {version}"


# -- Kubernetes (Flink Kubernetes Operator) ------------------------------------------------------------

def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_every_manifest_is_a_named_object_in_the_ctxsync_namespace():
    docs = k8s_documents()
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "FlinkDeployment", "Deployment", "Secret"}
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ctxsync", doc["metadata"]


def test_flink_deployment_runs_flink_main_with_savepoint_upgrades():
    (deployment,) = [d for d in k8s_documents() if d["kind"] == "FlinkDeployment"]
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1"
    spec = deployment["spec"]
    assert spec["image"] == IMAGE and spec["flinkVersion"].startswith("v2_")
    job = spec["job"]
    assert job["upgradeMode"] == "savepoint" and job["state"] == "running"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["jarURI"] == f"local:///opt/flink/lib/flink-python-{flink_version()}.jar"
    args = job["args"]
    assert args[:2] == ["-py", "/opt/ctxsync/pipelines/flink/main.py"]
    job_args = flink_main.parse_args(args[4:])  # what flink_main.py will see
    assert job_args.job in load_jobs(ROOT / "jobs.yaml").jobs
    assert job_args.profile in load_jobs(ROOT / "jobs.yaml").jobs[job_args.job].profiles
    conf = spec["flinkConfiguration"]
    assert all(isinstance(v, str) for v in conf.values()), "the operator's CRD takes string values only"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["execution.checkpointing.dir"].startswith("s3://")
    assert conf["execution.checkpointing.savepoint-dir"].startswith("s3://")
    assert conf["classloader.parent-first-patterns.additional"] == "pemja."
    shared = set(conf) & set(deploy_config())
    assert shared >= {"execution.checkpointing.mode", "state.backend.type", "restart-strategy.type"}


def test_flink_deployment_ships_every_jar_the_pom_resolves(monkeypatch):
    (deployment,) = [d for d in k8s_documents() if d["kind"] == "FlinkDeployment"]
    listed = deployment["spec"]["flinkConfiguration"]["pipeline.jars"].split(";")
    assert listed == [f"file://{JARS_DIR}/{name}" for name in pom_jar_names(monkeypatch)]


def taskmanager_container(deployment: dict) -> dict:
    """The TaskManager's main container as the operator builds it: the shared podTemplate, then the
    taskManager's own (env and envFrom lists add up)."""
    merged: dict = {"env": [], "envFrom": []}
    for template in (deployment["spec"].get("podTemplate"), deployment["spec"]["taskManager"].get("podTemplate")):
        for container in (template or {}).get("spec", {}).get("containers", []):
            if container["name"] == "flink-main-container":
                merged["env"] += container.get("env", [])
                merged["envFrom"] += container.get("envFrom", [])
    return merged


def test_taskmanagers_get_the_redis_endpoint_and_the_keys_the_python_operator_opens():
    """The job's Python operator runs in the TaskManager and opens Redis there (the view writer and the PII
    key store): every variable the prod profile's `redis:` needs, and the master key, reach its pods."""
    docs = k8s_documents()
    (deployment,) = [d for d in docs if d["kind"] == "FlinkDeployment"]
    container = taskmanager_container(deployment)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    provided = {e["name"] for e in container["env"]}
    for source in container["envFrom"]:
        provided |= set(secrets[source["secretRef"]["name"]]["stringData"])
    raw = yaml.safe_load((ROOT / "jobs.yaml").read_text())["jobs"]["context-sync"]["profiles"]
    profile = raw[job_profile(deployment)]
    required = {name for value in profile["redis"].values()
                for name, default in re.findall(r"\$\{(\w+)(:-)?", str(value)) if not default}
    assert "CTXSYNC_REDIS_URL" in required and required <= provided, required - provided
    optional = {name for value in profile["redis"].values() for name in re.findall(r"\$\{(\w+):-", str(value))}
    assert {"CTXSYNC_REDIS_PASSWORD"} <= optional & provided
    privacy = load_jobs(ROOT / "jobs.yaml").jobs["context-sync"].profiles[job_profile(deployment)].privacy
    if privacy is not None and privacy.master_key_env:
        assert privacy.master_key_env in provided


def job_profile(deployment: dict) -> str:
    return flink_main.parse_args(deployment["spec"]["job"]["args"][4:]).profile


def test_connector_deployments_run_valid_ctxsync_commands():
    deployments = {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == "Deployment"}
    parser = cli.build_parser()
    targets = {}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == IMAGE
        assert container["command"][0] == "ctxsync"
        args = parser.parse_args(container["command"][1:])
        assert args.command == "connect" and args.target != "all", name
        targets[args.target] = deployment
    # Elasticsearch needs its connector; the job writes the Redis views itself, so a Redis connector is
    # only for rebuilds: absent, or off (0 replicas) and said so
    assert targets["elasticsearch"]["spec"]["replicas"] >= 1
    if "redis" in targets:
        assert targets["redis"]["spec"]["replicas"] == 0
        assert "rebuild" in targets["redis"]["metadata"].get("annotations", {}).get("ctxsync.io/purpose", "")


# -- docker-compose ------------------------------------------------------------------------------------

def compose_client() -> list[str]:
    """`docker compose` when the plugin is installed, else the docker-compose client (install-system-deps.sh)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run scripts/install-system-deps.sh")


BASE_COMPOSE = ROOT / "deploy" / "docker-compose.yml"          # the servers (tests/test_deploy_compose.py)
FLINK_COMPOSE = DEPLOY / "docker-compose.flink.yml"           # Flink, the job and the connectors on top
FLINK_SERVICES = {"jobmanager", "taskmanager", "submit", "connect-redis", "connect-elasticsearch", "ctl"}


def test_docker_compose_config_accepts_the_flink_stack_on_top_of_the_servers():
    result = subprocess.run([*compose_client(), "-f", str(BASE_COMPOSE), "-f", str(FLINK_COMPOSE), "config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"kafka", "elasticsearch", "redis"} | FLINK_SERVICES <= set(services)
    for name in FLINK_SERVICES:
        assert services[name]["image"] == IMAGE
        assert services[name]["build"]["context"] == str(ROOT)  # paths resolve against deploy/
        assert (ROOT / services[name]["build"]["dockerfile"]).is_file()
        for port in services[name].get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["submit"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    # the job writes the views: the Redis connector only runs when asked for (a rebuild), the ES one always
    assert services["connect-redis"].get("profiles") == ["rebuild"]
    assert not services["connect-elasticsearch"].get("profiles")


def test_compose_taskmanager_reaches_the_redis_the_docker_profile_names():
    """The view writer opens Redis inside the TaskManager: it starts after Redis and has its endpoint."""
    services = yaml.safe_load(FLINK_COMPOSE.read_text())["services"]
    taskmanager = services["taskmanager"]
    assert taskmanager["depends_on"]["redis"]["condition"] == "service_healthy"
    docker = load_jobs(ROOT / "jobs.yaml").jobs["context-sync"].profiles["docker"]
    assert taskmanager["environment"]["CTXSYNC_REDIS_URL"] == docker.redis.url
    assert "redis" in yaml.safe_load(BASE_COMPOSE.read_text())["services"]


def test_compose_commands_are_valid_ctxsync_commands_on_the_docker_profile():
    services = yaml.safe_load(FLINK_COMPOSE.read_text())["services"]
    parser = cli.build_parser()
    jobs = load_jobs(ROOT / "jobs.yaml").jobs
    commands = {name: s["command"] for name, s in services.items()
                if s.get("command", [None])[0] == "ctxsync" and "--help" not in s["command"]}
    assert set(commands) == {"submit", "connect-redis", "connect-elasticsearch"}
    for name, command in commands.items():
        assert parser.parse_args(command[1:]).profile == "docker", name
    docker = jobs["context-sync"].profiles["docker"]
    base = yaml.safe_load(BASE_COMPOSE.read_text())["services"]
    assert docker.source.bootstrap == "kafka:19092" and "PLAINTEXT://kafka:19092" in base["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"]
    assert docker.redis.url.startswith("redis://redis:") and docker.elasticsearch.hosts.startswith("http://elasticsearch:")

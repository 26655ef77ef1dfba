"""The Elasticsearch API behind TLS and basic authentication: Debian's nginx in front of noida-db.

noida-db serves its Elasticsearch API over plain HTTP only (no TLS or user options in `noida-db --help`; an
https request gets its connection closed), so the tests put the terminator a production cluster would have in
front of it: nginx on a free loopback port, `listen ... ssl` with the test CA's server certificate
(tests/fixtures_tls.py), `auth_basic` with an htpasswd file made here, `proxy_pass` to noida-db's ES port.
It runs in the foreground as the test's user, with every path it writes in the test's temp folder.
"""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctxsync.servers import LocalServers, free_port
from tests.fixtures_tls import Tls, make_tls, stop

NGINX = "/usr/sbin/nginx"
ES_USER = "ctxsync-writer"
ES_PASSWORD = "es-secret-Kq7w"


@dataclass(frozen=True)
class EsTls:
    """The terminator's address and what a client needs to trust and log in to it."""

    port: int
    tls: Tls
    upstream: str  # noida-db's plain ES url, for checks that bypass the terminator

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def htpasswd_line(user: str, password: str) -> str:
    """An nginx `auth_basic_user_file` entry in the salted SHA-1 form ({SSHA}) nginx reads natively."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def nginx_conf(folder: Path, port: int, tls: Tls, htpasswd: Path, upstream_port: int) -> str:
    """Foreground nginx whose pid, logs and temp files all live in `folder` (no /var, no /etc)."""
    temp = {name: folder / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(parents=True, exist_ok=True)
    # Workers read the htpasswd file per request; as root they would switch to `nobody` and be refused the
    # test's private temp folder, so they keep the test's user.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {folder}/access.log;
  client_body_temp_path {temp['client_body']};
  proxy_temp_path {temp['proxy']};
  fastcgi_temp_path {temp['fastcgi']};
  uwsgi_temp_path {temp['uwsgi']};
  scgi_temp_path {temp['scgi']};
  client_max_body_size 100m;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {tls.server_cert};
    ssl_certificate_key {tls.server_key};
    auth_basic "ctxsync test Elasticsearch";
    auth_basic_user_file {htpasswd};
    location / {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def _tls_ready(port: int, tls: Tls) -> bool:
    context = ssl.create_default_context(cafile=str(tls.ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            with context.wrap_socket(sock, server_hostname="127.0.0.1"):
                return True
    except OSError:
        return False


def start_nginx(folder: Path, tls: Tls, upstream_port: int) -> tuple[subprocess.Popen, int]:
    """nginx terminating TLS with basic auth (ES_USER / ES_PASSWORD) in front of 127.0.0.1:upstream_port."""
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = folder / "htpasswd"
    htpasswd.write_text(htpasswd_line(ES_USER, ES_PASSWORD))
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(nginx_conf(folder, port, tls, htpasswd, upstream_port))
    log = (folder / "nginx.out").open("wb")
    process = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not _tls_ready(port, tls):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()[-500:]}")
        time.sleep(0.05)
    return process, port


@pytest.fixture(scope="module")
def es_tls(tmp_path_factory: pytest.TempPathFactory, servers: LocalServers) -> Iterator[EsTls]:
    """The session's noida-db Elasticsearch API, reachable only as https + basic auth through nginx."""
    upstream = servers.endpoints()["elasticsearch"]
    tls = make_tls(tmp_path_factory.mktemp("es-tls-certs"))
    process, port = start_nginx(tmp_path_factory.mktemp("es-nginx"), tls, int(upstream.rsplit(":", 1)[1]))
    try:
        yield EsTls(port, tls, upstream)
    finally:
        stop(process)

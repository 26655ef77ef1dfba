"""A redis-server of the test's own (ACL users, TLS) and the certificates it needs, made with `cryptography`.

The shared `servers` fixture runs a plain, open redis-server that every test uses; the security tests change
users and require TLS, so they start their own (~0.1 s each) instead. Certificates: one CA signs the server
(SAN 127.0.0.1 and localhost) and a client; a second, unrelated CA is the "wrong CA".
"""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ctxsync.servers import free_port

ADMIN = "ctxsync-admin"
ADMIN_PASSWORD = "admin-secret-Z8q"


@dataclass(frozen=True)
class Tls:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


@dataclass(frozen=True)
class RedisServer:
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path = path.with_suffix(".key")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key_path


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey],
                 *, ca: bool = False, usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer[0]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def make_tls(folder: Path) -> Tls:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, wrong_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca, _ = _write(folder / "ca.pem", ca_key, _certificate("ctxsync test CA", ca_key, ("ctxsync test CA", ca_key),
                                                           ca=True))
    wrong, _ = _write(folder / "wrong-ca.pem", wrong_key,
                      _certificate("another CA", wrong_key, ("another CA", wrong_key), ca=True))
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = _write(folder / "server.pem", server_key, _certificate(
        "127.0.0.1", server_key, ("ctxsync test CA", ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH))
    client = _write(folder / "client.pem", client_key, _certificate(
        "ctxsync test client", client_key, ("ctxsync test CA", ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH))
    return Tls(ca, *server, *client, wrong)


def _admin(server: RedisServer, tls: Tls | None, **options: object) -> redis.Redis:
    if tls is None:
        return redis.Redis(port=server.port, **options)
    return redis.Redis(port=server.port, ssl=True, ssl_ca_certs=str(tls.ca), ssl_certfile=str(tls.client_cert),
                       ssl_keyfile=str(tls.client_key), **options)


def start_redis(folder: Path, tls: Tls | None = None, auth_clients: str = "optional"
                ) -> tuple[subprocess.Popen, RedisServer]:
    """redis-server on a free loopback port (TLS only, when `tls`), with an administrator user ADMIN and the
    `default` user switched off, so every connection must authenticate. It listens on 127.0.0.2 too, an
    address the server certificate does not name (host name verification)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "127.0.0.2", "--dir", str(folder), "--save", "",
               "--appendonly", "no"]
    if tls is None:
        command += ["--port", str(port)]
    else:
        command += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.server_cert),
                    "--tls-key-file", str(tls.server_key), "--tls-ca-cert-file", str(tls.ca),
                    "--tls-auth-clients", auth_clients]
    process = subprocess.Popen(command, stdout=(folder / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    server = RedisServer(port, tls is not None)
    deadline = time.monotonic() + 10
    while True:
        try:
            with _admin(server, tls, socket_timeout=1) as client:
                client.ping()
                client.acl_setuser(ADMIN, enabled=True, passwords=[f"+{ADMIN_PASSWORD}"], keys=["*"],
                                   channels=["*"], commands=["+@all"])
                client.acl_setuser("default", enabled=False)
            return process, server
        except (redis.ConnectionError, ConnectionRefusedError, ssl.SSLError, socket.error):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()[-500:]}")
            time.sleep(0.05)


def admin_client(server: RedisServer, tls: Tls | None = None) -> redis.Redis:
    return _admin(server, tls, username=ADMIN, password=ADMIN_PASSWORD)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A plain redis-server whose `default` user is off (only ADMIN and the users a test creates)."""
    process, server = start_redis(tmp_path_factory.mktemp("acl-redis"))
    try:
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, tls_files: Tls) -> Iterator[RedisServer]:
    """redis-server on a TLS port only (client certificates optional), `default` user off."""
    process, server = start_redis(tmp_path_factory.mktemp("tls-redis"), tls_files)
    try:
        yield server
    finally:
        stop(process)

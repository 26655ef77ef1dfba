"""The CLI's one error policy: every failure becomes one line `ctxsync <command>: <what> (<what to do>)`.

Exit codes: 2 for usage and configuration mistakes, 1 for runtime failures (a server that is down, an engine
that failed), 130 for Ctrl-C. Tracebacks are for `--debug` / CTXSYNC_DEBUG=1 only. Code below the CLI raises
`UsageError` or `RuntimeFailure` (or lets a library error through); `explain` turns anything into a message,
so no command needs its own try/except for reporting.
"""
from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path


class CtxsyncError(Exception):
    """An error whose message is meant for the user as it is; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(CtxsyncError):
    """Wrong arguments, a missing or unreadable input, a broken config: exit 2."""

    exit_code = 2


class RuntimeFailure(CtxsyncError):
    """A server that is down, an engine or cluster that failed: exit 1."""

    exit_code = 1


def debug_enabled() -> bool:
    return os.environ.get("CTXSYNC_DEBUG", "") not in ("", "0", "false", "no")


_PY4J_DIR = f"{os.sep}py4j{os.sep}"
_PY4J_SINK = logging.NullHandler()  # a record no handler takes would go to logging's last resort (stderr)


def _not_from_py4j(record: logging.LogRecord) -> bool:
    return _PY4J_DIR not in record.pathname


def quiet_engine_logs() -> None:
    """Keep py4j's tracebacks off stderr: it logs every failed call into the JVM with its traceback, some
    of them on the root logger (which makes `logging` print to stderr), so a JVM that dies mid-run printed
    dozens of tracebacks before the CLI's one line, which says the same once (`explain`). --debug keeps
    them."""
    py4j = logging.getLogger("py4j")
    py4j.propagate = False
    py4j.addHandler(_PY4J_SINK)
    logging.getLogger().addFilter(_not_from_py4j)


# Library errors that mean "a server is not reachable", by (module, class name) -> the server's name: matched
# by name so that this module imports none of the client libraries (most commands never load them).
_UNREACHABLE = {
    ("redis", "ConnectionError"): "Redis", ("redis", "TimeoutError"): "Redis",
    ("redis", "AuthenticationError"): "Redis",
    ("elasticsearch", "ConnectionError"): "Elasticsearch", ("elasticsearch", "ConnectionTimeout"): "Elasticsearch",
    ("elastic_transport", "ConnectionError"): "Elasticsearch",
    ("elastic_transport", "ConnectionTimeout"): "Elasticsearch",
    ("opensearchpy", "ConnectionError"): "OpenSearch", ("opensearchpy", "ConnectionTimeout"): "OpenSearch",
    ("confluent_kafka", "KafkaException"): "Kafka", ("cimpl", "KafkaException"): "Kafka",
}


def _unreachable_server(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        found = _UNREACHABLE.get((cls.__module__.split(".")[0], cls.__name__))
        if found:
            return found
    return None


_TLS_REFUSED = "CERTIFICATE_VERIFY_FAILED"


def _is(exc: BaseException, module: str, name: str) -> bool:
    return any(cls.__module__.split(".")[0] == module and cls.__name__ == name for cls in type(exc).__mro__)


def _refused_login(exc: BaseException) -> bool:
    """Wrong or missing credentials (not a server that is down): Redis says so in AuthenticationError."""
    return _is(exc, "redis", "AuthenticationError") or _is(exc, "redis", "AuthenticationWrongNumberOfArgsError")


def _es_refused(exc: BaseException) -> CtxsyncError | None:
    """Elasticsearch's 401/403 (an ApiError, not a connection error): the status and ES's own reason when
    it sent JSON (it names the user, never the password); a proxy's HTML error page is left out."""
    if not any(_is(exc, "elasticsearch", name) for name in ("AuthenticationException", "AuthorizationException")):
        return None
    status = getattr(getattr(exc, "meta", None), "status", None)
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    said = error.get("reason") if isinstance(error, dict) else None
    reason = f": {_first_line(str(said))}" if said else ""
    if status == 403:
        return RuntimeFailure(f"Elasticsearch refused the request (HTTP 403){reason}",
                              "the profile's Elasticsearch user or API key lacks a privilege for these indices")
    return RuntimeFailure(f"Elasticsearch refused the login (HTTP {status}){reason}",
                          "check the profile's username and password or api_key, and the variables they come from")


def _kafka_refused(exc: BaseException) -> CtxsyncError | None:
    """Kafka's refused login, untrusted certificate or missing ACL, from the KafkaError a KafkaException
    carries (ctxsync/io/kafka_io.check_reachable raises the one librdkafka only reported to its callback)."""
    if not (_is(exc, "cimpl", "KafkaException") or _is(exc, "confluent_kafka", "KafkaException")):
        return None
    error = exc.args[0] if exc.args else None
    if error is None or not (callable(getattr(error, "name", None)) and callable(getattr(error, "str", None))):
        return None
    name, said = error.name(), _first_line(error.str())
    if name in ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"):
        return RuntimeFailure(f"Kafka refused the login: {said}",
                              "check the profile's Kafka username and password (and the variables they come "
                              "from) and its sasl_mechanism")
    if name == "_SSL":
        return RuntimeFailure(f"Kafka's TLS handshake failed: {said}",
                              "security.ca_location must be the CA that signed the brokers' certificates, which "
                              "must name the bootstrap host")
    if name.endswith("_AUTHORIZATION_FAILED"):
        return RuntimeFailure(f"Kafka refused the request ({name}): {said}",
                              "the profile's Kafka user lacks an ACL for it; docs/security.md lists what each "
                              "role needs")
    return None


def _text(exc: BaseException) -> str:
    """The error's own words: elastic_transport's TLS and connection errors print a bare "TLS error" and
    keep the cause (CERTIFICATE_VERIFY_FAILED, ...) in `.message`."""
    message = getattr(exc, "message", None)
    if _is(exc, "elastic_transport", "TransportError") and isinstance(message, str) and message:
        return message
    return str(exc)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def java_cause(exc: BaseException) -> str | None:
    """The innermost cause of a py4j Java exception, as `Class: message` (no Java stack)."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    try:
        while java.getCause() is not None and java.getCause() is not java:
            java = java.getCause()
        name = java.getClass().getSimpleName()
        message = java.getMessage()
    except Exception:  # noqa: BLE001 - the gateway may be gone already (Ctrl-C, JVM exit)
        return _first_line(str(exc))
    return f"{name}: {_first_line(message)}" if message else name


# py4j's error for a call whose connection broke (it logs the network error and answers the call with a
# bare error, no Java exception and no trace)
_CALL_LOST = re.compile(r"An error occurred while calling [\w$]+\.[\w$]+")


def _engine_gone(exc: BaseException) -> str | None:
    """When the JVM was lost ("while starting", "during the run"), or None: PyFlink's launcher saw it exit
    before it listened, or py4j's connection broke during a call or is refused."""
    if isinstance(exc, RuntimeError) and "gateway process exited before sending its port" in str(exc):
        return "while starting"
    if _is(exc, "py4j", "Py4JNetworkError") or (
            _is(exc, "py4j", "Py4JError") and not _is(exc, "py4j", "Py4JJavaError")
            and _CALL_LOST.fullmatch(str(exc).strip()) is not None):
        return "during the run"
    return None


def _os_error(exc: OSError) -> CtxsyncError:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UsageError(f"cannot use {where}: {what}", "choose a path you can write, or fix its permissions")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return UsageError(f"{where}: {what}", "check the path")
    if exc.errno == errno.ENOSPC:
        return RuntimeFailure(f"{where}: {what}", "free some disk space")
    return RuntimeFailure(f"{where}: {what}" if where else what)


def explain(exc: BaseException) -> CtxsyncError:
    """Any exception, as the message and exit code the user gets."""
    if isinstance(exc, CtxsyncError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return UsageError(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                          "save it as UTF-8")
    refused = _es_refused(exc)
    if refused is not None:
        return refused
    refused = _kafka_refused(exc)
    if refused is not None:
        return refused
    server = _unreachable_server(exc)
    text = _text(exc)
    if server is not None and _refused_login(exc):
        return RuntimeFailure(f"{server} refused the login: {_first_line(text)}",
                              "check the profile's username and password, and the variables they come from")
    if server is not None and _TLS_REFUSED in text:
        return RuntimeFailure(f"{server}'s TLS certificate is not trusted: {_first_line(text)}",
                              "ca_location must be the CA that signed the server's certificate, which must name "
                              "the url's host")
    if server is not None and "CERTIFICATE_REQUIRED" in text:
        return RuntimeFailure(f"{server} requires a client certificate: {_first_line(text)}",
                              "set cert_location and key_location in the profile")
    if _is(exc, "redis", "NoPermissionError"):
        return RuntimeFailure(f"Redis refused the command: {_first_line(str(exc))}",
                              "the profile's Redis user lacks this permission; see `ctxsync acl apply`")
    if server is not None:
        return RuntimeFailure(f"cannot reach {server}: {_first_line(text) or type(exc).__name__}",
                              "is it running? `ctxsync dev up` starts the local ones")
    when = _engine_gone(exc)
    if when is not None:
        logs = os.environ.get("FLINK_LOG_DIR")
        return RuntimeFailure(f"the Flink engine's JVM exited {when} (it crashed, ran out of memory or was killed)",
                              f"its log is in {logs}" if logs else "rerun with --debug for the trace")
    cause = java_cause(exc)
    if cause is not None:
        return RuntimeFailure(f"the Flink job failed: {cause}", "rerun with --debug for the full trace")
    if isinstance(exc, OSError):
        return _os_error(exc)
    return RuntimeFailure(f"unexpected {type(exc).__name__}: {_first_line(str(exc))}",
                          "rerun with --debug for the traceback, and please report it")


def check_input_file(path: Path, what: str = "input file") -> None:
    """An input that exists, is a file and can be read; said before any work starts."""
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist", "check the path")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory", "give a file, e.g. events.jsonl")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read the {what} {path}: permission denied", "fix its permissions")


def check_writable_dir(path: Path, what: str = "output directory") -> None:
    """Create `path` (and parents) and prove it can take files, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".ctxsync-write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except FileExistsError as exc:
        raise UsageError(f"{what} {path} exists and is not a directory", "choose another path") from exc
    except OSError as exc:
        raise UsageError(f"cannot write the {what} {path}: {exc.strerror}",
                         "choose a path you can write, or fix its permissions") from exc


def check_writable_file(path: Path, what: str = "output file") -> None:
    """The file's directory can be created and written, and the path is not a directory."""
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory", "give a file name")
    check_writable_dir(path.parent, f"directory of the {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"cannot write the {what} {path}: permission denied", "choose another path")

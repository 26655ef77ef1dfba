"""The signed, tamper-evident audit log of operator actions (docs/security.md, Audit log).

Commands call `record_action(profile, action, details)` *before* they act: an action whose entry cannot be
written does not run, and an entry means the action was started (its outcome is the command's output).
Without an audit key, a profile with `audit: {required: true}` (prod) refuses the action; any other profile
runs it unrecorded, with a reminder on stderr when that is a terminal (a script's stderr stays its own).
"""
from __future__ import annotations

import getpass
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from ctxsync import paths
from ctxsync.audit.entries import make_entry
from ctxsync.audit.keys import KEY_ENV, KEY_FILE_ENV, signer_from_env
from ctxsync.audit.stores import FileStore, KafkaStore, Store
from ctxsync.config import JobConfig, Profile, resolve_job, resolve_profile
from ctxsync.errors import UsageError

ACTIONS = ("erase", "replay", "run-fresh", "submit", "cancel", "savepoint", "acl-apply", "key-rotate")
ACTOR_ENV = "CTXSYNC_AUDIT_ACTOR"
_warned = False


def login() -> str:
    """The OS user and host running the command (recorded even when --actor names someone)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def store_for(profile: Profile, name: str) -> Store:
    """The profile's log: its Kafka topic when it reads Kafka, else a file in its state dir
    (default $CTXSYNC_HOME/state) named audit.<profile>.log."""
    if profile.source.type == "kafka":
        from ctxsync.io.clients import kafka_config

        return KafkaStore(kafka_config(profile), profile.audit.topic)
    state_dir = Path(profile.state_dir) if profile.state_dir else paths.home() / "state"
    return FileStore(state_dir / f"audit.{name}.log")


def record_action(profile: str, action: str, details: dict[str, str], *, job: JobConfig | None = None,
                  dev_dir: Path | None = None, actor: str | None = None) -> None:
    """Append a signed entry for `action` on profile `profile` (of `job`, default jobs.yaml's context-sync).

    `details` say what was acted on (job, topic, savepoint, counts); never secrets or personal data in
    clear. `actor` (e.g. `ctxsync --actor`) defaults to $CTXSYNC_AUDIT_ACTOR, else the OS login."""
    global _warned
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if job is None:
        job = resolve_job(Path("jobs.yaml"), "context-sync", [])
    unresolved = job.profile(profile)
    signer = signer_from_env()
    if signer is None:
        if unresolved.audit.required:
            raise UsageError(f"profile {profile!r} requires an audit log entry for {action}, and no audit key "
                             f"is configured", f"set {KEY_FILE_ENV} (see `ctxsync audit keygen --help`)")
        if not _warned and sys.stderr.isatty():  # a reminder at a terminal; scripts' stderr stays theirs
            print(f"ctxsync: audit log off (no {KEY_FILE_ENV} or {KEY_ENV}): {action} not recorded",
                  file=sys.stderr)
            _warned = True
        return
    from ctxsync.servers import running_endpoints

    resolved = resolve_profile(unresolved, profile, running_endpoints(dev_dir))
    fields = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "action": action, "actor": actor or os.environ.get(ACTOR_ENV) or login(), "login": login(),
              "profile": profile, "details": {str(k): str(v) for k, v in details.items()}}
    store_for(resolved, profile).append(lambda seq, prev: make_entry(signer, seq, prev, fields))

"""`ctxsync schema register|list|check`: the context event's Avro schema versions in a schema registry.

A model team evolves its events by checking a new version against the subject first (`check`, the registry's
own compatibility verdict), then registering it (`register`, which the registry refuses the same way); the
job reads every registered version by the id in each record (docs/schemas.md).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ctxsync.errors import RuntimeFailure, UsageError
from ctxsync.io.schema_registry import LEVELS

DEFAULT_TOPIC = "context.events"
REGISTRY_ENV = "CTXSYNC_REGISTRY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schema", help="register, list and check the event schema's versions in the schema registry",
        description="The context event's Avro schema in a schema registry (Confluent-compatible API; "
                    "`ctxsync dev up --with registry` starts Apicurio Registry on loopback). The subject is "
                    "<topic>-value (TopicNameStrategy). `check` asks the registry whether FILE may be the "
                    "subject's next version under the subject's compatibility level (BACKWARD unless set) "
                    "and prints one line per problem (exit 1 when there is one); `register` adds FILE as a "
                    "version (the registry refuses an incompatible one the same way) and prints its id; "
                    "`list` shows subjects, levels, versions and ids.\n\n"
                    "The registry is --registry, else $CTXSYNC_REGISTRY, else the one `ctxsync dev up` runs.\n\n"
                    "examples:\n"
                    "  ctxsync schema check schemas/context_event.avsc\n"
                    "  ctxsync schema register schemas/context_event.avsc --topic context.events\n"
                    "  ctxsync schema register --compatibility FULL   # old readers must read new records too\n"
                    "  ctxsync schema register schemas/json/context_view.schema.json --topic context.views\n"
                    "  ctxsync schema list\n"
                    "  ctxsync schema list --registry http://127.0.0.1:8081/apis/ccompat/v7",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("register", "list", "check"))
    p.add_argument("file", nargs="?", type=Path, default=None,
                   help="schema for register and check: Avro (.avsc; default: schemas/context_event.avsc) or JSON "
                        "Schema (.json: the output records', schemas/json/)")
    p.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic whose value schema it is (default: {DEFAULT_TOPIC})")
    p.add_argument("--subject", help="subject, instead of <topic>-value")
    p.add_argument("--registry", metavar="URL", help="registry API URL, e.g. http://127.0.0.1:8081/apis/ccompat/v7")
    p.add_argument("--compatibility", choices=LEVELS, metavar="LEVEL",
                   help=f"register: set the subject's level first ({', '.join(LEVELS)})")
    p.set_defaults(func=run)


def registry_url(explicit: str | None) -> str:
    """--registry, else $CTXSYNC_REGISTRY, else the running `ctxsync dev` registry."""
    if explicit:
        return explicit
    if os.environ.get(REGISTRY_ENV):
        return os.environ[REGISTRY_ENV]
    from ctxsync.servers import running_endpoints

    found = running_endpoints().get("registry")
    if not found:
        raise UsageError("no schema registry: none is running under `ctxsync dev`",
                         f"start one with `ctxsync dev up --with registry`, or pass --registry / ${REGISTRY_ENV}")
    return found


def read_schema(path: Path) -> tuple[str, str]:
    """(schema type, the file's JSON compact) once fastavro (.avsc) or jsonschema (.json) accepted it; a broken
    file is a usage error (exit 2)."""
    import fastavro
    import jsonschema

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    compact = json.dumps(raw, separators=(",", ":"))
    if path.suffix == ".json":
        try:
            jsonschema.validators.validator_for(raw).check_schema(raw)
        except jsonschema.SchemaError as exc:
            raise UsageError(f"{path} is not a JSON Schema: {exc.message}") from None
        return "JSON", compact
    try:
        fastavro.parse_schema(raw)
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:  # UnknownType is a
        raise UsageError(f"{path} is not an Avro schema: {exc!r}") from None                # ValueError
    return "AVRO", compact


def run(args: argparse.Namespace) -> int:
    from ctxsync.io.schema_registry import Incompatible, SchemaRegistry, subject_for
    from ctxsync.schemas import SCHEMA_DIR  # fastavro: only for this command, not on every CLI start

    registry = SchemaRegistry(registry_url(args.registry))
    subject = args.subject or subject_for(args.topic)
    if args.action == "list":
        if args.file is not None:
            raise UsageError("list takes no FILE")
        for line in _listing(registry, [args.subject] if args.subject else registry.subjects()):
            print(line)
        return 0
    path = args.file or SCHEMA_DIR / "context_event.avsc"
    schema_type, schema = read_schema(path)
    if args.compatibility and args.action != "register":
        raise UsageError("--compatibility is for register (check uses the subject's level)")
    if args.compatibility and registry.versions(subject):  # a subject with no version yet has no level to set
        registry.set_compatibility(args.compatibility, subject)
    shown = path if args.file else "schemas/context_event.avsc"
    if args.action == "check":
        problems = registry.check(subject, schema, schema_type)
        level = registry.compatibility(subject)
        if problems:
            for problem in problems:
                print(f"{subject}: {problem}")
            raise RuntimeFailure(f"{shown} is not {level} compatible with {subject} ({len(problems)} problem(s))")
        latest = registry.versions(subject)
        against = f"version {latest[-1]}" if latest else "no version yet"
        print(f"{subject}: {shown} is {level} compatible ({against})")
        return 0
    try:
        schema_id = registry.register(subject, schema, schema_type)
    except Incompatible as exc:
        for problem in exc.problems:
            print(f"{subject}: {problem}")
        raise RuntimeFailure(f"the registry refused {shown} for {subject} "
                             f"({len(exc.problems)} problem(s), level {registry.compatibility(subject)})") from None
    if args.compatibility:
        registry.set_compatibility(args.compatibility, subject)
    found = _version_of(registry, subject, schema_id)
    print(f"{subject}: {shown} is version {found}, id {schema_id}")
    return 0


def _version_of(registry: Any, subject: str, schema_id: int) -> int | str:
    for number in reversed(registry.versions(subject)):
        if int(registry.version(subject, number)["id"]) == schema_id:
            return number
    return "?"


def _listing(registry: Any, subjects: list[str]) -> list[str]:
    if not subjects:
        return ["no subjects"]
    lines = []
    for subject in subjects:
        versions = registry.versions(subject)
        ids = [f"{n} (id {registry.version(subject, n)['id']})" for n in versions]
        lines.append(f"{subject}  {registry.compatibility(subject)}  versions: {', '.join(ids) or 'none'}")
    return lines

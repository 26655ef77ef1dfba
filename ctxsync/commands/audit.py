"""`ctxsync audit keygen|log|verify`: the signed, hash-chained log of operator actions."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ctxsync.commands.arg_types import iso_time_ms
from ctxsync.commands.profile_args import add_profile_args

DESCRIPTION = """\
Operator actions (replay, run --fresh, submit, cancel, savepoint, acl apply, erase, key rotation) are
recorded before they run, as entries that are hash-chained (each holds the SHA-256 of the previous
entry, and a sequence number) and signed with Ed25519. Kafka profiles keep the log in the topic of
`audit.topic` (default context.audit, one partition); file profiles in <state_dir>/audit.<profile>.log.

keygen  write a new private key to --out (mode 0600, never over an existing file) and print its public
        key (PEM) on stdout. Signing commands read the key from CTXSYNC_AUDIT_KEY_FILE (that PEM file)
        or CTXSYNC_AUDIT_KEY (base64 of the raw key: --raw writes that form). Keys are never printed.
log     the entries, oldest first (--since: only those at or after a time).
verify  check every entry with only the public key: signature, sequence and chain. Prints "N entries,
        chain intact, last <hash>", or names the first bad entry and why (edited: signature mismatch;
        removed: gap in sequence; reordered; forked) and exits 1. A cut tail leaves a valid chain: note
        the last hash and check it later with --contains.

Without an audit key, a profile with `audit: {required: true}` (prod) refuses audited actions; other
profiles warn once on stderr and run them unrecorded. `ctxsync --actor NAME COMMAND` (or
CTXSYNC_AUDIT_ACTOR) names who acts; the OS user@host is recorded as `login` either way.

examples:
  ctxsync audit keygen --out ~/.config/ctxsync/audit.pem > audit.pub
  export CTXSYNC_AUDIT_KEY_FILE=~/.config/ctxsync/audit.pem
  ctxsync --actor alice replay sample_data/context_events.jsonl
  ctxsync audit log --since 2026-12-01T00:00:00Z
  ctxsync audit verify --public-key audit.pub
  ctxsync audit verify --public-key audit.pub --profile prod --contains 3f9c…   # the last hash noted before
  ctxsync audit verify --public-key audit.pub --topic context.audit.copy       # another topic of the profile
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="signed audit log of operator actions: keygen, log, verify",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = actions.add_parser("keygen", help="write a new Ed25519 signing key, print its public key",
                                description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    keygen.add_argument("--out", type=Path, required=True, help="private key file to create (mode 0600)")
    keygen.add_argument("--raw", action="store_true",
                        help="write base64 of the raw key (for CTXSYNC_AUDIT_KEY) instead of PEM")
    keygen.set_defaults(func=run_keygen)
    for name, summary in (("log", "list the entries"), ("verify", "check signatures, sequence and chain")):
        q = actions.add_parser(name, help=summary, description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("--topic", help="Kafka profiles: read this topic instead of the profile's audit.topic")
        q.add_argument("--file", type=Path, help="read this log file instead of the profile's log")
        add_profile_args(q, "audit log")
        q.set_defaults(func=run_log if name == "log" else run_verify)
    actions.choices["log"].add_argument("--since", type=iso_time_ms, metavar="T",
                                        help="only entries at or after T (ISO-8601, e.g. 2026-12-01T00:00:00Z)")
    actions.choices["log"].add_argument("--json", action="store_true", help="the entries as stored (JSON lines)")
    verify = actions.choices["verify"]
    verify.add_argument("--public-key", type=Path, required=True, metavar="FILE",
                        help="the public key (PEM as keygen prints it, or base64 of its 32 bytes)")
    verify.add_argument("--contains", metavar="HASH",
                        help="fail unless the log holds the entry with this hash (a `last` noted earlier)")


def run_keygen(args: argparse.Namespace) -> int:
    import sys

    from ctxsync.audit.keys import keygen
    from ctxsync.errors import check_writable_file

    check_writable_file(args.out, "key file")
    public = keygen(args.out, args.raw)
    print(f"private key written to {args.out} (mode 0600); its public key:", file=sys.stderr)
    print(public, end="")
    return 0


def _records(args: argparse.Namespace) -> list[Any]:
    from ctxsync.audit import store_for
    from ctxsync.audit.stores import FileStore, KafkaStore
    from ctxsync.commands.profile_args import profile_from_args
    from ctxsync.errors import UsageError, check_input_file

    if args.file is not None:
        if args.topic is not None:
            raise UsageError("give --file or --topic, not both")
        check_input_file(args.file, "audit log")
        return FileStore(args.file).read()
    profile = profile_from_args(args)
    store = store_for(profile, args.profile)
    if args.topic is not None:
        if not isinstance(store, KafkaStore):
            raise UsageError(f"profile {args.profile!r} keeps its audit log in a file, not a topic",
                             "use --file, or a Kafka profile")
        store = KafkaStore(store.config, args.topic)
    if isinstance(store, KafkaStore):
        from ctxsync.io.kafka_io import check_reachable

        check_reachable(store.config)
    return store.read()


def run_log(args: argparse.Namespace) -> int:
    from ctxsync.audit.entries import parse
    from transforms.timestamps import parse_iso_ms

    shown = 0
    for record in _records(args):
        try:
            doc = parse(record)
        except ValueError as exc:
            print(f"{record.position}: {exc}")
            continue
        if args.since is not None and (parse_iso_ms(doc["time"]) or 0) < args.since:
            continue
        shown += 1
        if args.json:
            print(record.data.decode())
            continue
        details = " ".join(f"{k}={v}" for k, v in doc["details"].items())
        print(f"{doc['seq']:>5}  {doc['time']}  {doc['action']:<10} {doc['actor']:<20} {details}")
    if not shown and not args.json:
        print("no entries")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ctxsync.audit.entries import digest, verify
    from ctxsync.audit.keys import load_public
    from ctxsync.errors import RuntimeFailure

    public = load_public(args.public_key)
    records = _records(args)
    verdict = verify(records, public)
    if not verdict.intact:
        good = f"{verdict.entries} good {'entry' if verdict.entries == 1 else 'entries'}"
        raise RuntimeFailure(f"audit log NOT intact after {good}: {verdict.problem}",
                             "restore the log from a copy, and find out who changed it")
    if args.contains and not any(digest(r.data) == args.contains for r in records):
        raise RuntimeFailure(f"audit log has no entry with hash {args.contains} ({verdict.entries} entries, last "
                             f"{verdict.last_hash}): entries after it were removed, or it is another log")
    print(f"{verdict.entries} entries, chain intact, last {verdict.last_hash}")
    return 0

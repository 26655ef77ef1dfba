"""`ctxsync pii new-key | reveal`: make a master key; decrypt protected records for an authorized reader."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctxsync.commands.profile_args import add_profile_args
from ctxsync.errors import UsageError

DESCRIPTION = """\
PII protection's keys and readers (README: Security, PII protection).

  new-key   write a new random master key (base64 of 32 bytes) to a file readable by you only; point
            privacy.master_key_file at it, or put its content in CTXSYNC_MASTER_KEY. It is never printed.
  reveal    decrypt protected history or dead-letter records (JSON lines, e.g. `ctxsync history --json`
            or a topic dump) with the users' data keys from the profile's key store: you need the master
            key and the key store, which is what makes a reader authorized. Tokens (pseudonyms) stay
            tokens; a record of an erased user cannot be decrypted and says so.

examples:
  ctxsync pii new-key --out ~/.config/ctxsync/master.key
  ctxsync history --user user-00042 --json --profile prod | ctxsync pii reveal --profile prod"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pii", help="master key and authorized decryption of protected records",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new-key", help="write a new master key to a file (mode 600)")
    new.add_argument("--out", type=Path, required=True, help="file to create (refused if it exists)")
    new.set_defaults(func=run_new_key)
    reveal = actions.add_parser("reveal", help="decrypt protected records (JSON lines) for an authorized reader")
    reveal.add_argument("file", nargs="?", default="-", help="JSON lines file (default: - = standard input)")
    add_profile_args(reveal, "key store")
    reveal.set_defaults(func=run_reveal)


def run_new_key(args: argparse.Namespace) -> int:
    from ctxsync.io.keystore import new_key_text

    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{args.out} exists", "a master key is never overwritten: choose another file") from None
    except OSError as exc:
        raise UsageError(f"cannot create {args.out}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as out:
        out.write(new_key_text() + "\n")
    print(f"master key written to {args.out} (mode 600); set privacy.master_key_file to it, or export "
          "CTXSYNC_MASTER_KEY=\"$(cat FILE)\"")
    return 0


def run_reveal(args: argparse.Namespace) -> int:
    import orjson

    from ctxsync.commands.profile_args import profile_from_args
    from ctxsync.config import privacy_policy, resolve_job
    from ctxsync.io.keystore import open_store
    from transforms.privacy import reveal

    job = resolve_job(args.jobs, args.job, [])
    policy = privacy_policy(job, profile_from_args(args))
    if policy is None:
        raise UsageError(f"profile {args.profile!r} has no privacy: section", "its records are not protected")
    store = open_store(policy.keys)
    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    refused = 0
    with source:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                token = record.get("keyId") or record["contextDelta"]["userId"]
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise UsageError(f"line {number} is not a protected history or dead-letter record") from None
            key = store.existing_key(token)
            if key is None:
                refused += 1
                print(orjson.dumps({**record, "revealed": False, "why": "no data key: the user was erased"
                                    if store.erased_at(token) else "no data key for this user"}).decode())
                continue
            print(orjson.dumps({**reveal(record, key), "revealed": True}).decode())
    return 1 if refused else 0

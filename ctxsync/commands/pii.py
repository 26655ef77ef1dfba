"""`ctxsync pii new-key | reveal | rotate-key`: make a master key; decrypt protected records for an authorized
reader; move a key store to a new master key."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctxsync.commands.profile_args import add_profile_args
from ctxsync.errors import UsageError

DESCRIPTION = """\
PII protection's keys and readers (docs/security.md, PII protection).

  new-key   write a new random master key (base64 of 32 bytes) to a file readable by you only; point
            privacy.master_key_file at it, or put its content in CTXSYNC_MASTER_KEY. It is never printed.
  reveal    decrypt protected history or dead-letter records (JSON lines, e.g. `ctxsync history --json`
            or a topic dump) with the users' data keys from the profile's key store: you need the master
            key and the key store, which is what makes a reader authorized. Tokens (pseudonyms) stay
            tokens; a record of an erased user cannot be decrypted and says so.
  rotate-key
            re-wrap every entry of the profile's key store (users' data keys, the job's pseudonym and
            control keys) from the profile's current master key to a new one, and record `key-rotate` in
            the audit log. The data keys do not change: tokens, ciphertexts already written and erase
            markers stay valid. Stop the job first (`ctxsync cancel JOB_ID --savepoint`), rotate, point
            the profile at the new key, `ctxsync submit --from-savepoint`. Safe to run again (an
            interrupted rotation resumes; a finished one is a no-op).

examples:
  ctxsync pii new-key --out ~/.config/ctxsync/master.key
  ctxsync history --user user-00042 --json --profile prod | ctxsync pii reveal --profile prod
  ctxsync pii rotate-key --new-key-file ~/.config/ctxsync/master-2.key --profile prod"""


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
    rotate = actions.add_parser("rotate-key", help="re-wrap the key store under a new master key (audited)")
    new_key = rotate.add_mutually_exclusive_group(required=True)
    new_key.add_argument("--new-key-file", help="file with the new master key (from `pii new-key`)")
    new_key.add_argument("--new-key-env", metavar="VAR", help="environment variable holding the new master key")
    add_profile_args(rotate, "key store and current master key")
    rotate.set_defaults(func=run_rotate_key)


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


def run_rotate_key(args: argparse.Namespace) -> int:
    from ctxsync.audit import record_action
    from ctxsync.commands.profile_args import profile_from_args
    from ctxsync.config import privacy_policy, resolve_job
    from ctxsync.io.keystore import MasterKeyWrapper, key_fingerprint, master_key, open_backend, rotate

    if args.new_key_env and not os.environ.get(args.new_key_env):
        raise UsageError(f"the environment variable {args.new_key_env} is not set", "it holds the new master key")
    new = master_key(args.new_key_env, args.new_key_file)
    job = resolve_job(args.jobs, args.job, [])
    policy = privacy_policy(job, profile_from_args(args))
    if policy is None:
        raise UsageError(f"profile {args.profile!r} has no privacy: section", "it has no key store")
    old = master_key(policy.keys.get("master_key_env"), policy.keys.get("master_key_file"))
    if new == old:
        raise UsageError("the new master key is the profile's current one", "make a new one with `ctxsync pii new-key`")
    backend = open_backend(policy.keys)
    wrappers = MasterKeyWrapper(old), MasterKeyWrapper(new)
    planned = rotate(backend, *wrappers, plan=True)  # every entry opens with one of the keys, before anything
    record_action(args.profile, "key-rotate", {"job": args.job, "newKey": key_fingerprint(new),
                                              "toRewrap": planned.rewrapped, "alreadyNew": planned.already_new,
                                              "erased": planned.erased}, job=job, actor=getattr(args, "actor", None))
    done = rotate(backend, *wrappers)
    print(f"key store of profile {args.profile} on master key {key_fingerprint(new)}: {done.rewrapped} entries "
          f"re-wrapped, {done.already_new} already on the new key, {done.erased} erased (left as they are)")
    print("next: point the profile at the new key and restart its job from a savepoint; keep the old key "
          "until then")
    return 0

"""`ctxsync` command line. Each subcommand lives in ctxsync/commands/<name>.py and registers itself."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import NoReturn

from ctxsync import __version__
from ctxsync.errors import debug_enabled, explain, quiet_engine_logs

COMMANDS = ("run", "jobs", "generate", "validate", "drift-report", "dev", "replay", "view", "history", "connect", "cluster", "submit", "verify", "snapshot", "as-of", "pit-join", "dlq", "acl", "erase", "pii", "audit", "signals", "trace", "schema")

EPILOG = """\
examples:
  ctxsync run context-sync --input sample_data/context_events.jsonl --out out/
  ctxsync run context-sync --input events.jsonl --out out/ --set conflict_policy=reject --parallelism 2
  ctxsync jobs
  ctxsync generate --events 100000 --users 1000 --seed 7 events.jsonl

Exit codes: 0 ok, 2 usage or configuration error, 1 runtime failure (a job failed, a server is down),
130 interrupted (Ctrl-C), 141 output pipe closed (`| head`). Errors are one line on stderr; --debug (or CTXSYNC_DEBUG=1) adds the traceback.
Bad events never fail a job: they go to the dead-letter output with the reason and the original bytes.
`ctxsync COMMAND --help` explains each command, with examples.
"""


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error policy: a usage mistake is one line and exit 2 (subcommand parsers are
    made from this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ctxsync",
        description="Real-time context synchronization for fleets of AI models (PyFlink and Apache Beam).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ctxsync {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    parser.add_argument("--actor", metavar="NAME",
                        help="who acts, for the audit log (default: $CTXSYNC_AUDIT_ACTOR, else the OS user@host)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ctxsync.commands.{name.replace('-', '_')}").register(sub)
    return parser


def _command(args: argparse.Namespace | None) -> str:
    if args is None:
        return ""
    return " ".join(filter(None, (args.command, getattr(args, "action", None))))


def _quiet_stdout() -> None:
    """The reader of our stdout went away (`| head`): drop what is still buffered instead of failing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends here as one line on stderr (errors.py) and an exit code."""
    args = None
    try:
        args = build_parser().parse_args(argv)  # inside: `--help | head` is a closed pipe too
        if not (args.debug or debug_enabled()):
            quiet_engine_logs()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the policy, not at interpreter exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # like a process killed by SIGPIPE, as shells and git report it
    except KeyboardInterrupt:
        print(f"ctxsync {_command(args)}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place errors become messages
        if (args is not None and args.debug) or debug_enabled():
            traceback.print_exc(file=sys.stderr)
        error = explain(exc)
        print(f"ctxsync {_command(args)}: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())

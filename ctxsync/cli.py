"""`ctxsync` command line. Each subcommand lives in ctxsync/commands/<name>.py and registers itself."""
from __future__ import annotations

import argparse
import importlib
import sys

from ctxsync import __version__
from ctxsync.cluster import ClusterError
from ctxsync.config import ConfigError

COMMANDS = ("run", "jobs", "generate", "validate", "drift-report", "dev", "replay", "view", "history", "connect", "cluster", "submit")

EPILOG = """\
examples:
  ctxsync run context-sync --input sample_data/context_events.jsonl --out out/
  ctxsync run context-sync --input events.jsonl --out out/ --set conflict_policy=reject --parallelism 2
  ctxsync jobs
  ctxsync generate --events 100000 --users 1000 --seed 7 events.jsonl

Exit codes: 0 ok, 2 usage or configuration error, 1 job failure. Bad events never fail a job:
they go to the dead-letter output with the reason and the original bytes.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctxsync",
        description="Real-time context synchronization for fleets of AI models (PyFlink and Apache Beam).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ctxsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ctxsync.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ctxsync: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:  # the Flink cluster refused or is unreachable: say which command met it
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        print(f"ctxsync {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ctxsync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

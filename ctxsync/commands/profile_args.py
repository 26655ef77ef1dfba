"""The `--profile/--job/--jobs` options of commands that talk to a profile's servers (view, history,
connect), and their resolution to endpoints, in one place."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ctxsync.config import resolve_job, resolve_profile


def add_profile_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--profile", default="local", help=f"profile whose {what} to use (default: local)")
    parser.add_argument("--job", default="context-sync", help="job whose profiles to read (default: context-sync)")
    parser.add_argument("--jobs", type=Path, default=Path("jobs.yaml"), help="jobs file (default: jobs.yaml)")


def profile_from_args(args: argparse.Namespace) -> Any:
    """The resolved profile (endpoints filled from the environment and `ctxsync dev up`)."""
    from ctxsync.servers import running_endpoints

    job = resolve_job(args.jobs, args.job, [])
    return resolve_profile(job.profile(args.profile), args.profile, running_endpoints())

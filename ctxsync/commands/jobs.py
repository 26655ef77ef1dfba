"""`ctxsync jobs`: list the jobs of jobs.yaml and the steps of their graphs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ctxsync.config import load_jobs
from pipelines.graphs import STEPS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="list jobs and their steps",
                       description="List the jobs defined in jobs.yaml, their profiles and the steps of each job "
                                   "graph.\n\nexamples:\n  ctxsync jobs\n  ctxsync jobs --jobs my-jobs.yaml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"), help="jobs file (default: jobs.yaml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    jobs = load_jobs(args.jobs)
    for name, job in jobs.jobs.items():
        print(f"{name}  (type {job.type}, parallelism {job.parallelism}, profiles: {', '.join(job.profiles)})")
        if job.description:
            print(f"  {job.description}")
        for number, (step, why) in enumerate(STEPS[job.type], start=1):
            print(f"  {number}. {step:<22} {why}")
        print()
    return 0

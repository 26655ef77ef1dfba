"""Job control on a Flink cluster: `ctxsync submit`, `savepoint`, `cancel` and `status`.

One module for the four because they share the --jobmanager option and pipelines/flink/client.py.
"""
from __future__ import annotations

import argparse
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from ctxsync.cluster import ClusterError
from ctxsync.commands.profile_args import add_profile_args
from ctxsync.config import ConfigError, resolve_job, resolve_profile
from ctxsync.errors import check_input_file
from ctxsync.progress import Progress

SUBMIT_DESCRIPTION = """\
Submit a job of jobs.yaml to a Flink session cluster with Flink's own CLI (`flink run --python`).
The job ships with its Python packages (ctxsync, transforms, pipelines) and, for Kafka profiles, the
Kafka connector jars. Checkpointing, state backend and restart strategy come from the cluster's config.

examples:
  ctxsync cluster up
  ctxsync submit context-sync --profile embedded --input sample_data/context_events.jsonl --out out/ --wait
  ctxsync submit context-sync --profile local --dev-dir .ctxsync/dev --set profiles.local.source.bounded=false
  ctxsync savepoint <JOB_ID>
  ctxsync cancel <JOB_ID> --savepoint          # stop with a savepoint, prints its path
  ctxsync submit context-sync --profile local --from-savepoint <PATH> --parallelism 2
"""


def _job_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise argparse.ArgumentTypeError(f"a Flink job id is 32 hex digits (see `ctxsync status`), got {text!r}")
    return text


def _control_parser(sub: argparse._SubParsersAction, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\nexamples:\n{examples}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _jobmanager_arg(p)
    return p


def _jobmanager_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobmanager", metavar="HOST:PORT",
                   help="REST address of the JobManager (default: the cluster of `ctxsync cluster up`)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a job to a Flink cluster", description=SUBMIT_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB", help="job name in jobs.yaml, e.g. context-sync")
    _jobmanager_arg(p)
    p.add_argument("--profile", default="local", help="profile of the job (default: local)")
    p.add_argument("--from-savepoint", metavar="PATH", help="restore state from this savepoint/checkpoint")
    p.add_argument("--parallelism", type=int, help="job parallelism (default: the job's)")
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"), help="jobs file (default: jobs.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, e.g. --set profiles.local.source.bounded=false")
    p.add_argument("--input", type=Path, help="file profile: JSON Lines input (must be readable by the TaskManagers)")
    p.add_argument("--out", type=Path, help="file profile: output dir (must be writable by the TaskManagers)")
    p.add_argument("--dev-dir", type=Path, help="state dir of `ctxsync dev up` for ${dev:...} endpoints")
    p.add_argument("--wait", action="store_true",
                   help="wait until a bounded job ends (file profile: then merge outputs into --out)")
    p.set_defaults(func=run_submit)

    p = _control_parser(sub, "savepoint", "take a savepoint of a running job (it keeps running); prints its path",
                        "  ctxsync savepoint 3f2a...e9 \n  ctxsync savepoint 3f2a...e9 --dir file:///backups/sp "
                        "--jobmanager flink:8081")
    p.add_argument("job_id", metavar="JOB_ID", type=_job_id, help="32 hex digits, as `ctxsync status` lists")
    p.add_argument("--dir", help="target directory URI (default: the cluster's state.savepoints.dir)")
    add_profile_args(p, "audit log")
    p.set_defaults(func=run_savepoint)

    p = _control_parser(sub, "cancel", "cancel a job, or stop it with a savepoint (--savepoint)",
                        "  ctxsync cancel 3f2a...e9\n  ctxsync cancel 3f2a...e9 --savepoint   # prints the path "
                        "to restore with submit --from-savepoint")
    p.add_argument("job_id", metavar="JOB_ID", type=_job_id, help="32 hex digits, as `ctxsync status` lists")
    p.add_argument("--savepoint", action="store_true", help="stop with a savepoint and print its path")
    p.add_argument("--dir", help="savepoint directory URI (default: the cluster's state.savepoints.dir)")
    add_profile_args(p, "audit log")
    p.set_defaults(func=run_cancel)

    p = _control_parser(sub, "status", "list the jobs on a Flink cluster, with their state and last checkpoint",
                        "  ctxsync status\n  ctxsync status --jobmanager flink-jobmanager:8081")
    p.set_defaults(func=run_status)


def _jobmanager(args: argparse.Namespace) -> str:
    from pipelines.flink.client import default_jobmanager

    if args.jobmanager:
        host, sep, port = args.jobmanager.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"--jobmanager expects HOST:PORT, got {args.jobmanager!r}")
        return args.jobmanager
    try:
        return default_jobmanager()
    except ClusterError as exc:
        raise ConfigError(str(exc)) from exc


def run_submit(args: argparse.Namespace) -> int:
    from ctxsync.audit import record_action
    from pipelines.flink import client as fc

    job = resolve_job(args.jobs, args.job, args.overrides)  # fail here, not inside the Flink client
    file_profile = job.profile(args.profile).source.type == "file"
    if file_profile and (args.input is None or args.out is None):
        raise ConfigError(f"profile {args.profile!r} reads a file: give --input FILE and --out DIR")
    if file_profile:
        check_input_file(args.input)
    else:  # the endpoints resolve and answer here, not in a stack trace from the cluster
        from ctxsync.io.clients import kafka_config
        from ctxsync.io.kafka_io import check_reachable
        from ctxsync.servers import running_endpoints

        profile = resolve_profile(job.profile(args.profile), args.profile, running_endpoints(args.dev_dir))
        check_reachable(kafka_config(profile))
    jobmanager = _jobmanager(args)
    record_action(args.profile, "submit", {"job": args.job, "jobmanager": jobmanager,
                                           "from_savepoint": args.from_savepoint or "",
                                           "parallelism": str(args.parallelism or job.parallelism)},
                  job=job, dev_dir=args.dev_dir, actor=args.actor)
    submission = fc.Submission(args.job, args.profile, jobmanager, args.parallelism, args.from_savepoint,
                               tuple(args.overrides), args.jobs, args.input, args.out, args.dev_dir)
    progress = Progress(f"submit {args.job}")
    progress.note(f"building the job graph and submitting to {jobmanager}")
    job_id = fc.submit(submission)
    print(f"submitted {args.job} [{args.profile}] as job {job_id}")
    print(f"  web UI: http://{jobmanager}/#/job/running/{job_id}/overview")
    if not args.wait:
        return 0
    state = fc.wait_for_state(jobmanager, job_id, fc.TERMINAL, timeout_s=24 * 3600, progress=progress)
    if state != "FINISHED":
        raise ClusterError(f"job {job_id} ended {state}: {fc.failure_cause(jobmanager, job_id)}",
                           f"web UI: http://{jobmanager}/#/job/completed/{job_id}/exceptions")
    progress.done(f"job {job_id} finished")
    if file_profile:
        from ctxsync.commands.run import print_summary

        print_summary(fc.merge_file_outputs(args.out), args.out)
    return 0


def _record(args: argparse.Namespace, action: str, jobmanager: str) -> None:
    """Audit a control action on a job that exists (an unknown id or a cluster that is down fails first)."""
    from ctxsync.audit import record_action
    from pipelines.flink import client as fc

    name = fc.job_detail(jobmanager, args.job_id).get("name", "")
    record_action(args.profile, action, {"flink_job": args.job_id, "name": name, "jobmanager": jobmanager,
                                         "with_savepoint": str(action == "savepoint" or args.savepoint).lower(),
                                         "dir": args.dir or ""},
                  job=resolve_job(args.jobs, args.job, []), actor=args.actor)


def run_savepoint(args: argparse.Namespace) -> int:
    from pipelines.flink import client as fc

    jobmanager = _jobmanager(args)
    _record(args, "savepoint", jobmanager)
    print(fc.savepoint(jobmanager, args.job_id, args.dir))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from pipelines.flink import client as fc

    jobmanager = _jobmanager(args)
    _record(args, "cancel", jobmanager)
    if args.savepoint:
        print(fc.stop_with_savepoint(jobmanager, args.job_id, args.dir))
    else:
        fc.cancel(jobmanager, args.job_id)
        print(f"job {args.job_id} cancelled")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pipelines.flink import client as fc

    jobmanager = _jobmanager(args)
    jobs = fc.jobs_overview(jobmanager)
    if not jobs:
        print(f"no jobs on {jobmanager}")
    for job in sorted(jobs, key=lambda j: j["start-time"], reverse=True):
        started = datetime.fromtimestamp(job["start-time"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        line = f"{job['jid']}  {job['state']:<10} {job['name']}  started {started}, {job['duration'] / 1000:,.0f}s"
        checkpoint = job.get("last_checkpoint")
        if checkpoint:
            age = time.time() - checkpoint["latest_ack_timestamp"] / 1000
            line += f"; last checkpoint #{checkpoint['id']} {age:,.0f}s ago"
        print(line)
    return 0

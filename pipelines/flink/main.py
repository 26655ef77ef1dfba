"""Entry script of a ctxsync job on a Flink cluster: `flink run --python pipelines/flink/main.py -- ARGS`.

Flink's CLI runs this file on the client to build the job graph, then ships the graph, the Python files
given with `-pyfs` and the jars in `pipeline.jars` to the cluster. Checkpoint storage, state backend and
restart strategy come from the cluster's config.yaml; the job only adds what it needs itself (the Kafka
profiles' checkpoint interval, because exactly-once Kafka outputs are committed at checkpoints).

Profiles (jobs.yaml):
  embedded  FileSource(--input) -> context-sync -> FileSink(--out/_parts); `ctxsync submit --wait`
            merges the committed part files into the contract layout.
  kafka     (e.g. local, prod) Kafka -> context-sync -> Kafka output topics (pipelines/flink/kafka.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file by Flink's Python driver: our packages importable, and this
    sys.path[0] = str(Path(__file__).resolve().parents[2])  # folder's modules (kafka, env...) not top-level

from ctxsync.config import JobConfig, apply_overrides, resolve_job  # noqa: E402

# Set on the cluster (config.yaml / -pyexec / -pyfs), never by the job: the client's paths are not the workers'.
CLUSTER_KEYS = ("python.executable", "python.client.executable", "python.pythonpath")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pipelines/flink/main.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", help="job name in jobs.yaml")
    p.add_argument("--jobs", type=Path, default=Path("jobs.yaml"))
    p.add_argument("--profile", default="embedded")
    p.add_argument("--parallelism", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--input", type=Path, help="embedded profile: JSON Lines input file")
    p.add_argument("--out", type=Path, help="embedded profile: output dir (part files land in OUT/_parts)")
    p.add_argument("--dev-dir", type=Path, help="state dir of `ctxsync dev up`, for ${dev:...} endpoints")
    p.add_argument("--name", help="job name shown in the Flink web UI")
    return p.parse_args(argv)


def job_flink_conf(job: JobConfig, jars: list[str]) -> dict[str, str]:
    from pipelines.flink.env import flink_configuration

    conf = {k: v for k, v in flink_configuration(job.flink, jars).items() if k not in CLUSTER_KEYS}
    conf.update({k: v for k, v in job.flink.items() if k in CLUSTER_KEYS})  # a job may still insist
    return conf


def environment(conf: dict[str, str], parallelism: int):
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    configuration = Configuration()
    for key, value in conf.items():
        configuration.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(configuration)
    env.set_parallelism(parallelism)
    return env


def build_file_job(job: JobConfig, input_path: Path, out_dir: Path, parallelism: int):
    """FileSource -> context-sync -> FileSink; part files are committed by checkpoints.

    Like the embedded runner's, this job fails instead of restarting (FILE_JOB_CONFIG).
    """
    from pipelines.flink.files import FILE_JOB_CONFIG, PARTS_DIR, tagged_line_sink, text_lines
    from pipelines.flink.sync import sync_stream

    env = environment({**job_flink_conf(job, []), **FILE_JOB_CONFIG}, 1)
    lines = text_lines(env, input_path).uid("read-lines")
    cache_size = int(job.flink.get("python.state.cache-size", "10000"))
    outputs = sync_stream(env, lines, job.settings.to_settings(), str(input_path), parallelism,
                          job.batching.to_batching(), cache_size)
    outputs.sink_to(tagged_line_sink(out_dir.resolve() / PARTS_DIR)).set_parallelism(parallelism) \
        .name("tagged outputs").uid("file-sink")
    return env


def build_kafka_job(job: JobConfig, job_name: str, profile_name: str, parallelism: int, dev_dir: Path | None):
    """Kafka -> context-sync -> Kafka (pipelines/flink/kafka.py), with the connector jars shipped."""
    from ctxsync.config import resolve_profile, sync_settings
    from ctxsync.io.clients import kafka_config, kafka_sink
    from ctxsync.jars import kafka_jars
    from ctxsync.servers import running_endpoints
    from pipelines.flink.kafka import build_kafka_job as add_kafka_job
    from pipelines.flink.kafka import job_spec

    profile = resolve_profile(job.profiles[profile_name], profile_name, running_endpoints(dev_dir))
    spec = job_spec(profile, job_name)
    sink = kafka_sink(profile)
    if sink.create_topics:
        create_topics(kafka_config(profile), spec, sink.partitions)
    jars = [str(p) for p in kafka_jars()]
    env = environment(job_flink_conf(job, jars), parallelism)
    env.enable_checkpointing(spec.checkpoint_interval_ms)
    cache_size = int(job.flink.get("python.state.cache-size", "10000"))
    add_kafka_job(env, spec, sync_settings(job, profile), parallelism, job.batching.to_batching(), cache_size)
    return env


def create_topics(config: dict, spec, partitions: int) -> None:
    """Create missing input and output topics (local servers); the view changelog is compacted."""
    from ctxsync.io.kafka_io import TopicSpec, ensure_topics

    ensure_topics(config, [TopicSpec(spec.input_topic, partitions),
                           TopicSpec(spec.views_topic, partitions, (("cleanup.policy", "compact"),)),
                           TopicSpec(spec.history_topic, partitions), TopicSpec(spec.violations_topic, partitions),
                           TopicSpec(spec.dlq_topic, 1)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    job = resolve_job(args.jobs, args.job, args.overrides)
    if args.parallelism is not None:
        job = apply_overrides(job, [f"parallelism={args.parallelism}"])
    if args.profile not in job.profiles:
        raise SystemExit(f"job {args.job!r} has no profile {args.profile!r}; profiles: {', '.join(job.profiles)}")
    if job.type != "context-sync":
        raise SystemExit(f"job type {job.type!r} cannot run on a cluster yet (context-sync only)")
    if job.profiles[args.profile].source.type == "file":
        if args.input is None or args.out is None:
            raise SystemExit("the file profile needs --input FILE and --out DIR")
        env = build_file_job(job, args.input, args.out, job.parallelism)
    else:
        env = build_kafka_job(job, args.job, args.profile, job.parallelism, args.dev_dir)
    env.execute(args.name or f"ctxsync {args.job} [{args.profile}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

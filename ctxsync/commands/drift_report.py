"""`ctxsync drift-report`: draw a drift.jsonl as one self-contained HTML page."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ctxsync.commands.profile_args import add_profile_args, profile_from_args
from ctxsync.config import ElasticsearchEndpoint
from ctxsync.drift_report import render_report
from ctxsync.errors import UsageError, check_writable_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift-report", help="draw drift.jsonl as an HTML page and/or publish it to Kafka and Elasticsearch",
        description="Write one self-contained HTML page (inline SVG, works offline) with a chart per\n"
                    "attribute: drift scores over time as multiples of their thresholds, alert windows\n"
                    "shaded, and the distribution per window. With --kafka / --es, also publish the\n"
                    "records to topic context.drift and index context-drift (idempotent). Without a\n"
                    "value, --kafka / --es use the profile's output Kafka cluster and Elasticsearch with\n"
                    "their security (TLS, SASL, username/password, CA).\n\nexamples:\n"
                    "  ctxsync run context-drift --input events.jsonl --out out/drift\n"
                    "  ctxsync drift-report out/drift/drift.jsonl --html out/drift.html\n"
                    "  ctxsync drift-report out/drift/drift.jsonl --kafka 127.0.0.1:9092 --es http://127.0.0.1:9200\n"
                    "  ctxsync drift-report out/drift/drift.jsonl --kafka --es --profile prod",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("drift", type=Path, metavar="DRIFT.jsonl", help="drift records written by context-drift")
    p.add_argument("--html", type=Path, help="output HTML file (parent directories are created)")
    p.add_argument("--title", default=None, help="page title (default: Context drift – <input file>)")
    p.add_argument("--kafka", metavar="BOOTSTRAP", nargs="?", const=FROM_PROFILE,
                   help="publish to Kafka topic context.drift: BOOTSTRAP in plaintext, or without a value the "
                        "profile's output cluster with its security")
    p.add_argument("--es", metavar="URL", nargs="?", const=FROM_PROFILE,
                   help="publish to Elasticsearch index context-drift: URL without credentials, or without a "
                        "value the profile's elasticsearch endpoint (https, login, CA)")
    add_profile_args(p, "Kafka and Elasticsearch (for --kafka / --es without a value)")
    p.set_defaults(func=run)


FROM_PROFILE = ""  # --kafka / --es given without a value


def run(args: argparse.Namespace) -> int:
    if not (args.html or args.kafka is not None or args.es is not None):
        raise UsageError("say where to", "give --html FILE, --kafka BOOTSTRAP and/or --es URL")
    if args.html:
        check_writable_file(args.html, "HTML page")
    records = _read_records(args.drift)
    alerts = sum(1 for r in records if r["alerts"])
    if args.html:
        args.html.write_text(render_report(records, args.title or f"Context drift – {args.drift}"), encoding="utf-8")
        print(f"{len(records)} window records, {alerts} with alerts -> {args.html}")
    return _publish(args, records)


DRIFT_FIELDS = ("windowStart", "category", "attribute", "scores", "thresholds", "alerts", "categorical")


def _read_records(path: Path) -> list[dict]:
    """The drift records of a context-drift run; anything else is refused with what it is."""
    hint = "give the drift.jsonl that `ctxsync run context-drift` writes"
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")  # not splitlines: U+2028 may sit inside JSON
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "check the path") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})", hint) from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number} is not JSON: {exc.msg}", hint) from exc
        missing = [k for k in DRIFT_FIELDS if k not in record] if isinstance(record, dict) else DRIFT_FIELDS
        if missing:
            raise UsageError(f"{path}:{number} is not a drift record (no {', '.join(missing)})", hint)
        records.append(record)
    return records


def _publish(args: argparse.Namespace, records: list[dict]) -> int:
    from ctxsync.io.clients import es_client, kafka_config
    from ctxsync.io.search import ENGINES
    from pipelines.drift_sinks import DRIFT_INDEX, DRIFT_TOPIC, publish_to_es, publish_to_kafka

    profile = profile_from_args(args) if FROM_PROFILE in (args.kafka, args.es) else None
    if args.kafka is not None:
        config = kafka_config(profile) if args.kafka == FROM_PROFILE else {"bootstrap.servers": args.kafka}
        sent = publish_to_kafka(config, records)
        print(f"{sent} drift records -> Kafka {config['bootstrap.servers']} topic {DRIFT_TOPIC}")
    if args.es is not None:
        endpoint = profile.elasticsearch if args.es == FROM_PROFILE else ElasticsearchEndpoint(hosts=args.es)
        engine = profile.search.engine if profile else ENGINES[0]  # a bare --es URL: Elasticsearch's API
        written, rejected = publish_to_es(es_client(endpoint, engine), records, str(args.drift))
        print(f"{written} drift records -> Elasticsearch {endpoint.hosts} index {DRIFT_INDEX}")
        for r in rejected:
            print(f"  rejected {r.doc.id}: {r.error_type}: {r.reason}", file=sys.stderr)
        if rejected:
            return 1
    return 0

"""`ctxsync dlq list|show|redrive`: the dead letters of a profile, and re-driving them after a fix."""
from __future__ import annotations

import argparse
import json

from ctxsync.commands.arg_types import iso_time_ms, positive_int
from ctxsync.commands.profile_args import add_profile_args
from transforms.timestamps import format_iso_ms

SHOW_LIMIT = 50

DESCRIPTION = """\
list     counts of dead letters per reason and stage (how many were re-driven, how many failed again).
show     the dead letters themselves: when, reason, detail, origin, the payload (shortened), and their
         history (attempt n of a re-driven record, where it first failed, where it was re-driven to).
redrive  after a fix (schema, setting, producer), send the selected dead letters' original bytes to the
         input topic (keyed by userId) with headers ctxsync-redrive-of (the dead letter), ctxsync-origin
         (where it first failed) and ctxsync-redrive-attempt. Each re-drive is recorded in the compacted
         topic <dlq>.redriven: a dead letter is never sent twice, a record that fails again is
         dead-lettered again by the job and shown with its history, and a chain stops after
         --max-attempts re-drives (no loops). Dead letters of the connectors (not events) are skipped.
         --limit N re-drives the N oldest selected (the next redrive continues after them); --dry-run
         lists what would be re-driven and writes nothing (no record, no ledger entry). With privacy on,
         payloads are stored encrypted: show and redrive decrypt them with the profile's key store (the
         master key is needed), and a dead letter whose user was erased has no payload left to re-drive.
         A payload of a user erased after it happened (`ctxsync erase`) is never sent back, privacy on or off.

--since/--until select by when the record was dead-lettered (its Kafka timestamp, UTC).

examples:
  ctxsync dlq list
  ctxsync dlq show --reason invalid_json --limit 5
  ctxsync dlq redrive --reason too_large --dry-run
  ctxsync dlq redrive --reason too_large --limit 10
  ctxsync dlq redrive --reason too_large --since 2026-12-02T00:00:00Z --until 2026-12-03T00:00:00Z
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="list, show and re-drive dead letters",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list", "show", "redrive"))
    p.add_argument("--reason", metavar="R", help="only dead letters with this reason (e.g. invalid_json)")
    p.add_argument("--since", type=iso_time_ms, metavar="T", help="only those dead-lettered at or after T")
    p.add_argument("--until", type=iso_time_ms, metavar="T", help="only those dead-lettered before T")
    p.add_argument("--limit", type=positive_int, help=f"show: at most this many (default {SHOW_LIMIT}); redrive: "
                   "re-drive at most this many, the oldest first (default: all selected)")
    p.add_argument("--json", action="store_true", help="show: JSON lines")
    p.add_argument("--max-attempts", type=positive_int, default=3,
                   help="redrive: re-drives per record before giving up (default 3)")
    p.add_argument("--dry-run", action="store_true", help="redrive: list what would be sent; send and record "
                   "nothing")
    add_profile_args(p, "Kafka")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctxsync.commands.profile_args import profile_from_args
    from ctxsync.config import resolve_job
    from ctxsync.privacy_lookup import privacy_lookup
    from ctxsync.io.clients import kafka_config, kafka_sink, kafka_source, redis_client
    from ctxsync.io.dead_letters import Selection, read_dead_letters, redrive, summarize
    from ctxsync.io.erase_record import EraseRecord, erased_events
    from ctxsync.io.history_topic import topic_ends
    from ctxsync.io.kafka_io import check_reachable

    profile = profile_from_args(args)
    config, topics = kafka_config(profile), kafka_sink(profile).topics
    check_reachable(config)
    topic_ends(config, topics.dlq)  # a missing topic: one line pointing at the job
    selection = Selection(args.reason, args.since, args.until)
    letters = read_dead_letters(config, topics.dlq)
    lookup = privacy_lookup(resolve_job(args.jobs, args.job, []), profile) if args.action != "list" else None
    if lookup:  # privacy on: raw and detail are encrypted; re-drive and show the original bytes
        for letter in letters:
            letter.record = lookup.readable(letter.record)
    chosen = [letter for letter in letters if selection.accepts(letter)]
    if args.action == "list":
        rows = summarize(chosen)
        width = max([len("reason")] + [len(r[0]) for r in rows]) + 2
        print(f"{'reason':<{width}}{'stage':<16}{'count':>8}{'re-driven':>11}{'failed again':>14}")
        for reason, stage, count, redriven, again in rows:
            print(f"{reason:<{width}}{stage:<16}{count:>8,}{redriven:>11,}{again:>14,}")
        print(f"{len(chosen):,} dead letters" + (f" of {len(letters):,}" if len(chosen) != len(letters) else "")
              + f" in {topics.dlq}")
        return 0
    if args.action == "show":
        for letter in chosen[:args.limit or SHOW_LIMIT]:
            if args.json:
                print(json.dumps({**letter.record, "position": letter.position,
                                  "deadLetteredAt": format_iso_ms(letter.written_ms), "attempt": letter.attempt,
                                  "firstOrigin": letter.first_origin, "redrivenTo": letter.redriven_to or None},
                                 separators=(",", ":")))
                continue
            raw = str(letter.record.get("raw", ""))
            print(f"{format_iso_ms(letter.written_ms)}  {letter.position}  {letter.reason} "
                  f"({letter.record.get('stage', '?')}) from {letter.origin}")
            print(f"  {letter.record.get('detail', '')}")
            print(f"  raw ({letter.record.get('rawEncoding', 'utf-8')}): {raw[:120]}{'…' if len(raw) > 120 else ''}")
            if letter.attempt:
                print(f"  failed again after re-drive {letter.attempt}; first failed at {letter.first_origin}")
            if letter.redriven_to:
                print(f"  re-driven to {letter.redriven_to}")
        return 0 if chosen else 1
    erased = erased_events(EraseRecord(redis_client(profile.redis), profile.redis.prefix)) if profile.redis else None
    result = redrive(config, letters, selection, kafka_source(profile).topic, topics.dlq, args.max_attempts,
                     args.dry_run, args.limit, erased)
    verb = "would re-drive" if args.dry_run else "re-drove"
    left = f" (--limit {args.limit}; {result.left:,} more selected)" if result.left else ""
    print(f"{verb} {len(result.sent):,} dead letters to {kafka_source(profile).topic}{left}; skipped: "
          f"{result.already:,} re-driven before, {result.gave_up:,} at {args.max_attempts} attempts, "
          f"{result.not_input:,} from the connectors (not events)"
          + (f", {result.shredded:,} whose payload is gone (user erased)" if result.shredded else "")
          + (f", {result.erased:,} of users erased after them (never sent back)" if result.erased else ""))
    for letter in result.sent:  # every one: this is what was sent, and what the ledger holds
        target = f" -> {letter.redriven_to}" if letter.redriven_to else ""
        print(f"  {letter.position} ({letter.reason}, attempt {letter.attempt + 1}){target}")
    return 0

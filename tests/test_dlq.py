"""Dead letters on Apache Kafka: listed by reason, shown with their history, re-driven after a fix to the input
topic with headers naming their origin; a record that fails again is dead-lettered again and re-driven at
most --max-attempts times (no loop). The job is stood in by its own operator functions (published.py)."""
from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from ctxsync.cli import main
from ctxsync.config import resolve_job
from ctxsync.io.dead_letters import (
    HEADER_ATTEMPT, HEADER_OF, HEADER_ORIGIN, Selection, read_dead_letters, read_ledger, redrive,
)
from ctxsync.io.kafka_io import producer, read_topic
from tests.fixtures_servers import servers, unique  # noqa: F401
from tests.helpers import event
from tests.published import published

pytestmark = pytest.mark.servers


def send(pub, payloads: list[bytes]) -> None:
    out = producer(pub.config)
    for payload in payloads:
        out.produce(pub.spec.input_topic, value=payload)
    assert out.flush(10) == 0


def test_redrive_after_a_fix_and_no_loop_for_what_keeps_failing(servers, unique, tmp_path, monkeypatch, capsys):
    pub = published(f"dl{unique}", servers, tmp_path, monkeypatch)
    settings = resolve_job(pub.jobs, "context-sync", []).settings.to_settings()
    strict = replace(settings, max_event_bytes=600)  # the setting that will be "fixed"
    big = event(eventId="big-1", contextDelta__userId="u-big")
    big["contextDelta"]["updates"]["segment"]["current"] = "x" * 700
    send(pub, [orjson.dumps(event(eventId="ok-1")), orjson.dumps(big), b'{"eventId": ', b"\xff\xfe not utf-8"])
    assert pub.process_input(strict) == 4
    cli = ["--jobs", str(pub.jobs)]

    assert main(["dlq", "list", *cli]) == 0
    listed = capsys.readouterr().out
    assert "too_large" in listed and "3 dead letters" in listed
    letters = read_dead_letters(pub.config, pub.spec.dlq_topic)
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 3 and "too_large" in reasons

    # the fix: the job runs with the normal limit again; only too_large is re-driven
    assert main(["dlq", "redrive", "--reason", "too_large", *cli]) == 0
    assert "re-drove 1 dead letters" in capsys.readouterr().out
    assert pub.process_input(settings) == 1
    history = [orjson.loads(m.value())["eventId"] for m in read_topic(pub.config, pub.spec.history_topic)]
    assert sorted(history) == ["big-1", "ok-1"]  # accepted now, nothing lost
    sent = [m for m in read_topic(pub.config, pub.spec.input_topic) if m.headers()]
    headers = dict(sent[0].headers())
    big_letter = next(letter for letter in letters if letter.reason == "too_large")
    assert headers[HEADER_OF].decode() == big_letter.position
    assert headers[HEADER_ORIGIN].decode() == big_letter.origin and headers[HEADER_ATTEMPT] == b"1"
    assert sent[0].value() == big_letter.payload() and sent[0].key() == b"u-big"

    # the rest cannot be fixed: each re-drive fails again, is dead-lettered with its history, then stops
    for attempt in (1, 2):
        result = redrive(pub.config, read_dead_letters(pub.config, pub.spec.dlq_topic), Selection(),
                         pub.spec.input_topic, pub.spec.dlq_topic, max_attempts=2)
        assert len(result.sent) == 2
        assert pub.process_input(settings) == 2
        again = [x for x in read_dead_letters(pub.config, pub.spec.dlq_topic) if x.attempt == attempt]
        assert len(again) == 2 and {x.first_origin for x in again} == \
            {x.origin for x in letters if x.reason != "too_large"}
    final = redrive(pub.config, read_dead_letters(pub.config, pub.spec.dlq_topic), Selection(),
                    pub.spec.input_topic, pub.spec.dlq_topic, max_attempts=2)
    assert (len(final.sent), final.gave_up, final.already) == (0, 2, 5)
    assert pub.process_input(settings) == 0  # nothing was sent: no loop

    assert main(["dlq", "show", "--json", *cli]) == 0
    shown = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(shown) == 7 and sorted(s["attempt"] for s in shown) == [0, 0, 0, 1, 1, 2, 2]
    assert all(s["redrivenTo"] for s in shown if s["attempt"] < 2)
    assert main(["dlq", "show", "--reason", "too_large", *cli]) == 0
    assert "re-driven to " + pub.spec.input_topic in capsys.readouterr().out


def test_selection_by_time_and_connector_dead_letters_are_left_alone(servers, unique, tmp_path, monkeypatch, capsys):
    pub = published(f"dm{unique}", servers, tmp_path, monkeypatch)
    out = producer(pub.config)
    for n, (origin, when) in enumerate([(f"{pub.spec.input_topic}/0/5", 1_700_000_000_000),
                                        (f"{pub.spec.input_topic}/0/6", 1_700_000_100_000),
                                        (f"{pub.spec.views_topic}/1/9", 1_700_000_000_000)]):
        record = {"reason": "invalid_json" if n < 2 else "bad_view_record", "detail": "d", "stage": "decode",
                  "raw": "{", "rawEncoding": "utf-8", "origin": origin}
        out.produce(pub.spec.dlq_topic, value=orjson.dumps(record), timestamp=when)
    assert out.flush(10) == 0
    letters = read_dead_letters(pub.config, pub.spec.dlq_topic)
    early = Selection(until_ms=1_700_000_050_000)
    result = redrive(pub.config, letters, early, pub.spec.input_topic, pub.spec.dlq_topic, dry_run=True)
    assert [x.origin for x in result.sent] == [f"{pub.spec.input_topic}/0/5"] and result.not_input == 1
    assert list(read_topic(pub.config, pub.spec.input_topic)) == []  # a dry run sends nothing
    assert main(["dlq", "list", "--since", "2023-11-14T22:14:20Z", "--jobs", str(pub.jobs)]) == 0
    assert "1 dead letters of 3" in capsys.readouterr().out


def test_limit_bounds_what_is_redriven_and_a_dry_run_writes_nothing(servers, unique, tmp_path, monkeypatch, capsys):
    """`--limit 2` re-drove all 10 matching dead letters (it only trimmed the printout); now it re-drives the
    2 oldest, the next redrive continues after them, and the ledger holds exactly what was sent."""
    pub = published(f"dn{unique}", servers, tmp_path, monkeypatch)
    send(pub, [orjson.dumps(event(eventId=f"cut-{n}"))[:40] for n in range(10)])
    assert pub.process_input(resolve_job(pub.jobs, "context-sync", []).settings.to_settings()) == 10
    cli = ["--reason", "invalid_json", "--jobs", str(pub.jobs)]
    oldest = [x.position for x in read_dead_letters(pub.config, pub.spec.dlq_topic)]

    def redriven() -> list[tuple[str, bytes]]:
        return [(dict(m.headers())[HEADER_OF].decode(), m.value())
                for m in read_topic(pub.config, pub.spec.input_topic) if m.headers()]

    assert main(["dlq", "redrive", "--limit", "2", "--dry-run", *cli]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"would re-drive 2 dead letters to {pub.spec.input_topic} (--limit 2; 8 more selected)")
    assert [line.split()[0] for line in lines[1:]] == oldest[:2]
    assert redriven() == [] and read_ledger(pub.config, pub.spec.dlq_topic) == {}  # nothing written

    assert main(["dlq", "redrive", "--limit", "2", *cli]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("re-drove 2 dead letters") and len(lines) == 3
    assert {p for p, _ in redriven()} == set(oldest[:2]) == set(read_ledger(pub.config, pub.spec.dlq_topic))
    assert main(["dlq", "redrive", "--limit", "3", *cli]) == 0
    assert "re-drove 3 dead letters" in capsys.readouterr().out
    assert main(["dlq", "redrive", *cli]) == 0
    assert "re-drove 5 dead letters" in capsys.readouterr().out
    sent = redriven()
    assert sorted(p for p, _ in sent) == sorted(oldest) == sorted(read_ledger(pub.config, pub.spec.dlq_topic))
    letters = {x.position: x for x in read_dead_letters(pub.config, pub.spec.dlq_topic)}
    assert all(value == letters[p].payload() for p, value in sent)

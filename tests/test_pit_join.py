"""Point-in-time join (DuckDB ASOF JOIN over the history export): every value is the one as of the row's
timestamp (ties at the row's time count, late events at their own time, never a later value), the same
as `views_as_of` at that moment."""
from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import orjson
import pytest

from ctxsync.cli import main
from ctxsync.consistency.as_of import views_as_of
from ctxsync.consistency.pit_join import export_history, pit_join
from ctxsync.errors import UsageError
from tests.helpers import SETTINGS
from tests.published import events_file
from tests.test_as_of import STREAM, T0, history_of, write
from transforms.timestamps import format_iso_ms, parse_iso_ms


def rows_of(path: Path) -> list[dict]:
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_ties_late_events_and_times_before_any_event(tmp_path):
    history = history_of(write(tmp_path / "events.jsonl", STREAM), tmp_path / "out")
    export_history(history, SETTINGS, tmp_path / "history.parquet")
    at = ["2026-11-17T09:59:59.999Z", f"{T0}0.000Z", f"{T0}2.000Z", f"{T0}4.999Z", f"{T0}5.000Z", f"{T0}6.000Z",
          "2026-11-17T11:00:00+01:00"]  # the last one is 10:00:00Z: a zone other than Z
    entities = write_csv(tmp_path / "labels.csv", [{"userId": "u1", "timestamp": t, "label": n}
                                                   for n, t in enumerate(at)] + [{"userId": "nobody",
                                                                                  "timestamp": at[-1], "label": 9}])
    count, attributes = pit_join(entities, tmp_path / "history.parquet", tmp_path / "train.parquet")
    assert count == 8 and attributes == ["segment", "timezone"]
    got = rows_of(tmp_path / "train.parquet")
    assert [r["label"] for r in got] == [0, 1, 2, 3, 4, 5, 6, 9]  # entity rows kept, in order, with their columns
    assert [r["segment"] for r in got] == [None, '"C"', '"L"', '"L"', '"D"', '"D"', '"C"', None]
    assert [r["timezone"] for r in got] == [None] * 5 + ['"Europe/Paris"', None, None]


def test_every_value_equals_as_of_on_a_generated_stream(tmp_path):
    history = history_of(events_file(tmp_path / "events.jsonl", events=600, users=8, seed=4), tmp_path / "out")
    export_history(history, SETTINGS, tmp_path / "history.parquet")
    docs = [orjson.loads(raw) for _, raw, _ in history]
    rows = [{"userId": d["contextDelta"]["userId"], "timestamp": d["timestamp"], "row": n}  # exactly at events
            for n, d in enumerate(docs[::13])]
    rows += [{**r, "timestamp": format_iso_ms(parse_iso_ms(r["timestamp"]) + delta), "row": 1000 + n}
             for n, r in enumerate(rows[:10]) for delta in (-1, 1)]  # 1 ms around an event
    duckdb.sql(f"COPY (SELECT * FROM read_json_auto('{write_jsonl(tmp_path / 'e.jsonl', rows)}')) "
               f"TO '{tmp_path / 'labels.parquet'}' (FORMAT parquet)")
    _, attributes = pit_join(tmp_path / "labels.parquet", tmp_path / "history.parquet", tmp_path / "train.parquet")
    checked = 0
    for row in rows_of(tmp_path / "train.parquet"):
        stamp = row["timestamp"] if isinstance(row["timestamp"], str) else row["timestamp"].isoformat()
        views = views_as_of(history, SETTINGS, parse_iso_ms(stamp), row["userId"])
        want = {name: orjson.dumps(a["value"]).decode() for v in views for name, a in v["attributes"].items()}
        for attribute in attributes:
            assert row[attribute] == want.get(attribute), (row["userId"], stamp, attribute)
            checked += 1
    assert checked > 300


def test_command_line_reuses_an_export_and_refuses_bad_entities(tmp_path, capsys):
    history = history_of(write(tmp_path / "events.jsonl", STREAM), tmp_path / "out")
    export_history(history, SETTINGS, tmp_path / "history.parquet")
    entities = write_csv(tmp_path / "labels.csv", [{"userId": "u1", "timestamp": f"{T0}3.000Z"}])
    assert main(["pit-join", str(entities), "--out", str(tmp_path / "t.parquet"), "--reuse-history",
                 "--history-parquet", str(tmp_path / "history.parquet")]) == 0
    assert "pit-join: 1 rows x 2 attributes" in capsys.readouterr().out
    assert rows_of(tmp_path / "t.parquet")[0]["segment"] == '"L"'
    with pytest.raises(UsageError, match="userId"):
        pit_join(write_csv(tmp_path / "bad.csv", [{"user": "u1", "timestamp": "x"}]), tmp_path / "history.parquet",
                 tmp_path / "x.parquet")
    assert main(["pit-join", str(tmp_path / "labels.txt"), "--out", str(tmp_path / "x.parquet"), "--reuse-history",
                 "--history-parquet", str(tmp_path / "history.parquet")]) == 2


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path

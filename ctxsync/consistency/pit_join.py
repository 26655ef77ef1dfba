"""Point-in-time join: attach to each (userId, timestamp) row every attribute's value as of that timestamp,
never a later one, with DuckDB's ASOF JOIN over a Parquet export of the history.

The export has one row per update that counts in event time (applied or stale: every update but those a
`reject` policy refused), so the join answers the same question as `as_of.views_as_of` without `seen_by`.
Updates of one attribute at the same millisecond are settled by the larger eventId first, as the job does,
so the ASOF match is deterministic. A value is JSON text (`"power"`, `0.5`, `true`); NULL when the
attribute had no value then (never set, or deleted).

With privacy on, the history names users by token: the command decrypts the values before the export (an
authorized caller) and the export keeps the tokens, so the entities' clear ids are mapped to tokens in the
join (`token`), never the other way round.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ctxsync.consistency.rebuild import EFFECTIVE, parse_history
from ctxsync.errors import UsageError
from transforms.privacy import TOKEN_PREFIX
from transforms.settings import SyncSettings

HISTORY_COLUMNS = {"userId": "VARCHAR", "category": "VARCHAR", "attribute": "VARCHAR", "ts": "BIGINT",
                   "eventId": "VARCHAR", "value": "VARCHAR", "confidence": "DOUBLE", "modelId": "VARCHAR"}


def export_history(records: Iterable[Sequence[Any]], settings: SyncSettings, out: Path) -> int:
    """Write the updates that count in event time to a Parquet file; returns the number of rows."""
    import duckdb

    by_user, _ = parse_history(records, settings)
    rows = 0
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as staging:
        for events in by_user.values():
            for event in events:
                counted = {name for part in EFFECTIVE for name in event.doc.get(part, ())}
                for category, updates in event.sub_events:
                    for attribute, current, confidence, _, _ in updates:
                        if attribute in counted:
                            staging.write(orjson.dumps({
                                "userId": event.user_id, "category": category, "attribute": attribute,
                                "ts": event.ts, "eventId": event.event_id,
                                "value": None if current is None else orjson.dumps(current).decode(),
                                "confidence": confidence, "modelId": event.model_id}) + b"\n")
                            rows += 1
        staging.flush()
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM read_json(?, format='newline_delimited', columns={HISTORY_COLUMNS!r}) "
                    "ORDER BY userId, attribute, ts, eventId) TO ? (FORMAT parquet)",
                    [staging.name, str(out)])
    return rows


ENTITIES_SQL = "CREATE TEMP TABLE entities AS SELECT row_number() OVER () AS _ctx_row, * FROM {reader}(?)"
UPDATES_SQL = """
CREATE TEMP TABLE updates AS  -- one value per (user, attribute, ms): the largest eventId wins, as in the job
    SELECT userId, attribute, ts, arg_max(value, eventId) AS value
    FROM read_parquet(?) GROUP BY userId, attribute, ts
"""
FOUND_SQL = """
CREATE TEMP TABLE found AS
    WITH wanted AS (
        SELECT e._ctx_row, {user} AS userId,
               epoch_ms(CAST(e."timestamp" AS TIMESTAMPTZ)) AS at_ms, a.attribute
        FROM entities e CROSS JOIN (SELECT DISTINCT attribute FROM updates) a)
    SELECT w._ctx_row, w.attribute, u.value
    FROM wanted w ASOF LEFT JOIN updates u
      ON w.userId = u.userId AND w.attribute = u.attribute AND w.at_ms >= u.ts
"""


def names_tokens(history_parquet: Path) -> bool:
    """Does the export name users by token (`pt:...`: exported from a profile with privacy on)?"""
    import duckdb

    found = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?) WHERE starts_with(userId, ?)",
                                     [str(history_parquet), TOKEN_PREFIX]).fetchone()
    return bool(found and found[0])


def pit_join(entities: Path, history_parquet: Path, out: Path, token: Callable[[str], str] | None = None
             ) -> tuple[int, list[str]]:
    """Write `entities` plus one column per attribute (value as of each row's timestamp) to `out` (Parquet);
    returns (rows, attribute columns). `token`: the user id -> token mapping of an export that names users
    by token (privacy on); the entities keep their clear ids."""
    import duckdb

    readers = {".csv": "read_csv_auto", ".parquet": "read_parquet"}
    reader = readers.get(entities.suffix.lower())
    if reader is None:
        raise UsageError(f"{entities}: entities must be a .csv or .parquet file")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # timestamps without a zone are UTC, like every time in ctxsync
    columns = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(entities)]).fetchall()]
    missing = [c for c in ("userId", "timestamp") if c not in columns]
    if missing:
        raise UsageError(f"{entities}: column(s) {', '.join(missing)} missing (found: {', '.join(columns)})")
    con.execute(ENTITIES_SQL.format(reader=reader), [str(entities)])
    con.execute(UPDATES_SQL, [str(history_parquet)])
    user = "CAST(e.userId AS VARCHAR)"
    if token is not None:
        con.create_function("ctx_token", token, [duckdb.sqltype("VARCHAR")], duckdb.sqltype("VARCHAR"))
        user = f"ctx_token({user})"
    con.execute(FOUND_SQL.format(user=user))
    attributes = [r[0] for r in con.execute("SELECT DISTINCT attribute FROM updates ORDER BY 1").fetchall()]
    taken = set(columns)
    names = {a: (a if a not in taken else f"ctx_{a}") for a in attributes}
    pivot = ", ".join(f"max(value) FILTER (WHERE attribute = {_quote_text(a)}) AS {_quote_name(names[a])}"
                      for a in attributes)
    select = f", {pivot}" if pivot else ""
    con.execute(f"COPY (SELECT e.* EXCLUDE (_ctx_row){', p.* EXCLUDE (_ctx_row)' if pivot else ''} FROM entities e "
                f"LEFT JOIN (SELECT _ctx_row{select} FROM found GROUP BY _ctx_row) p USING (_ctx_row) "
                f"ORDER BY e._ctx_row) TO ? (FORMAT parquet)", [str(out)])
    rows = con.execute("SELECT count(*) FROM entities").fetchone()[0]
    return rows, [names[a] for a in attributes]


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

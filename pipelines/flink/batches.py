"""The Java half of the batched context-sync graph, in Flink SQL: key extraction, buckets, windowed batches.

    events table (payload text, seq, part, time attributes)
      -> bucket = md5(JSON_VALUE(payload, '$.contextDelta.userId'))[16 bits] mod B (transforms.batching.bucket_of)
      -> tumbling window per bucket: ARRAY_AGG of framed payloads, in arrival order, joined into one string
      -> one row (bucket, batch) per bucket and window: the only thing that crosses into Python

Why windows on two clocks: a bounded input (a file, a bounded Kafka read) ends with a final watermark that
closes every window, so those use ingestion time (`rt`, stamped in Java, watermark 1 ms behind); processing-
time windows would drop the last open windows at end of input. An unbounded input uses processing time
(`pt`), which closes windows even when the input goes quiet.
Why ARRAY_AGG and not LISTAGG: LISTAGG re-concatenates its accumulator per row (quadratic in the window).
"""
from __future__ import annotations

from typing import Any

from transforms.batching import Batching

# What a table needs to be batched: a proctime column and an ingestion-time rowtime with its watermark.
INGESTION_TIME_SQL = "CAST(CURRENT_TIMESTAMP AS TIMESTAMP_LTZ(3))"
WATERMARK_SQL = "`rt` - INTERVAL '0.001' SECOND"
TIME_COLUMNS_SQL = f"`pt` AS PROCTIME(),\n  `rt` AS {INGESTION_TIME_SQL},\n  WATERMARK FOR `rt` AS {WATERMARK_SQL}"


def bucket_sql(digest: str, buckets: int) -> str:
    """SQL for transforms.batching.bucket_of, given `digest` = MD5 hex of the userId: its first 16 bits."""
    nibbles = [f"(POSITION(SUBSTRING({digest} FROM {i + 1} FOR 1) IN '0123456789abcdef') - 1) * {16 ** (3 - i)}"
               for i in range(4)]
    return f"MOD({' + '.join(nibbles)}, {buckets})"


def _interval(ms: int) -> str:
    return f"INTERVAL '{ms / 1000:.3f}' SECOND"


def batches(t_env: Any, source: str, payload_text: str, user_text: str, seq: str, part: str,
            batching: Batching, bounded: bool, name: str = "ctx") -> Any:
    """The table of (bucket INT, batch STRING) over table or view `source`; batch items are framed as in
    transforms.batching.frame: `<length> <seq> <part> <payload>`."""
    clock = "rt" if bounded else "pt"
    t_env.execute_sql(
        f"CREATE TEMPORARY VIEW {name}_framed AS SELECT `{clock}` AS wt, "
        f"{bucket_sql('h', batching.buckets)} AS bucket, "
        f"CONCAT(CAST(CHAR_LENGTH({payload_text}) AS STRING), ' ', CAST({seq} AS STRING), ' ', "
        f"CAST({part} AS STRING), ' ', {payload_text}) AS item FROM (SELECT *, "
        f"MD5(COALESCE(JSON_VALUE({user_text}, '$.contextDelta.userId'), '')) AS h FROM {source})")
    return t_env.sql_query(
        f"SELECT bucket, ARRAY_JOIN(ARRAY_AGG(item), '') AS batch "
        f"FROM TABLE(TUMBLE(TABLE {name}_framed, DESCRIPTOR(wt), {_interval(batching.window_ms)})) "
        f"GROUP BY window_start, window_end, bucket")


def line_batches(t_env: Any, lines: Any, batching: Batching) -> Any:
    """Batches of a file's lines (a DataStream of ISO-8859-1 text): lines are numbered in Java, in arrival
    order (a running count at parallelism 1), which is the seq and the line number of `origin`."""
    from pyflink.table import DataTypes, Schema

    schema = (Schema.new_builder().column("f0", DataTypes.STRING())
              .column_by_expression("pt", "PROCTIME()")
              .column_by_expression("rt", INGESTION_TIME_SQL)
              .watermark("rt", WATERMARK_SQL).build())
    t_env.create_temporary_view("ctx_lines", t_env.from_data_stream(lines, schema))
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW ctx_numbered AS SELECT f0 AS line, pt, rt, "
        "COUNT(*) OVER (ORDER BY pt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seq FROM ctx_lines")
    return batches(t_env, "ctx_numbered", "line", "DECODE(ENCODE(line, 'ISO-8859-1'), 'UTF-8')", "seq", "0",
                   batching, bounded=True)

"""The engine's floor: same source, shuffle and sink as context-sync, but a stateless keyed step.

It parses each line, keys it by userId and emits it unchanged, so its cost is what Flink and the
Python crossings cost before any of our logic runs.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from pyflink.common import Encoder, Types, WatermarkStrategy
from pyflink.datastream import FlatMapFunction, KeyedProcessFunction
from pyflink.datastream.connectors.file_system import BucketAssigner, FileSink, FileSource, StreamFormat

from pipelines.flink_env import flink_environment


class ParseAndKey(FlatMapFunction):
    def flat_map(self, value: str):
        raw = value.encode("latin-1")
        try:
            doc = orjson.loads(raw)
            yield doc["contextDelta"]["userId"], raw.decode("utf-8")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            yield "", value


class Emit(KeyedProcessFunction):
    def process_element(self, value, ctx):
        yield value[1]


def build(input_path: Path, parts: Path, flink_conf: dict[str, str], parallelism: int):
    env = flink_environment(flink_conf, parallelism=1)
    env.enable_checkpointing(1000)
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format("ISO-8859-1"), str(input_path.resolve())).build()
    keyed = (env.from_source(source, WatermarkStrategy.no_watermarks(), "read lines")
             .flat_map(ParseAndKey(), output_type=Types.PICKLED_BYTE_ARRAY()).set_parallelism(1)
             .key_by(lambda r: r[0], key_type=Types.STRING()))
    out = keyed.process(Emit(), output_type=Types.STRING()).set_parallelism(parallelism)
    sink = (FileSink.for_row_format(str(parts), Encoder.simple_string_encoder("UTF-8"))
            .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner()).build())
    out.sink_to(sink).set_parallelism(parallelism)
    return env

"""The engine's floor: same source, shuffle, sink and checkpointing as context-sync, stateless keyed step.

It parses each line, keys it by userId and emits it unchanged, so its cost is what Flink and the
Python crossings cost before any of our logic runs.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from pyflink.common import Types
from pyflink.datastream import FlatMapFunction, KeyedProcessFunction

from pipelines.flink.env import flink_environment
from pipelines.flink.files import CHECKPOINT_INTERVAL_MS, local_file_job_config, tagged_line_sink, text_lines


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
    env = flink_environment({**local_file_job_config(parts), **flink_conf}, parallelism=1)
    env.enable_checkpointing(CHECKPOINT_INTERVAL_MS)
    keyed = (text_lines(env, input_path)
             .flat_map(ParseAndKey(), output_type=Types.PICKLED_BYTE_ARRAY()).set_parallelism(1)
             .key_by(lambda r: r[0], key_type=Types.STRING()))
    out = keyed.process(Emit(), output_type=Types.STRING()).set_parallelism(parallelism)
    out.sink_to(tagged_line_sink(parts)).set_parallelism(parallelism)
    return env

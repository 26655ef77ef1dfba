"""The batched shape's floor: context-sync's Java half (numbering, userId bucket, windowed batches), one
Python call per batch that parses each event and keys it by userId, and the same sink and checkpointing.

Its cost is what Flink, the SQL batching and one crossing per batch cost before any of our logic runs;
per-user state is read and written as in SyncBuckets (one put per user per batch) so the state backend's
cost is in the floor too.
"""
from __future__ import annotations

from pathlib import Path

import orjson
from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction
from pyflink.datastream.state import MapStateDescriptor
from pyflink.table import StreamTableEnvironment

from pipelines.flink.batches import line_batches
from pipelines.flink.env import flink_environment
from pipelines.flink.files import CHECKPOINT_INTERVAL_MS, local_file_job_config, tagged_line_sink, text_lines
from pipelines.flink.sync import keyed_batches
from transforms.batching import Batching, split_batch


class EmitBatch(KeyedProcessFunction):
    def open(self, runtime_context):
        self.users = runtime_context.get_map_state(
            MapStateDescriptor("users", Types.STRING(), Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value, ctx):
        out, touched = [], set()
        for _, _, payload in split_batch(value[1]):
            raw = payload.encode("latin-1")
            try:
                touched.add(orjson.loads(raw)["contextDelta"]["userId"])
            except (ValueError, KeyError, TypeError):
                pass
            out.append(payload)
        for user in touched:
            self.users.put(user, b"")
        yield "\n".join(out)


def build(input_path: Path, parts: Path, flink_conf: dict[str, str], parallelism: int, batching: Batching):
    env = flink_environment({**local_file_job_config(parts), **flink_conf}, parallelism=1)
    env.enable_checkpointing(CHECKPOINT_INTERVAL_MS)
    t_env = StreamTableEnvironment.create(env)
    keyed = keyed_batches(t_env, line_batches(t_env, text_lines(env, input_path), batching), batching.buckets)
    out = keyed.process(EmitBatch(), output_type=Types.STRING()).set_parallelism(parallelism)
    out.sink_to(tagged_line_sink(parts)).set_parallelism(parallelism)
    return env

"""The pre-training example: one masked sentence of a block, as a `tf.train.Example`.

Written by `beam_pipelines.make_pretraining_examples`, read by the REALM trainer.

Features:
  query_token_ids   int64[] the sentence's wordpieces (at most `features.query_length - 2`,
                            no [CLS]/[SEP]), masked ones replaced by the [MASK] id
  masked_positions  int64[] 0-based positions in query_token_ids that are masked, increasing
                            (+1 once packed behind [CLS])
  masked_token_ids  int64[] the original wordpiece at each masked position: the MLM targets
  block_id          int64   the block the sentence came from, to exclude from its candidates
  kind              bytes   "salient" (one salient span masked) or "random" (random wordpieces)
  sentence          bytes   the sentence as written (UTF-8), whole even where the query is a window

The directory's `manifest.json` (`PretrainingManifest`) lists the shards and the
settings they were made with.
"""

import dataclasses
from typing import Dict, List

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.corpus.block_records import int64_feature, read_parsed_records, text_feature
from realm_tf.features.ragged_rows import RaggedRows


@dataclasses.dataclass(frozen=True)
class PretrainingExample:
    query_token_ids: List[int]
    masked_positions: List[int]
    masked_token_ids: List[int]
    block_id: int
    kind: str
    sentence: str

    def to_example(self) -> tf.train.Example:
        ints, text = int64_feature, text_feature
        return tf.train.Example(
            features=tf.train.Features(
                feature={
                    "query_token_ids": ints(self.query_token_ids),
                    "masked_positions": ints(self.masked_positions),
                    "masked_token_ids": ints(self.masked_token_ids),
                    "block_id": ints([self.block_id]),
                    "kind": text(self.kind),
                    "sentence": text(self.sentence),
                }
            )
        )

    def serialize(self) -> bytes:
        # Map fields serialize in an order that may differ between processes; sorted,
        # every runner writes the same bytes.
        return self.to_example().SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, serialized: bytes) -> "PretrainingExample":
        features = tf.train.Example.FromString(serialized).features.feature
        return cls(
            query_token_ids=list(features["query_token_ids"].int64_list.value),
            masked_positions=list(features["masked_positions"].int64_list.value),
            masked_token_ids=list(features["masked_token_ids"].int64_list.value),
            block_id=features["block_id"].int64_list.value[0],
            kind=features["kind"].bytes_list.value[0].decode("utf-8"),
            sentence=features["sentence"].bytes_list.value[0].decode("utf-8"),
        )


# The parsing spec for tf.data; the id lists come back as int64 RaggedTensors.
PRETRAINING_FEATURE_SPEC = {
    "query_token_ids": tf.io.RaggedFeature(tf.int64),
    "masked_positions": tf.io.RaggedFeature(tf.int64),
    "masked_token_ids": tf.io.RaggedFeature(tf.int64),
    "block_id": tf.io.FixedLenFeature([], tf.int64),
    "kind": tf.io.FixedLenFeature([], tf.string),
    "sentence": tf.io.FixedLenFeature([], tf.string),
}


def parse_pretraining_examples(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """tf.string [batch] serialized examples -> dict of [batch] tensors (ragged id lists)."""
    return tf.io.parse_example(serialized, PRETRAINING_FEATURE_SPEC)


def read_pretraining_dataset(paths, parse_batch_size: int = 1024) -> tf.data.Dataset:
    """Pre-training examples from TFRecord shards, one parsed dict per element (id lists as 1-D int64)."""
    return read_parsed_records(paths, parse_pretraining_examples, parse_batch_size)


_BATCHING_FIELDS = ("query_token_ids", "masked_positions", "masked_token_ids", "block_id")


def parse_pretraining_columns(serialized: np.ndarray) -> Dict[str, object]:
    """object [n] serialized examples -> the fields batching needs, as numpy columns:
    "query_token_ids", "masked_positions", "masked_token_ids" as int64 `RaggedRows`
    [n, (ids)], "block_id" int64 [n]. The sentence and kind are left unparsed."""
    parsed = tf.io.parse_example(serialized, {k: PRETRAINING_FEATURE_SPEC[k] for k in _BATCHING_FIELDS})
    columns = {k: RaggedRows(parsed[k].values.numpy(), parsed[k].row_splits.numpy().astype(np.int64))
               for k in _BATCHING_FIELDS[:3]}
    return columns | {"block_id": parsed["block_id"].numpy()}

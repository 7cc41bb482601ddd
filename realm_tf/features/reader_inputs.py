"""Reader inputs for B queries x K retrieved blocks, and where each block's body lands in them.

The knowledge-augmented encoder reads `[CLS] query [SEP] body [SEP]` once per
(query, candidate). Span prediction and answer matching need to know, for each such
packing, at which position the body starts and how many of its tokens survived
truncation; both follow from the waterfall packing of `Featurizer.pack_reader` (the
query cut to `query_length - 2`, then the body cut to what is left).
"""

import dataclasses
from typing import Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.features.featurizer import FEATURE_KEYS
import tensorflow as tf


@dataclasses.dataclass
class ReaderInputs:
    """Attributes:
      features: {"input_word_ids", "input_mask", "input_type_ids"}: int32 [B, K, reader_length].
      body_offsets: int32 [B, K], position of the body's first token in the packing.
      body_lengths: int32 [B, K], how many body tokens the packing holds.
    """

    features: dict
    body_offsets: np.ndarray
    body_lengths: np.ndarray


def pack_reader_candidates(featurizer, query_tokens: tf.RaggedTensor,
                           bodies: Sequence[Sequence[Sequence[int]]]) -> ReaderInputs:
    """Packs each query with each of its K candidate bodies.

    Args:
      featurizer: the `Featurizer`.
      query_tokens: int64 ragged [B, (tokens)], the queries' WordPiece ids.
      bodies: B lists of K token-id lists (the null document: an empty list).
    """
    b, k = len(bodies), len(bodies[0])
    config = featurizer.config
    flat_bodies = [body for row in bodies for body in row]
    packed = featurizer.pack_reader(
        tf.gather(query_tokens, np.repeat(np.arange(b), k)),
        tf.ragged.constant(flat_bodies, dtype=tf.int64, ragged_rank=1))
    query_kept = np.minimum(query_tokens.row_lengths().numpy(), config.query_length - 2)
    room = np.maximum(config.reader_length - 3 - query_kept, 0)
    lengths = np.array([len(body) for body in flat_bodies], np.int64).reshape(b, k)
    return ReaderInputs(
        features={key: packed[key].numpy().reshape(b, k, config.reader_length) for key in FEATURE_KEYS},
        body_offsets=np.repeat((query_kept + 2)[:, None], k, axis=1).astype(np.int32),
        body_lengths=np.minimum(lengths, room[:, None]).astype(np.int32),
    )

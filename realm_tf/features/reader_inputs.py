"""Reader inputs for B queries x K retrieved blocks, and where each block's body lands in them.

The knowledge-augmented encoder reads `[CLS] query [SEP] body [SEP]` once per
(query, candidate). Span prediction and answer matching need to know, for each such
packing, at which position the body starts and how many of its tokens survived
truncation; both follow from the waterfall packing of `Featurizer.pack_reader` (the
query cut to `query_length - 2`, then the body cut to what is left).
"""

import dataclasses

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.features.featurizer import FEATURE_KEYS
from realm_tf.features.ragged_rows import RaggedRows


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


def pack_reader_candidates(featurizer, query_tokens: tf.RaggedTensor, bodies: RaggedRows,
                           num_candidates: int) -> ReaderInputs:
    """Packs each query with each of its K candidate bodies.

    Args:
      featurizer: the `Featurizer`.
      query_tokens: int64 ragged [B, (tokens)], the queries' WordPiece ids.
      bodies: [B * K, (tokens)] the candidates' body ids, query by query (query b's are rows
        b * K to b * K + K - 1); the null document is an empty row.
      num_candidates: K.
    """
    b, k = int(query_tokens.nrows()), num_candidates
    config = featurizer.config
    packed = featurizer.pack_reader(tf.gather(query_tokens, np.repeat(np.arange(b), k)), bodies.to_tensor())
    query_kept = np.minimum(query_tokens.row_lengths().numpy(), config.query_length - 2)
    room = np.maximum(config.reader_length - 3 - query_kept, 0)
    return ReaderInputs(
        features={key: packed[key].numpy().reshape(b, k, config.reader_length) for key in FEATURE_KEYS},
        body_offsets=np.repeat((query_kept + 2)[:, None], k, axis=1).astype(np.int32),
        body_lengths=np.minimum(bodies.lengths().reshape(b, k), room[:, None]).astype(np.int32),
    )

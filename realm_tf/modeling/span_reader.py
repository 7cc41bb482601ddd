"""The open-QA reader: BERT over `[CLS] question [SEP] block body [SEP]` and a span head.

Spans are laid out on a fixed grid, so every shape is static (TPU- and XLA-friendly):
span (p, w) starts at packing position p and ends at p + w, for w < max_span_length.
Its logits have shape [N, L, W] (L = reader_length, W = max_span_length); spans that
leave the body, start or end inside a word (on a "##" piece), or run off the end hold
`MASKED_LOGIT`, as in the released ORQA/REALM reader.
"""

from typing import NamedTuple, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

from realm_tf.configs import ReaderConfig
from realm_tf.features import FEATURE_KEYS
from realm_tf.modeling.encoders import build_bert_encoder, freeze_lower_layers

# Large enough that an invalid span never wins nor counts in a softmax, small enough
# to stay finite in float16/bfloat16 sums.
MASKED_LOGIT = -10000.0

def _shift_left(values: tf.Tensor, shift: int, fill) -> tf.Tensor:
    """values[:, p + shift] at position p of axis 1 (`fill` past the end)."""
    if shift == 0:
        return values
    padding = tf.fill(tf.concat([tf.shape(values)[:1], [shift], tf.shape(values)[2:]], 0),
                      tf.cast(fill, values.dtype))
    return tf.concat([values[:, shift:], padding], axis=1)


def span_grid(values: tf.Tensor, max_span_length: int, fill) -> tf.Tensor:
    """[N, L, ...] per end position -> [N, L, W, ...]: entry (p, w) holds values[:, p + w]."""
    return tf.stack([_shift_left(values, w, fill) for w in range(max_span_length)], axis=2)


def valid_spans(features, is_continuation: tf.Tensor, max_span_length: int) -> tf.Tensor:
    """bool [N, L, W]: the spans that lie inside the body and on word boundaries.

    Args:
      features: reader packing, int32 [N, L] each (the body is segment 1 up to its [SEP]).
      is_continuation: bool [vocab_size], whether a token id is a "##" piece.
      max_span_length: W.
    """
    word_ids = features["input_word_ids"]
    last = tf.reduce_sum(features["input_mask"], axis=1, keepdims=True) - 1  # The final [SEP].
    positions = tf.range(tf.shape(word_ids)[1])[None, :]
    in_body = (features["input_type_ids"] == 1) & (positions < last)
    word_start = ~tf.gather(is_continuation, word_ids)
    # A span may end where the next token starts a word (the final [SEP] does).
    word_end = in_body & _shift_left(word_start, 1, True)
    return (in_body & word_start)[:, :, None] & span_grid(word_end, max_span_length, False)


class BestSpan(NamedTuple):
    """Each question's best span over its K blocks (`best_span`); every field is [B].

    Attributes:
      score: float32, the span's logit (MASKED_LOGIT or below when none is valid).
      candidate: int32, which of the K blocks holds it.
      position: int32, its first wordpiece's position in that block's reader packing.
      width: int32, its length in wordpieces minus one.
      found: bool, whether any of the K blocks held a valid span.
    """

    score: tf.Tensor
    candidate: tf.Tensor
    position: tf.Tensor
    width: tf.Tensor
    found: tf.Tensor


def best_span(span_logits: tf.Tensor, max_answer_length) -> BestSpan:
    """The best span of at most `max_answer_length` wordpieces in each question's K blocks.

    The one decoder of the host-side predictor and the QA export. Ties go to the first
    span in (block, position, width) order.

    Args:
      span_logits: float32 [B, K, L, W], `SpanReader`'s logits per candidate.
      max_answer_length: int or int32 [], at most W.
    """
    logits = span_logits[..., :max_answer_length]
    shape = tf.shape(logits)
    length, widths = shape[2], shape[3]
    # Explicit sizes, not -1: an empty batch must reshape too.
    flat = tf.reshape(logits, [shape[0], shape[1] * length * widths])
    best = tf.argmax(flat, axis=1, output_type=tf.int32)
    score = tf.gather(flat, best, batch_dims=1)
    return BestSpan(score, best // (length * widths), best // widths % length, best % widths,
                    score > MASKED_LOGIT / 2)


class SpanScorer(tf_keras.layers.Layer):
    """ORQA's span head, an MLP over [h_start; h_end].

    score(s, e) = dense_1(LayerNorm(ReLU(start(h_s) + end(h_e)))), where `start` and
    `end` are the two halves of one Dense of 2 x `hidden_size` units over every token
    (the released checkpoint's `reader/dense`; the sum of the halves is the MLP's first
    layer applied to the concatenation). LayerNorm epsilon 1e-3, as released.

    Call with sequence float [N, L, H]; returns float32 [N, L, W] span scores.
    """

    def __init__(self, hidden_size: int, max_span_length: int, initializer_range: float,
                 name: str = "span_scorer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hidden_size = hidden_size
        self.max_span_length = max_span_length
        initializer = tf_keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.dense = tf_keras.layers.Dense(2 * hidden_size, kernel_initializer=initializer, name="dense")
        self.layer_norm = tf_keras.layers.LayerNormalization(epsilon=1e-3, name="layer_normalization")
        self.dense_1 = tf_keras.layers.Dense(1, kernel_initializer=initializer, name="dense_1")

    def call(self, sequence: tf.Tensor) -> tf.Tensor:
        start, end = tf.split(self.dense(sequence), 2, axis=-1)
        hidden = start[:, :, None, :] + span_grid(end, self.max_span_length, 0.0)
        scores = self.dense_1(self.layer_norm(tf.nn.relu(hidden)))
        return tf.cast(tf.squeeze(scores, -1), tf.float32)


class SpanReader(tf_keras.Model):
    """p(span | z, x) before normalization: BERT, then `SpanScorer`, invalid spans masked.

    Args:
      config: the reader's sizes.
      is_continuation: bool [vocab_size] (`Vocabulary.continuation_mask()`).

    Call with the reader packing, int32 [N, reader_length] each; returns
    (span logits float32 [N, L, W], valid bool [N, L, W]).
    """

    def __init__(self, config: ReaderConfig, is_continuation: np.ndarray, name: str = "reader", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.encoder = build_bert_encoder(config.encoder, name="bert")
        freeze_lower_layers(self.encoder, config.trainable_layers)
        self.span_scorer = SpanScorer(config.span_hidden_size, config.max_span_length,
                                      config.encoder.initializer_range)
        self._is_continuation = tf.constant(np.asarray(is_continuation, bool))

    def call(self, features, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
        sequence = self.encoder({k: features[k] for k in FEATURE_KEYS}, training=training)["sequence_output"]
        valid = valid_spans(features, self._is_continuation, self.config.max_span_length)
        logits = tf.where(valid, self.span_scorer(sequence), MASKED_LOGIT)
        return logits, valid

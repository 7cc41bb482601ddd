"""`OpenQaModel`: open-domain QA over a fixed index, and its fine-tuning loss.

Fine-tuning (REALM §3.3 and ORQA): the block embeddings are those of the index, built
once from the pre-trained document tower and kept fixed; the query tower and the
reader train. A question x is answered from its top-K blocks z:

  retrieval logit   S(x, z)    = Embed_query(x) . Embed_block(z)   (Embed_block from the index)
  span logit        S(x, z, s) = MLP([h_start; h_end]) + S(x, z)   (the retrieval score added,
                                                                     as in the released code)

and trained by the marginal log-likelihood of the answer, in two terms as ORQA (whose
fine-tuning REALM reuses):

  loss = -log sum_{z in beam, z correct} softmax_{z in beam}(S(x, z))
         -log sum_{(z, s) correct, z in top-K} softmax_{(z, s)}(S(x, z, s))

The first ("early update") ranges over the top C blocks (`finetune.retriever_beam_size`,
5000 in ORQA), a block being correct when its text contains an answer; the second over
the K blocks the reader reads and their spans, a span being correct when it matches an
answer. A term with nothing correct contributes no loss (ORQA multiplies each by "any
correct"); the shares of questions with an answer in the beam and in the top K are
reported as `answer_in_beam` and `answer_in_candidates`.
"""

from typing import Dict, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

from realm_tf.configs import ExperimentConfig
from realm_tf.features import FEATURE_KEYS
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.span_reader import MASKED_LOGIT, SpanReader


class OpenQaModel(tf_keras.Model):
    """The query tower and the span reader.

    Call with a batch (B questions, C >= K retrieved blocks each, the reader reading the first K):
      query:                query packing, int32 [B, query_length] each
      candidate_embeddings: float32 [B, C, projection_size], the retrieved blocks' rows of the index
      reader:               reader packing, int32 [B, K, reader_length] each

    Returns a dict:
      retrieval_logits: float32 [B, C], S(x, z)
      span_logits:      float32 [B, K, L, W], S(x, z, s); invalid spans `MASKED_LOGIT`
      span_valid:       bool [B, K, L, W]
    """

    def __init__(self, config: ExperimentConfig, is_continuation: np.ndarray, name: str = "open_qa", **kwargs):
        # No autocast: under mixed precision the float32 inputs (candidate embeddings,
        # retrieval scores) stay float32, and each sublayer casts what it computes in.
        super().__init__(name=name, autocast=False, **kwargs)
        self.query_embedder = ProjectedEmbedder(config.retriever, name="query_embedder")
        self.query_embedder.trainable = config.finetune.train_query_tower
        self.reader = SpanReader(config.reader, is_continuation)

    def call(self, batch, training=None) -> Dict[str, tf.Tensor]:
        reader = batch["reader"]["input_word_ids"]
        batch_size, num_candidates, length = tf.shape(reader)[0], tf.shape(reader)[1], tf.shape(reader)[2]
        # A frozen tower runs as at inference (no dropout): its retrieval logits, which the span
        # logits include, are then the ones evaluation and serving compute.
        queries = self.query_embedder(batch["query"], training=training if self.query_embedder.trainable else False)
        retrieval_logits = tf.einsum("bp,bkp->bk", queries, batch["candidate_embeddings"])
        flat = {k: tf.reshape(batch["reader"][k], [batch_size * num_candidates, length]) for k in FEATURE_KEYS}
        logits, valid = self.reader(flat, training=training)
        grid = tf.concat([[batch_size, num_candidates], tf.shape(logits)[1:]], axis=0)
        logits, valid = tf.reshape(logits, grid), tf.reshape(valid, grid)
        read = retrieval_logits[:, :num_candidates, None, None]
        return {
            "retrieval_logits": retrieval_logits,
            "span_logits": tf.where(valid, logits + read, MASKED_LOGIT),
            "span_valid": valid,
        }


def marginal_log_likelihood(logits: tf.Tensor, correct: tf.Tensor) -> tf.Tensor:
    """log of the softmax probability mass of the correct entries, over the last axis.

    Args:
      logits: float32 [B, N].
      correct: bool [B, N]. A row with no correct entry gives a large negative value,
        finite so that masking it out keeps gradients finite.

    Returns:
      float32 [B].
    """
    masked = tf.where(correct, logits, logits + MASKED_LOGIT)
    return tf.reduce_logsumexp(masked, axis=-1) - tf.reduce_logsumexp(logits, axis=-1)


def finetuning_loss(outputs: Dict[str, tf.Tensor], batch) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """The mean over questions of the retriever's and the reader's negative marginal log-likelihoods.

    Args:
      outputs: `OpenQaModel` outputs for `batch`.
      batch: with "retrieval_correct", float32 [B, C], 1 where a block of the beam
        contains an answer, and "answer_spans", float32 [B, K, L, W], 1 where a span of
        a read block matches an answer.

    Returns:
      (loss float32 [], metrics {"retriever_loss", "reader_loss", "answer_in_beam",
      "answer_in_candidates", "span_accuracy"}); span_accuracy counts questions whose
      best span is correct.
    """
    correct_blocks = batch["retrieval_correct"] > 0
    in_beam = tf.reduce_any(correct_blocks, axis=-1)
    retriever_loss = tf.where(in_beam, -marginal_log_likelihood(outputs["retrieval_logits"], correct_blocks), 0.0)
    span_logits = outputs["span_logits"]
    batch_size = tf.shape(span_logits)[0]
    flat_logits = tf.reshape(span_logits, [batch_size, -1])
    flat_correct = tf.reshape(batch["answer_spans"] > 0, [batch_size, -1])
    in_candidates = tf.reduce_any(flat_correct, axis=-1)
    reader_loss = tf.where(in_candidates, -marginal_log_likelihood(flat_logits, flat_correct), 0.0)
    best = tf.argmax(flat_logits, axis=-1, output_type=tf.int32)
    best_correct = tf.gather(flat_correct, best, batch_dims=1)
    share = lambda flags: tf.reduce_mean(tf.cast(flags, tf.float32))  # noqa: E731
    return tf.reduce_mean(retriever_loss + reader_loss), {
        "retriever_loss": tf.reduce_mean(retriever_loss),
        "reader_loss": tf.reduce_mean(reader_loss),
        "answer_in_beam": share(in_beam),
        "answer_in_candidates": share(in_candidates),
        "span_accuracy": share(best_correct),
    }

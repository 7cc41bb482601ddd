"""REALM's marginal likelihood over retrieved candidates, in log space, and the pre-training loss."""

from typing import Dict, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf


def retrieval_log_probs(query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor) -> tf.Tensor:
    """log p(z | x): log-softmax over each query's candidates of the inner products.

    Args:
      query_embeddings: float32 [B, P].
      candidate_embeddings: float32 [B, K, P].

    Returns:
      float32 [B, K].
    """
    scores = tf.einsum("bp,bkp->bk", query_embeddings, candidate_embeddings)
    return tf.nn.log_softmax(scores, axis=-1)


def marginal_token_log_likelihood(retrieval_log_probs: tf.Tensor, token_log_probs: tf.Tensor) -> tf.Tensor:
    """log p(y_j | x) = logsumexp_z(log p(z | x) + log p(y_j | z, x)), per masked token.

    The released REALM code marginalises over candidates separately for each masked
    token, not for the masked span as a whole.

    Args:
      retrieval_log_probs: float32 [B, K], log p(z | x).
      token_log_probs: float32 [B, K, M], log p(y_j | z, x) of each target token.

    Returns:
      float32 [B, M].
    """
    return tf.reduce_logsumexp(retrieval_log_probs[:, :, None] + token_log_probs, axis=1)


def pretraining_loss(outputs: Dict[str, tf.Tensor], batch) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """loss = -mean over masked tokens of log p(y_j | x), and the metrics of the paper's logs.

    Args:
      outputs: `RealmPretrainer` outputs for `batch`.
      batch: with "masked_weights" float32 [B, M], "masked_ids" int32 [B, M],
        "index_step" int64 [B].

    Returns:
      (loss float32 [], {"mlm_accuracy", "retrieval_utility", "index_step"}). The
      accuracy is that of the marginal predictive distribution p(y_j | x); the
      retrieval utility is the mean of log p(y_j | x) - log p(y_j | null document, x).
    """
    weights = batch["masked_weights"]
    num_targets = tf.reduce_sum(weights)
    replicas = 1
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        # Replicas hold different numbers of masked tokens: normalise by the global
        # count, scaled so that the trainer's mean over replicas (and its loss / replicas
        # before summing gradients) gives exactly the mean over all tokens of the batch.
        num_targets = context.all_reduce(tf.distribute.ReduceOp.SUM, num_targets)
        replicas = context.num_replicas_in_sync
    num_targets = tf.maximum(num_targets, 1.0)
    mean = lambda values: replicas * tf.reduce_sum(values * weights) / num_targets  # noqa: E731
    loss = -mean(outputs["marginal"])
    utility = mean(outputs["marginal"] - outputs["token_log_probs"][:, 0, :])
    marginal_predictive = tf.reduce_logsumexp(
        outputs["retrieval_log_probs"][:, :, None, None] + outputs["mlm_log_probs"], axis=1)
    correct = tf.cast(tf.equal(tf.argmax(marginal_predictive, axis=-1, output_type=tf.int32), batch["masked_ids"]),
                      tf.float32)
    return loss, {
        "mlm_accuracy": mean(correct),
        "retrieval_utility": utility,
        "index_step": tf.reduce_mean(tf.cast(batch["index_step"], tf.float32)),
    }

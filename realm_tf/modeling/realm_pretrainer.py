"""`RealmPretrainer`: the retriever and the knowledge-augmented encoder, trained together."""

from typing import Dict

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

from realm_tf.configs import ExperimentConfig
from realm_tf.features import FEATURE_KEYS
from realm_tf.modeling.marginal import marginal_token_log_likelihood, retrieval_log_probs
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import Retriever


class RealmPretrainer(tf_keras.Model):
    """Masked-LM through retrieval.

    Call with a batch (B queries, K candidates each, M masked tokens per query):
      query:            query packing, int32 [B, query_length] each
      candidates:       block packing, int32 [B, K, block_length] each; candidate 0 is
                        the null document
      reader:           reader packing, int32 [B, K, reader_length] each
      masked_positions: int32 [B, M], positions in the reader packing (the query comes
                        first, so also in the query packing)
      masked_ids:       int32 [B, M], the tokens to predict
      masked_weights:   float32 [B, M], 1 for real targets, 0 for padding

    Returns a dict:
      retrieval_log_probs: float32 [B, K], log p(z | x) with the current towers
      token_log_probs:     float32 [B, K, M], log p(y_j | z, x)
      marginal:            float32 [B, M], log p(y_j | x)
      mlm_log_probs:       float32 [B, K, M, V], log p(. | z, x), for metrics
    """

    def __init__(self, config: ExperimentConfig, name: str = "realm", **kwargs):
        # No autocast: under mixed precision the float32 inputs (candidate embeddings,
        # retrieval scores) stay float32, and each sublayer casts what it computes in.
        super().__init__(name=name, autocast=False, **kwargs)
        self.retriever = Retriever(config.retriever)
        self.reader = KnowledgeAugmentedEncoder(config.reader)

    def call(self, batch, training=None) -> Dict[str, tf.Tensor]:
        candidates = batch["candidates"]["input_word_ids"]
        batch_size, num_candidates = tf.shape(candidates)[0], tf.shape(candidates)[1]
        flat = lambda features: {k: tf.reshape(features[k], [batch_size * num_candidates, -1]) for k in FEATURE_KEYS}  # noqa: E731

        queries = self.retriever.embed_queries(batch["query"], training=training)
        blocks = self.retriever.embed_blocks(flat(batch["candidates"]), training=training)
        log_p_z = retrieval_log_probs(queries, tf.reshape(blocks, [batch_size, num_candidates, -1]))

        positions = tf.repeat(batch["masked_positions"], num_candidates, axis=0)
        logits = self.reader(flat(batch["reader"]), positions, training=training)
        vocab = tf.shape(logits)[-1]
        mlm_log_probs = tf.reshape(tf.nn.log_softmax(logits), [batch_size, num_candidates, -1, vocab])
        targets = tf.repeat(batch["masked_ids"][:, None, :], num_candidates, axis=1)
        token_log_probs = tf.gather(mlm_log_probs, targets, batch_dims=3)
        return {
            "retrieval_log_probs": log_p_z,
            "token_log_probs": token_log_probs,
            "marginal": marginal_token_log_likelihood(log_p_z, token_log_probs),
            "mlm_log_probs": mlm_log_probs,
        }

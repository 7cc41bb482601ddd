"""`KnowledgeAugmentedEncoder`: BERT over `[CLS] query [SEP] block body [SEP]` with a masked-LM head."""

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras
from official.nlp.modeling import layers

from realm_tf.configs import ReaderConfig
from realm_tf.features import FEATURE_KEYS
from realm_tf.modeling.encoders import activation, build_bert_encoder, freeze_lower_layers


class KnowledgeAugmentedEncoder(tf_keras.Model):
    """p(y | z, x) of REALM pre-training: one BERT reads the query and a candidate block.

    The masked-LM head is BERT's (dense + LayerNorm, then the word embeddings
    transposed plus a bias), Model Garden's `MaskedLM`.
    """

    def __init__(self, config: ReaderConfig, name: str = "reader", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.encoder = build_bert_encoder(config.encoder, name="bert")
        freeze_lower_layers(self.encoder, config.trainable_layers)
        # The head shares the word embeddings, which exist once the encoder is built.
        self.encoder({k: tf.zeros([1, 1], tf.int32) for k in FEATURE_KEYS})
        self.masked_lm = layers.MaskedLM(
            embedding_table=self.encoder.get_embedding_table(),
            activation=activation(config.encoder.hidden_activation),
            initializer=tf_keras.initializers.TruncatedNormal(stddev=config.encoder.initializer_range),
            name="cls/predictions",
        )

    def call(self, features, masked_positions, training=None) -> tf.Tensor:
        """Masked-LM logits.

        Args:
          features: reader packing, int32 [N, reader_length] each.
          masked_positions: int32 [N, M], positions in the packing to predict.

        Returns:
          float32 [N, M, vocab_size] logits.
        """
        sequence = self.encoder(
            {k: features[k] for k in FEATURE_KEYS}, training=training
        )["sequence_output"]
        # Logits in float32 under mixed precision: the marginal's logsumexp needs the range.
        return tf.cast(self.masked_lm(sequence, masked_positions=masked_positions), tf.float32)

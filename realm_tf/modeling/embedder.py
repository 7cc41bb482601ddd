"""`ProjectedEmbedder`: Embed(x) = LayerNorm(Dense(pool(BERT(x)))), REALM's retrieval embedding."""

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

from realm_tf.configs import RetrieverConfig
from realm_tf.configs.experiment import PROJECTION_INITIALIZERS
from realm_tf.features import FEATURE_KEYS
from realm_tf.modeling.encoders import build_bert_encoder

POOLINGS = ("cls", "mean")


class ProjectedEmbedder(tf_keras.layers.Layer):
    """One retriever tower.

    Call with {"input_word_ids", "input_mask", "input_type_ids"}: int32 [batch, length]
    (a query or block packing from `Featurizer`); returns float32 [batch, projection_size].
    With `config.pooling` "cls" the projection reads BERT's pooled output (tanh over
    [CLS]), as the released REALM embedder does; with "mean" it reads the mean of the
    sequence output over the unpadded positions ([CLS] and [SEP] included), as
    sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained.
    """

    def __init__(self, config: RetrieverConfig, name: str = "embedder", **kwargs):
        super().__init__(name=name, **kwargs)
        if config.pooling not in POOLINGS:
            raise ValueError(f"retriever.pooling {config.pooling!r} is not one of {POOLINGS}")
        self.pooling = config.pooling
        self.encoder = build_bert_encoder(config.encoder, name="bert")
        if config.projection_initializer not in PROJECTION_INITIALIZERS:
            raise ValueError(f"retriever.projection_initializer {config.projection_initializer!r} is not one of "
                             f"{PROJECTION_INITIALIZERS}")
        self.projection = tf_keras.layers.Dense(
            config.projection_size,
            kernel_initializer=(tf_keras.initializers.Identity() if config.projection_initializer == "identity"
                                else tf_keras.initializers.TruncatedNormal(stddev=config.encoder.initializer_range)),
            name="projection",
        )
        self.layer_norm = tf_keras.layers.LayerNormalization(
            epsilon=config.projection_norm_epsilon,
            gamma_initializer=tf_keras.initializers.Constant(config.projection_norm_gain),
            name="projection_layer_norm",
        )

    def call(self, features, training=None):
        outputs = self.encoder(
            {key: features[key] for key in FEATURE_KEYS}, training=training
        )
        if self.pooling == "cls":
            pooled = outputs["pooled_output"]
        else:
            sequence = outputs["sequence_output"]  # [batch, length, hidden]
            mask = tf.cast(features["input_mask"], sequence.dtype)[:, :, tf.newaxis]
            pooled = tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return tf.cast(self.layer_norm(self.projection(pooled)), tf.float32)

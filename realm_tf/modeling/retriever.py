"""`Retriever`: query and block towers whose inner product is the relevance f(x, z)."""

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

from realm_tf.configs import RetrieverConfig
from realm_tf.modeling.embedder import ProjectedEmbedder


class Retriever(tf_keras.Model):
    """p(z|x) = softmax_z(Embed_query(x) · Embed_block(z)).

    The two towers are one `ProjectedEmbedder` when `config.share_towers` (the released
    REALM code), two otherwise. Features are `Featurizer` packings: int32 [batch, length].
    """

    def __init__(self, config: RetrieverConfig, name: str = "retriever", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.query_embedder = ProjectedEmbedder(config, name="query_embedder")
        self.block_embedder = (
            self.query_embedder if config.share_towers else ProjectedEmbedder(config, name="block_embedder")
        )

    def embed_queries(self, features, training=None) -> tf.Tensor:
        """Query packings -> float32 [batch, projection_size]."""
        return self.query_embedder(features, training=training)

    def embed_blocks(self, features, training=None) -> tf.Tensor:
        """Block packings -> float32 [batch, projection_size]."""
        return self.block_embedder(features, training=training)

    def call(self, inputs, training=None):
        """{"query": query features, "block": block features} -> (query [B, P], block [N, P]) embeddings."""
        return (
            self.embed_queries(inputs["query"], training=training),
            self.embed_blocks(inputs["block"], training=training),
        )


def relevance(query_embeddings: tf.Tensor, block_embeddings: tf.Tensor) -> tf.Tensor:
    """Inner products: float32 [Q, P] x [N, P] -> [Q, N]."""
    return tf.matmul(query_embeddings, block_embeddings, transpose_b=True)

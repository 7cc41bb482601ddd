"""Keras models on TF Model Garden BERT: the retriever's embedders (and, later, the reader)."""

from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.encoders import build_bert_encoder
from realm_tf.modeling.retriever import Retriever

__all__ = ["ProjectedEmbedder", "Retriever", "build_bert_encoder"]

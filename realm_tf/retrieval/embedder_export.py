"""The embedder export: a SavedModel of the retriever's towers that indexing and serving load.

Signatures (N = batch):
  embed_blocks(input_word_ids, input_mask, input_type_ids: int32 [N, block_length])
      -> {"embeddings": float32 [N, projection_size]}
  embed_queries(input_word_ids, input_mask, input_type_ids: int32 [N, query_length])
      -> {"embeddings": float32 [N, projection_size]}
  embed_block_texts(titles, bodies: string [N]) -> {"embeddings": ...}
  embed_query_texts(queries: string [N]) -> {"embeddings": ...}   (also serving_default)

The vocabulary travels as an asset; the export's record
(`realm_tf.artifacts.embedder_export.EmbedderExportInfo`) holds the training step, the
packing lengths and the vocabulary's digest, which the indexing pipeline checks against
the blocks it embeds. An export is written beside its target and renamed into place, so
a watcher never sees half of one.
"""

import dataclasses
import os

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.embedder_export import EmbedderExportError, EmbedderExportInfo
from realm_tf.artifacts.staging import staged_directory
from realm_tf.configs import FeaturesConfig
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.modeling import Retriever


class _EmbedderModule(tf.Module):
    def __init__(self, retriever: Retriever, featurizer: Featurizer):
        super().__init__(name="realm_embedder")
        self.retriever = retriever
        self.featurizer = featurizer
        self.embed_blocks = _features_function(retriever.embed_blocks, featurizer.config.block_length)
        self.embed_queries = _features_function(retriever.embed_queries, featurizer.config.query_length)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="titles"),
                                  tf.TensorSpec([None], tf.string, name="bodies")])
    def embed_block_texts(self, titles, bodies):
        return {"embeddings": self.retriever.embed_blocks(self.featurizer.block_features(titles, bodies), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="queries")])
    def embed_query_texts(self, queries):
        return {"embeddings": self.retriever.embed_queries(self.featurizer.query_features(queries), training=False)}


def _features_function(embed, length: int):
    """A tf.function over packed features int32 [None, length] -> {"embeddings": float32 [None, P]}."""

    @tf.function(input_signature=[tf.TensorSpec([None, length], tf.int32, name=k) for k in FEATURE_KEYS])
    def embed_features(input_word_ids, input_mask, input_type_ids):
        features = {"input_word_ids": input_word_ids, "input_mask": input_mask, "input_type_ids": input_type_ids}
        return {"embeddings": embed(features, training=False)}

    return embed_features


def export_embedder(retriever: Retriever, featurizer: Featurizer, export_dir: str, step: int) -> str:
    """Writes the SavedModel to `export_dir` (which must not exist yet) and returns its path."""
    if tf.io.gfile.exists(export_dir):
        raise EmbedderExportError(f"{export_dir} already exists; embedder exports are never overwritten")
    module = _EmbedderModule(retriever, featurizer)
    signatures = {
        "embed_blocks": module.embed_blocks.get_concrete_function(),
        "embed_queries": module.embed_queries.get_concrete_function(),
        "embed_block_texts": module.embed_block_texts.get_concrete_function(),
        "embed_query_texts": module.embed_query_texts.get_concrete_function(),
    }
    signatures["serving_default"] = signatures["embed_query_texts"]
    with staged_directory(export_dir) as staging:
        tf.saved_model.save(module, staging, signatures=signatures)
        vocabulary = featurizer.vocabulary
        EmbedderExportInfo.now(
            step=int(step), projection_size=retriever.config.projection_size,
            share_towers=retriever.config.share_towers,
            features=dict(featurizer.config.as_dict(), vocab_file=os.path.basename(vocabulary.path)),
            vocabulary_sha256=vocabulary.sha256, vocabulary_size=vocabulary.size).write(staging)
    return export_dir


@dataclasses.dataclass
class EmbedderExport:
    """A loaded embedder export.

    Attributes:
      path: the export directory.
      info: its record (`EmbedderExportInfo`).
      featurizer: packs inputs exactly as the export expects, from its own vocabulary asset.
    """

    path: str
    info: EmbedderExportInfo
    featurizer: Featurizer
    _saved: object

    @classmethod
    def load(cls, path: str) -> "EmbedderExport":
        info = EmbedderExportInfo.read(path)
        featurizer = Featurizer(FeaturesConfig(**dict(info.features, vocab_file=info.vocab_path(path))))
        if featurizer.vocabulary.sha256 != info.vocabulary_sha256:
            raise EmbedderExportError(f"{path}: the vocabulary asset does not match its export record")
        try:
            saved = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise EmbedderExportError(f"{path}: cannot load the SavedModel: {e}") from e
        return cls(path, info, featurizer, saved)

    @property
    def step(self) -> int:
        return self.info.step

    def embed_blocks(self, features) -> np.ndarray:
        """Block packings (int32 [N, block_length] each) -> float32 [N, projection_size]."""
        return self._saved.signatures["embed_blocks"](**{k: features[k] for k in FEATURE_KEYS})["embeddings"].numpy()

    def embed_block_tokens(self, title_token_ids, body_token_ids) -> np.ndarray:
        """Blocks as token ids (ragged int64 [N, (tokens)] or lists of lists) -> float32 [N, projection_size]."""
        as_ragged = lambda ids: ids if isinstance(ids, tf.RaggedTensor) else tf.ragged.constant(ids, dtype=tf.int64)  # noqa: E731
        return self.embed_blocks(self.featurizer.pack_block(as_ragged(title_token_ids), as_ragged(body_token_ids)))

    def embed_query_texts(self, queries, batch_size: int = 256) -> np.ndarray:
        """Question strings [Q] -> float32 [Q, projection_size], tokenized inside the export."""
        embed = self._saved.signatures["embed_query_texts"]
        rows = [embed(queries=tf.constant(queries[i:i + batch_size]))["embeddings"].numpy()
                for i in range(0, len(queries), batch_size)]
        return np.concatenate(rows) if rows else np.zeros((0, self.info.projection_size), np.float32)

    def embed_queries(self, features) -> np.ndarray:
        """Query packings (int32 [N, query_length] each) -> float32 [N, projection_size]."""
        return self._saved.signatures["embed_queries"](**{k: features[k] for k in FEATURE_KEYS})["embeddings"].numpy()

"""`RescoredScann`: the ScaNN QA export's dense retrieval, ScaNN's candidates re-scored from the export's own table.

An index version's ScaNN searcher re-scores its best `reorder_num_neighbors` AH candidates
from a copy of the embeddings it keeps (`index.reorder_dtype`). The QA export already
holds the float32 embeddings as a variable (the reader adds each read block's retrieval
score, and exact and hybrid retrieval search them), so its ScaNN layer is built without
that copy: the layer proposes the candidates by their AH scores alone, and they are
re-scored here from the export's table, exactly and in float32. Same candidates, same
exact scores, one copy of the embeddings fewer: 4 * D bytes a block (512 MB at 1M x 128).
"""

from typing import Any, Dict, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.retrieval.index_build import configured_scann_builder

# What a padded candidate scores before the top k: any block found comes first.
_NO_BLOCK = float("-inf")


def scann_layer(embeddings: tf.Tensor, build: Dict[str, Any], shared_name: str):
    """tensorflow-recommenders' ScaNN layer over `embeddings` (float32 [N, D]), built with the
    index version's parameters (`IndexVersion.build`) but without re-scoring, and called once,
    as saving needs. Its row indices are its identifiers (the layer returns them when given none).
    """
    from scann.scann_ops.py import scann_ops
    from tensorflow_recommenders.layers.factorized_top_k import ScaNN

    build = {**build, "reorder_num_neighbors": 0}
    num_rows = int(embeddings.shape[0])

    def build_searcher(candidates):
        # The layer's own builder always makes a tree with asymmetric hashing. The index
        # version may be brute force (small corpora) or a spherical tree with anisotropic
        # hashing: the same parameters make the export search as the version's searcher
        # does (identically for brute force; a tree is retrained on the same embeddings).
        builder = configured_scann_builder(scann_ops.builder(candidates, min(10, num_rows), "dot_product"), build)
        return builder.build(shared_name=shared_name)

    layer = ScaNN(k=1, name="scann")
    layer._build_searcher = build_searcher  # Pinned tensorflow-recommenders 0.7.7: the one builder hook.
    layer.index(embeddings)
    layer(tf.zeros([1, embeddings.shape[1]], tf.float32), k=1)
    return layer


class RescoredScann(tf.Module):
    """Top-k rows of `table` by inner product with each query.

    A tree-AH `build` proposes `build["reorder_num_neighbors"]` candidates (or k, if more) by
    their AH scores and re-scores them from `table` (`rescore_candidates`); a brute-force
    one scores every row exactly and needs no re-scoring.

    Args:
      table: float32 [N, D], the block embeddings (a variable the caller owns and saves).
      build: the index version's ScaNN parameters (`IndexVersion.build`).
      shared_name: the ScaNN resource's name, unique in the process.
    """

    def __init__(self, table: tf.Variable, build: Dict[str, Any], shared_name: str, name: str = "rescored_scann"):
        super().__init__(name=name)
        self.table = table
        # The variable's value, not a NumPy or constant copy of it: ScaNN builds from it once.
        self.layer = scann_layer(tf.convert_to_tensor(table), build, shared_name)
        self._num_rows = int(table.shape[0])
        self._candidates = build["reorder_num_neighbors"] if build["method"] == "tree_ah" else 0

    def __call__(self, queries: tf.Tensor, k) -> Tuple[tf.Tensor, tf.Tensor]:
        """float32 [b, D], int32 k -> (scores float32 [b, k], rows int32 [b, k]), best first.

        Where ScaNN's searched leaves hold fewer candidates than asked, it pads its results
        with NaN scores; a padded candidate that reaches the top k keeps a NaN score and row
        -1, for the caller to notice.
        """
        if not self._candidates:
            return self.layer(queries, k=k)
        n = tf.minimum(tf.maximum(tf.cast(k, tf.int32), self._candidates), self._num_rows)
        scores, rows = self.layer(queries, k=n)
        return rescore_candidates(self.table, queries, scores, rows, k)


def rescore_candidates(table: tf.Tensor, queries: tf.Tensor, scores: tf.Tensor, rows: tf.Tensor,
                       k) -> Tuple[tf.Tensor, tf.Tensor]:
    """The k best of each query's candidates by their exact inner products with `table`'s rows.

    Args:
      table: float32 [N, D].
      queries: float32 [b, D].
      scores, rows: ScaNN's candidates, float32 and int [b, n] (n >= k); a NaN score or a
        row outside [0, N) is padding.
      k: int32 [].

    Returns:
      (scores float32 [b, k], rows int32 [b, k]), best first; padding that reaches the top k
      stays padding (NaN, -1).
    """
    rows = tf.cast(rows, tf.int32)
    found = tf.math.is_finite(scores) & (rows >= 0) & (rows < tf.shape(table)[0])
    exact = tf.einsum("bd,bnd->bn", queries, tf.gather(table, tf.where(found, rows, 0)))
    best = tf.math.top_k(tf.where(found, exact, _NO_BLOCK), k)
    chosen_found = tf.gather(found, best.indices, batch_dims=1)
    return (tf.where(chosen_found, best.values, float("nan")),
            tf.where(chosen_found, tf.gather(rows, best.indices, batch_dims=1), -1))

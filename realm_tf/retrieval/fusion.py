"""Fusion of a dense and a lexical ranking into one, in TF ops (host and SavedModel alike).

Each retriever proposes its top K blocks; their union (at most 2K a question) is scored
by both retrievers exactly, and fused by one of:

- "rrf", reciprocal rank fusion (Cormack et al. 2009): sum over the lists a block is in
  of 1 / (c + rank), rank counted from 1;
- "interpolation": w * dense + (1 - w) * lexical, each score min-max normalized over the
  question's union, so the two scales (inner products, BM25 sums) meet on [0, 1].

Shapes: Q questions, K candidates from each retriever, U = 2K union slots, k fused.
"""

from typing import NamedTuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

FUSIONS = ("rrf", "interpolation")


class CandidateUnion(NamedTuple):
    """Both retrievers' candidates of each question, side by side.

    Attributes:
      ids: int64 [Q, U]: the dense candidates, then the lexical ones.
      dense_rank: int32 [Q, U]: the 0-based rank of each in the dense list, -1 if not in it.
      lexical_rank: int32 [Q, U]: the same for the lexical list.
      valid: bool [Q, U]: false for padding, lexical matches of no term, and a lexical
        candidate the dense list holds already (its dense slot speaks for it).
    """

    ids: tf.Tensor
    dense_rank: tf.Tensor
    lexical_rank: tf.Tensor
    valid: tf.Tensor


class FusedRanking(NamedTuple):
    """The best k of each question's union, best first (all [Q, k]).

    Attributes:
      ids: int64 block ids.
      scores: float32 fused scores.
      dense_scores, lexical_scores: float32, each retriever's own score of the block.
      found_by_dense, found_by_lexical: bool, whether it was among that retriever's K.
    """

    ids: tf.Tensor
    scores: tf.Tensor
    dense_scores: tf.Tensor
    lexical_scores: tf.Tensor
    found_by_dense: tf.Tensor
    found_by_lexical: tf.Tensor


def candidate_union(dense_ids, lexical_ids, lexical_scores) -> CandidateUnion:
    """The union of the two candidate lists.

    Args:
      dense_ids: int64 [Q, K], best first; negative ids are padding.
      lexical_ids: int64 [Q, K], best first.
      lexical_scores: float32 [Q, K]: a block with no question term (score 0) was not found.
    """
    dense_ids = tf.cast(dense_ids, tf.int64)
    lexical_ids = tf.cast(lexical_ids, tf.int64)
    dense_valid = dense_ids >= 0
    lexical_found = (lexical_ids >= 0) & (lexical_scores > 0)
    # same[q, i, j]: lexical candidate i is dense candidate j.
    same = (lexical_ids[:, :, None] == dense_ids[:, None, :]) & dense_valid[:, None, :] & lexical_found[:, :, None]

    def rank_where(matches, axis):
        return tf.where(tf.reduce_any(matches, axis), tf.argmax(tf.cast(matches, tf.int32), axis, tf.int32), -1)

    num = tf.shape(dense_ids)[1]
    own_rank = tf.broadcast_to(tf.range(num, dtype=tf.int32)[None, :], tf.shape(dense_ids))
    dense_slots_lexical_rank = rank_where(same, 1)
    lexical_slots_dense_rank = rank_where(same, 2)
    return CandidateUnion(
        ids=tf.concat([dense_ids, lexical_ids], 1),
        dense_rank=tf.concat([tf.where(dense_valid, own_rank, -1), lexical_slots_dense_rank], 1),
        lexical_rank=tf.concat([dense_slots_lexical_rank, tf.where(lexical_found, own_rank, -1)], 1),
        valid=tf.concat([dense_valid, lexical_found & (lexical_slots_dense_rank < 0)], 1))


def _min_max(scores, valid):
    """Scores over each row's valid slots mapped onto [0, 1] (all 1 when they are equal)."""
    big = tf.constant(3.0e38, scores.dtype)
    low = tf.reduce_min(tf.where(valid, scores, big), 1, keepdims=True)
    high = tf.reduce_max(tf.where(valid, scores, -big), 1, keepdims=True)
    spread = high - low
    return tf.where(spread > 0, (scores - low) / tf.where(spread > 0, spread, 1.0), tf.ones_like(scores))


def fused_scores(union: CandidateUnion, dense_scores, lexical_scores, fusion):
    """float32 [Q, U]: each union slot's fused score, -inf where not valid.

    Args:
      union: `candidate_union`'s.
      dense_scores, lexical_scores: float32 [Q, U], each retriever's exact score of each slot.
      fusion: a `HybridConfig` (its `fusion`, `dense_weight` and `rrf_constant`).
    """
    dense_scores = tf.cast(dense_scores, tf.float32)
    lexical_scores = tf.cast(lexical_scores, tf.float32)
    if fusion.fusion == "rrf":
        def reciprocal(rank):
            return tf.where(rank >= 0, 1.0 / (fusion.rrf_constant + tf.cast(rank, tf.float32) + 1.0), 0.0)

        fused = reciprocal(union.dense_rank) + reciprocal(union.lexical_rank)
    elif fusion.fusion == "interpolation":
        fused = (fusion.dense_weight * _min_max(dense_scores, union.valid)
                 + (1.0 - fusion.dense_weight) * _min_max(lexical_scores, union.valid))
    else:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion.fusion!r}")
    return tf.where(union.valid, fused, tf.constant(-float("inf"), tf.float32))


def top_fused(union: CandidateUnion, dense_scores, lexical_scores, fusion, k: int) -> FusedRanking:
    """The best `k` union slots of each question by `fused_scores` (k at most U; when fewer
    slots are valid, the last are invalid ones, scored -inf)."""
    fused = fused_scores(union, dense_scores, lexical_scores, fusion)
    top = tf.math.top_k(fused, k=k)

    def take(values):
        return tf.gather(values, top.indices, batch_dims=1)

    return FusedRanking(ids=take(union.ids), scores=top.values, dense_scores=take(tf.cast(dense_scores, tf.float32)),
                        lexical_scores=take(tf.cast(lexical_scores, tf.float32)),
                        found_by_dense=take(union.dense_rank) >= 0, found_by_lexical=take(union.lexical_rank) >= 0)


def fuse_rows(query_embeddings, dense_rows, embeddings, lexical_scores, fusion, candidates: int,
              k: int) -> FusedRanking:
    """The hybrid ranking of rows shared by a dense and a lexical index (ids are rows).

    Args:
      query_embeddings: float32 [Q, D].
      dense_rows: int [Q, K'] (K' >= `candidates`), the dense search's best rows, best first.
      embeddings: float32 [N, D], the dense index's rows (an array, constant or variable).
      lexical_scores: float32 [Q, N], BM25 of every row (`LexicalScorer.scores`).
      fusion: a `HybridConfig`.
      candidates: K, the candidates taken from each retriever.
      k: the rows kept, at most 2K.
    """
    lexical_top = tf.math.top_k(lexical_scores, k=candidates)
    union = candidate_union(tf.cast(dense_rows[:, :candidates], tf.int64), tf.cast(lexical_top.indices, tf.int64),
                            lexical_top.values)
    rows = tf.maximum(union.ids, 0)  # Padding (-1) is invalid; any row stands in for it.
    dense_scores = tf.einsum("qd,qud->qu", tf.cast(query_embeddings, tf.float32), tf.gather(embeddings, rows))
    return top_fused(union, dense_scores, tf.gather(lexical_scores, rows, batch_dims=1), fusion, k)

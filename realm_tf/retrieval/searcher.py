"""`Searcher`: top-k maximum inner product search over an index version.

The one retrieval API of training (candidate ids for the step, on the host),
evaluation and export. "scann" searches with the version's serialized ScaNN searcher;
"exact" scores every block with a matmul and is the ground truth ScaNN is tested
against. Both return block ids, not row numbers, and honour per-query exclusions
(REALM's "no trivial retrievals": the block a masked sentence came from).
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from realm_tf.artifacts.index_version import IndexVersion, resolve_version
from realm_tf.retrieval.index_build import reorder_dtype

METHODS = ("scann", "exact")
# Scores of at most this many query x block pairs are held at once by exact search
# (256 MB of float32), so a large index is scored a few queries at a time.
_EXACT_CHUNK_SCORES = 64 * 1024 * 1024


class Searcher:
    """Searches one `IndexVersion` by inner product.

    Args:
      index: the loaded index version.
      method: "scann" (the serialized ScaNN searcher, loaded here so that a version
        pruned later stays usable) or "exact" (matmul over all embeddings).
    """

    def __init__(self, index: IndexVersion, method: str = "scann"):
        if method not in METHODS:
            raise ValueError(f"search method {method!r} is not one of {list(METHODS)}")
        self.index = index
        self.method = method
        if method == "scann":
            self.index.searcher  # noqa: B018  (load now: fail early, and before pruning)

    @classmethod
    def from_directory(cls, path_or_root: str, method: str = "scann", verify: bool = True) -> "Searcher":
        """A searcher over the version at `path_or_root`, or over the latest version
        when `path_or_root` is an index root holding versions."""
        return cls(IndexVersion.load(resolve_version(path_or_root), verify=verify), method=method)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude_ids: Optional[Sequence[Sequence[int]]] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The k blocks of highest inner product with each query, best first.

        Args:
          queries: float32 [Q, D], D the index's dim; Q may be 0.
          k: number of results per query, at least 1.
          exclude_ids: Q sequences (lists, or the rows of an int array [Q, E]) of
            block ids that query q must not return (ids not in the index are
            ignored), or None.

        Returns:
          (block_ids int64 [Q, k], scores float32 [Q, k]). Where fewer than k blocks
          remain after exclusions, the row ends with id -1 and score -inf.
        """
        queries = self._checked(queries, k)
        if exclude_ids is not None and len(exclude_ids) != len(queries):
            raise ValueError(f"exclude_ids has {len(exclude_ids)} lists for {len(queries)} queries")
        most_excluded = max((len(ids) for ids in exclude_ids), default=0) if exclude_ids is not None else 0
        # Enough candidates that k remain after removing the excluded ones.
        rows, scores = self._candidates(queries, min(k + most_excluded, self.index.num_blocks))
        return self._drop_excluded(rows, scores, exclude_ids, k)

    def search_rows(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """`search` without exclusions, answered as rows of the index version's
        `embeddings` and `block_ids`: (rows int64 [Q, min(k, N)], scores float32 [Q, min(k, N)])."""
        return self._candidates(self._checked(queries, k), min(k, self.index.num_blocks))

    def _checked(self, queries, k) -> np.ndarray:
        """The queries as contiguous float32 [Q, D], after checking them and k."""
        queries = np.asarray(queries)
        if queries.ndim != 2 or queries.shape[1] != self.index.dim:
            raise ValueError(
                f"queries must be [Q, {self.index.dim}] to match index {self.index.path}, got shape {queries.shape}"
            )
        if not np.issubdtype(queries.dtype, np.floating):
            raise ValueError(f"queries must be floating point, got dtype {queries.dtype}")
        if not np.isfinite(queries).all():
            raise ValueError("queries contain NaN or inf")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        return np.ascontiguousarray(queries, dtype=np.float32)

    def _candidates(self, queries: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """Rows int64 [Q, n] and scores float32 [Q, n] of the n best blocks, best first."""
        if len(queries) == 0:
            return np.zeros((0, n), np.int64), np.zeros((0, n), np.float32)
        if self.method == "exact":
            return self._exact_candidates(queries, n)
        return self._scann_candidates(queries, n)

    def _exact_candidates(self, queries: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """Rows int64 [Q, n] and scores float32 [Q, n] of the n best blocks, best first."""
        embeddings = np.asarray(self.index.embeddings)
        chunk = max(1, _EXACT_CHUNK_SCORES // len(embeddings))
        rows, scores = [], []
        for start in range(0, len(queries), chunk):
            all_scores = queries[start:start + chunk] @ embeddings.T
            if n < len(embeddings):
                top = np.argpartition(-all_scores, n - 1, axis=1)[:, :n]
            else:
                top = np.broadcast_to(np.arange(len(embeddings)), all_scores.shape)
            top_scores = np.take_along_axis(all_scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            rows.append(np.take_along_axis(top, order, axis=1).astype(np.int64))
            scores.append(np.take_along_axis(top_scores, order, axis=1))
        return np.concatenate(rows), np.concatenate(scores).astype(np.float32)

    def _scann_candidates(self, queries: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """Like `_exact_candidates`, from ScaNN; approximate for a tree_ah index."""
        reorder = self.index.build.get("reorder_num_neighbors") or 0
        rows, scores = self.index.searcher.search_batched(
            queries,
            final_num_neighbors=n,
            # Re-score at least the n returned candidates exactly, even when n > reorder.
            pre_reorder_num_neighbors=max(n, reorder) if reorder else None,
        )
        rows = rows.astype(np.int64)
        scores = np.asarray(scores, np.float32)
        # ScaNN pads with NaN scores when the searched leaves hold fewer than n blocks;
        # such rows (rare: small indexes, large n) are answered exactly instead.
        short = ~np.isfinite(scores).all(axis=1)
        if reorder_dtype(self.index.build) != "float32" and rows.size:
            # A quantized re-scoring copy ranks well but scores to about 3 digits: the
            # returned blocks are scored again from the float32 embeddings, best first.
            scores = np.einsum("qd,qkd->qk", queries, np.asarray(self.index.embeddings)[rows.clip(0)])
            order = np.argsort(-scores, axis=1, kind="stable")
            rows, scores = np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1).astype(np.float32)
        if short.any():
            rows[short], scores[short] = self._exact_candidates(queries[short], n)
        return rows, scores

    def _drop_excluded(self, rows, scores, exclude_ids, k):
        """Maps rows to block ids, removes excluded ones and keeps the first k (padded)."""
        ids = np.asarray(self.index.block_ids)[rows]
        keep = np.ones(ids.shape, bool)
        for q, excluded in enumerate(() if exclude_ids is None else exclude_ids):
            if len(excluded):
                keep[q] = ~np.isin(ids[q], np.asarray(excluded, np.int64))
        # Stable sort of "dropped" flags moves kept candidates to the front in score order.
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        ids, scores, keep = (np.take_along_axis(a, order, axis=1) for a in (ids, scores, keep))
        pad = k - ids.shape[1]
        ids = np.pad(np.where(keep, ids, -1), ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(np.where(keep, scores, -np.inf), ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids.astype(np.int64), scores.astype(np.float32)

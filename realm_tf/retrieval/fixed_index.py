"""Candidates for open-QA: top-k blocks of a fixed index, with the block embeddings it holds.

In fine-tuning and prediction the document tower is frozen, so the index's stored
embeddings are the blocks' embeddings: a retrieval score is the current query
embedding times a stored row, and only the query tower needs running. A version with
sentence vectors (`realm_tf.retrieval.sentence_vectors`) re-scores the best blocks its
search proposes by their best sentence as well, and hands on, as a block's embedding,
the vector that gives its mixed score. `NullRetrieval` gives every question the null
document alone: the no-retrieval baseline.
"""

from typing import Optional, Tuple

import numpy as np

from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError
from realm_tf.corpus.block_store import NULL_BLOCK_ID
from realm_tf.retrieval.searcher import Searcher
from realm_tf.retrieval.sentence_vectors import SentenceVectors


class FixedIndex:
    """One index version, searched by inner product.

    Args:
      path: an index version, or an index root (its newest version).
      method: "scann" or "exact".
      verify: check the version's files against its manifest's checksums first.
      block_weight: re-weighs a version's sentence vectors (w of
        `realm_tf.retrieval.sentence_vectors`); None keeps the weight it was built with.
    """

    def __init__(self, path: str, method: str = "scann", verify: bool = False,
                 block_weight: Optional[float] = None):
        self.searcher = Searcher.from_directory(path, method=method, verify=verify)
        self.version: IndexVersion = self.searcher.index
        self.path = self.version.path
        self.dim = self.version.dim
        self.sentences = (SentenceVectors.load(self.version.sentences_dir, self.version.num_blocks, self.dim)
                          if self.version.sentences_dir else None)
        if block_weight is not None:
            if self.sentences is None:
                raise IndexVersionError(f"{self.path}: no sentence vectors to weigh against the blocks'")
            self.sentences = SentenceVectors(self.sentences.embeddings, self.sentences.starts, block_weight,
                                             self.sentences.rescore_depth)

    @property
    def block_ids(self) -> np.ndarray:
        return np.asarray(self.version.block_ids)

    def search(self, query_embeddings: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(block ids int64 [B, k], their embeddings float32 [B, k, dim]), best first.

        With sentence vectors, the best max(k, rescore_depth) blocks by block vector are
        re-scored, and each block's embedding is the per-question mixed vector.
        """
        if k > self.version.num_blocks:
            raise IndexVersionError(f"{self.path}: {self.version.num_blocks} blocks, fewer than the {k} to retrieve")
        if self.sentences is None:
            rows, _ = self.searcher.search_rows(query_embeddings, k)
            return self.block_ids[rows], np.asarray(self.version.embeddings)[rows]
        depth = min(max(k, self.sentences.rescore_depth), self.version.num_blocks)
        rows, _ = self.searcher.search_rows(query_embeddings, depth)
        scores, vectors = self.sentences.rescore(query_embeddings, rows, np.asarray(self.version.embeddings)[rows])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self.block_ids[np.take_along_axis(rows, best, 1)], np.take_along_axis(vectors, best[..., None], 1)


class NullRetrieval:
    """Every question gets the null document only (no title, no body, embedding 0)."""

    path = "null document only"

    def __init__(self, dim: int):
        self.dim = dim

    def search(self, query_embeddings: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        b = len(query_embeddings)
        return np.full((b, 1), NULL_BLOCK_ID, np.int64), np.zeros((b, 1, self.dim), np.float32)

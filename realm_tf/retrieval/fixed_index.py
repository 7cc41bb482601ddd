"""Candidates for open-QA: top-k blocks of a fixed index, with the block embeddings it holds.

In fine-tuning and prediction the document tower is frozen, so the index's stored
embeddings are the blocks' embeddings: a retrieval score is the current query
embedding times a stored row, and only the query tower needs running. `NullRetrieval`
gives every question the null document alone: the no-retrieval baseline.
"""

from typing import Tuple

import numpy as np

from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError
from realm_tf.corpus.block_store import NULL_BLOCK_ID
from realm_tf.retrieval.searcher import Searcher


class FixedIndex:
    """One index version, searched by inner product.

    Args:
      path: an index version, or an index root (its newest version).
      method: "scann" or "exact".
    """

    def __init__(self, path: str, method: str = "scann"):
        self.searcher = Searcher.from_directory(path, method=method, verify=False)
        self.version: IndexVersion = self.searcher.index
        self.path = self.version.path
        self.dim = self.version.dim

    @property
    def block_ids(self) -> np.ndarray:
        return np.asarray(self.version.block_ids)

    def search(self, query_embeddings: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(block ids int64 [B, k], their embeddings float32 [B, k, dim]), best first."""
        if k > self.version.num_blocks:
            raise IndexVersionError(f"{self.path}: {self.version.num_blocks} blocks, fewer than the {k} to retrieve")
        rows, _ = self.searcher.search_rows(query_embeddings, k)
        return self.block_ids[rows], np.asarray(self.version.embeddings)[rows]


class NullRetrieval:
    """Every question gets the null document only (no title, no body, embedding 0)."""

    path = "null document only"

    def __init__(self, dim: int):
        self.dim = dim

    def search(self, query_embeddings: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        b = len(query_embeddings)
        return np.full((b, 1), NULL_BLOCK_ID, np.int64), np.zeros((b, 1, self.dim), np.float32)

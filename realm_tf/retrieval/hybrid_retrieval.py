"""`HybridRetrieval`: open-QA candidates from a dense index and its lexical index, fused.

Each question's best `candidates` blocks by inner product (the index version's searcher)
and by BM25 (its lexical index, or one built from the blocks when the version has none)
are scored by both retrievers and fused (`realm_tf.retrieval.fusion`). It has the
interface of `FixedIndex` (`path`, `dim`, `search(query_embeddings, k, questions)`
returning block ids and their embeddings), so the reader scores the fused blocks with
its own retrieval logits, as it does the dense ones.
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.retrieval.fixed_index import FixedIndex
from realm_tf.retrieval.fusion import FusedRanking, fuse_rows
from realm_tf.retrieval.lexical_index import Bm25Parameters, LexicalIndex, LexicalScorer


class HybridRetrieval:
    """Dense and lexical retrieval over one index version, fused as `config` says.

    Args:
      index: an index version, or an index root (its newest version).
      featurizer: tokenizes the questions for BM25 (the blocks' vocabulary).
      config: the `HybridConfig`.
      method: the dense search, "scann" or "exact".
      blocks: a `BlockStore` of the version's blocks, to build a lexical index from when
        the version holds none.
      lexical_only: rank by BM25 alone (the dense ranking unused): the lexical baseline
        with the dense index's block embeddings, for the reader's retrieval scores.
    """

    needs_questions = True

    def __init__(self, index: str, featurizer, config, method: str = "scann", blocks=None, lexical_only: bool = False):
        self.dense = FixedIndex(index, method=method)
        self.version = self.dense.version
        self.featurizer = featurizer
        # BM25 alone is the interpolation that gives the dense scores no weight: the union's best
        # lexical scores are the lexical list's own.
        self.config = dataclasses.replace(config, fusion="interpolation", dense_weight=0.0) if lexical_only else config
        self.dim = self.dense.dim
        self.lexical_index = LexicalIndex.of_version(self.version, featurizer.vocabulary,
                                                     Bm25Parameters(config.k1, config.b),
                                                     blocks.arrays if blocks is not None else None)
        self.lexical = LexicalScorer(self.lexical_index)
        self.candidates = min(config.candidates, self.version.num_blocks)
        self.path = (f"lexical (BM25 over WordPiece ids) of {self.version.path}" if lexical_only
                     else f"hybrid ({config.fusion}) of {self.version.path}")

    @property
    def block_ids(self) -> np.ndarray:
        """int64 [N], the version's blocks by row."""
        return self.dense.block_ids

    def _fused_rows(self, query_embeddings: np.ndarray, questions: Sequence[str], k: int) -> FusedRanking:
        """`rank`, with rows of the version for ids."""
        if questions is None or len(questions) != len(query_embeddings):
            raise ValueError(f"hybrid retrieval needs the question texts: got "
                             f"{'none' if questions is None else len(questions)} for {len(query_embeddings)} queries")
        if not 1 <= k <= 2 * self.candidates:
            raise ValueError(f"{self.path}: fuses at most {2 * self.candidates} blocks a question, cannot "
                             f"retrieve {k}")
        dense_rows, _ = self.dense.searcher.search_rows(query_embeddings, self.candidates)
        lexical_scores = self.lexical.scores(self.featurizer.tokenize(tf.constant(list(questions))))
        fused = fuse_rows(query_embeddings, dense_rows, np.asarray(self.version.embeddings), lexical_scores,
                          self.config, self.candidates, k)
        return FusedRanking(*(np.asarray(value) for value in fused))

    def rank(self, query_embeddings: np.ndarray, questions: Sequence[str], k: int) -> FusedRanking:
        """Each question's fused best k (at most 2 x candidates), numpy [B, k], with block ids.

        Args:
          query_embeddings: float32 [B, dim].
          questions: the B question texts.
        """
        fused = self._fused_rows(query_embeddings, questions, k)
        return fused._replace(ids=self.dense.block_ids[fused.ids])

    def search(self, query_embeddings: np.ndarray, k: int,
               questions: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(block ids int64 [B, k], their embeddings float32 [B, k, dim]), best fused first."""
        rows = self._fused_rows(query_embeddings, questions, k).ids
        return self.dense.block_ids[rows], np.asarray(self.version.embeddings)[rows]

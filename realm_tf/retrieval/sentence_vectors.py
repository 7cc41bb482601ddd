"""Sentence vectors beside block vectors: a block scored by its best sentence as well as by itself.

A block's relevance to a question q becomes

    w * q.block + (1 - w) * max over the block's sentences s of q.s

(w: `block_weight`). That is q times one vector, w * block + (1 - w) * s*, where s* is the
block's sentence that scores best for q. Dense retrieval re-scores the blocks its
block-vector search proposes (the best `rescore_depth`) and hands that per-question vector
on as the block's embedding, so the retrieval logit the reader's marginal likelihood is
built on is this score: fine-tuning and prediction change in their retrieval only.

Why: a 128-wordpiece block averages several facts into one vector, and a question asks
about one of them. Measured on all 1,352 qa_dev questions with the quickstart's towers,
nothing trained (benchmarks/sentence_vectors.py, exact over every block): recall@5 0.845
with block vectors alone, 0.888 at w = 0.5, against 0.880 for BM25 on the same blocks.
Ours: neither REALM nor ORQA has sentence vectors.

Each sentence is embedded by the block tower as a block would be, after its block's title;
a block's sentences are its `sentence_starts` (the chunker's sentences, in wordpieces).

On disk, the `sentences/` folder of an index version:

    embeddings.npy   float32 [S, D]; version row i's sentences are rows starts[i]:starts[i+1]
    starts.npy       int64 [N + 1], non-decreasing, starts[0] = 0, starts[N] = S; every
                     block has at least one sentence
    sentences.json   {"block_weight": w, "rescore_depth": M, "num_sentences": S}
"""

import json
import os
from typing import List, Sequence, Tuple

import numpy as np

from realm_tf.errors import RealmError

EMBEDDINGS_NAME = "embeddings.npy"
STARTS_NAME = "starts.npy"
INFO_NAME = "sentences.json"


class SentenceVectorsError(RealmError, ValueError):
    """Sentence vectors that do not fit their index version, or a damaged folder of them."""


def sentence_token_ids(body_token_ids: Sequence[int], sentence_starts: Sequence[int]) -> List[List[int]]:
    """A block's body split at its sentence starts (offsets into the body, ascending); a
    block without any is one sentence. Empty pieces (repeated starts) are dropped."""
    body = list(body_token_ids)
    bounds = [s for s in sentence_starts if 0 < s < len(body)]
    pieces = [body[a:b] for a, b in zip([0] + bounds, bounds + [len(body)])]
    return [piece for piece in pieces if piece] or [body]


class SentenceVectors:
    """The sentence vectors of one index version, and the mixed score they give.

    Args:
      embeddings: float32 [S, D] (a memory map is fine).
      starts: int64 [N + 1]; version row i's sentences are embeddings[starts[i]:starts[i+1]].
      block_weight: w in [0, 1].
      rescore_depth: how many blocks of the block-vector search are re-scored.
    """

    def __init__(self, embeddings: np.ndarray, starts: np.ndarray, block_weight: float, rescore_depth: int):
        starts = np.asarray(starts, np.int64)
        if embeddings.ndim != 2 or starts.ndim != 1 or len(starts) < 2:
            raise SentenceVectorsError(f"embeddings [S, D] and starts [N + 1] expected, got {embeddings.shape} and "
                                       f"{starts.shape}")
        if starts[0] != 0 or starts[-1] != len(embeddings) or (np.diff(starts) < 1).any():
            raise SentenceVectorsError(f"starts must rise from 0 to the {len(embeddings)} sentences, at least one "
                                       "a block")
        if not 0.0 <= block_weight <= 1.0 or rescore_depth < 1:
            raise SentenceVectorsError(f"block_weight {block_weight} must be in [0, 1] and rescore_depth "
                                       f"{rescore_depth} positive")
        self.embeddings = embeddings
        self.starts = starts
        self.block_weight = float(block_weight)
        self.rescore_depth = int(rescore_depth)

    @property
    def num_blocks(self) -> int:
        return len(self.starts) - 1

    def save(self, directory: str) -> None:
        """Writes the folder (created if missing)."""
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, EMBEDDINGS_NAME), np.ascontiguousarray(self.embeddings, np.float32))
        np.save(os.path.join(directory, STARTS_NAME), self.starts)
        with open(os.path.join(directory, INFO_NAME), "w", encoding="utf-8") as f:
            json.dump({"block_weight": self.block_weight, "rescore_depth": self.rescore_depth,
                       "num_sentences": int(len(self.embeddings))}, f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, directory: str, num_blocks: int, dim: int) -> "SentenceVectors":
        """The folder's vectors, memory-mapped, checked against the version's N blocks and D."""
        try:
            with open(os.path.join(directory, INFO_NAME), encoding="utf-8") as f:
                info = json.load(f)
            embeddings = np.load(os.path.join(directory, EMBEDDINGS_NAME), mmap_mode="r", allow_pickle=False)
            starts = np.load(os.path.join(directory, STARTS_NAME), allow_pickle=False)
            block_weight, rescore_depth = float(info["block_weight"]), int(info["rescore_depth"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SentenceVectorsError(f"{directory}: unreadable sentence vectors ({e.__class__.__name__}: {e})") \
                from None
        if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape[1] != dim \
                or len(starts) != num_blocks + 1:
            raise SentenceVectorsError(f"{directory}: {embeddings.dtype} {embeddings.shape} with {len(starts)} starts "
                                       f"does not fit a version of {num_blocks} blocks of dimension {dim}")
        try:
            return cls(embeddings, starts, block_weight, rescore_depth)
        except SentenceVectorsError as e:
            raise SentenceVectorsError(f"{directory}: {e}") from None

    def rescore(self, queries: np.ndarray, rows: np.ndarray,
                block_embeddings: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The mixed score of each proposed block, and the vector that gives it.

        Args:
          queries: float32 [B, D].
          rows: int [B, M], version rows.
          block_embeddings: float32 [B, M, D], those rows' block vectors.

        Returns:
          (scores float32 [B, M], vectors float32 [B, M, D]) with scores[b, m] =
          queries[b] . vectors[b, m] = w * q.block + (1 - w) * q.s* for the best sentence s*.
        """
        queries = np.asarray(queries, np.float32)
        rows = np.asarray(rows, np.int64)
        b, m = rows.shape
        begin, end = self.starts[rows].reshape(-1), self.starts[rows + 1].reshape(-1)
        counts = end - begin
        # Every (question, block) pair's sentences, flattened: pair p owns positions
        # offsets[p]:offsets[p] + counts[p].
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sentence = np.repeat(begin - offsets, counts) + np.arange(counts.sum())
        # Each sentence read once from the (memory-mapped) table, however many pairs share it.
        needed, local = np.unique(sentence, return_inverse=True)
        vectors = np.asarray(self.embeddings[needed], np.float32)
        pair_query = np.repeat(np.repeat(np.arange(b), m), counts)
        scores = np.einsum("td,td->t", vectors[local], queries[pair_query])
        # The best sentence of each pair: the first of its positions after sorting by pair, then score.
        pair = np.repeat(np.arange(b * m), counts)
        order = np.lexsort((-scores, pair))
        best = order[offsets]
        w = self.block_weight
        mixed = w * np.asarray(block_embeddings, np.float32) + (1 - w) * vectors[local[best]].reshape(b, m, -1)
        return np.einsum("bd,bmd->bm", queries, mixed).astype(np.float32), mixed.astype(np.float32)

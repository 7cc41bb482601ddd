"""BM25 over the blocks' words: `Bm25Retriever`, and `Bm25Retrieval`, its open-QA candidates for the predictor.

The lexical baseline of the open-QA papers (ORQA's and REALM's "BM25 + BERT" rows): the
blocks a reader reads are the best BM25 matches of the question's words, not the nearest
block embeddings. It has the interface of `FixedIndex` and `NullRetrieval` (`path`,
`dim`, `search(query_embeddings, k)` returning block ids and their embeddings), plus
`needs_questions`: BM25 scores words, so `QaPredictor` hands it the question texts too.
"""

import logging
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from realm_tf.artifacts.manifests import ManifestError
from realm_tf.corpus.block_records import BlockRecord
from realm_tf.corpus.block_store import NULL_BLOCK_ID, BlockStore


class BlockText(NamedTuple):
    """What BM25 indexes of a block: its id, title and text."""

    block_id: int
    title: str
    text: str


class Bm25Retriever:
    """BM25 (the bm25s library, English stop words) over each block's title and text.

    Args:
      blocks: `BlockRecord`s, or anything with `block_id`, `title` and `text` (`BlockText`).
    """

    def __init__(self, blocks: Sequence[BlockRecord]):
        if not blocks:
            raise ValueError("BM25 needs at least one block")
        import bm25s

        # bm25s logs each indexing step at DEBUG, which drowns the report when another
        # library has set the root logger to DEBUG.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self._bm25s = bm25s
        self._block_ids = np.asarray([b.block_id for b in blocks], np.int64)
        self._index = bm25s.BM25()
        self._index.index(self._tokenize([f"{b.title} {b.text}" for b in blocks]), show_progress=False)

    @classmethod
    def from_block_store(cls, store) -> "Bm25Retriever":
        """Over every block of a `BlockStore` read with a featurizer (which keeps titles and texts)."""
        return cls([BlockText(i, store.title_texts[i], store.texts[i]) for i in store.texts if i != NULL_BLOCK_ID])

    @property
    def num_blocks(self) -> int:
        return len(self._block_ids)

    def _tokenize(self, texts: List[str]):
        return self._bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)

    def search(self, questions: List[str], k: int) -> np.ndarray:
        """Block ids int64 [Q, k], best first."""
        rows, _ = self._index.retrieve(self._tokenize(questions), k=min(k, len(self._block_ids)), show_progress=False)
        return self._block_ids[rows]


class Bm25Retrieval:
    """The top-k blocks of each question by BM25 (bm25s, English stop words, title + text).

    The embeddings it returns are zeros, so the reader's retrieval logits S(x, z) are 0 and
    every block read weighs the same: the answer is the reader's best span among the BM25
    top k, as in the BM25 + reader pipelines of DrQA and ORQA. BM25 scores are not used as
    retrieval logits because they are not on the scale the reader was fine-tuned with: its
    span logits were learned next to inner products of 128-d query and block embeddings,
    while a BM25 score is an unnormalized sum of term weights whose range depends on the
    question's length and the corpus statistics (k1, b). Added to the span logits, their
    gaps would decide the block by themselves (in effect BM25's top 1) on an arbitrary
    scale. The evidence's p(z|x) is accordingly uniform, 1/k: BM25 gives a ranking, not a
    probability. The ranking still orders the evidence, so recall@k is BM25's.

    Args:
      blocks: the corpus, read with a featurizer (`BlockStore(dir, featurizer)`: titles and texts).
      dim: the width of the (zero) embeddings, the model's `retriever.projection_size`.
      name: what `path` says, e.g. the blocks directory.
    """

    needs_questions = True

    def __init__(self, blocks: BlockStore, dim: int, name: Optional[str] = None):
        if blocks.token_begins is None:
            raise ValueError("Bm25Retrieval needs a BlockStore made with a featurizer (titles and texts)")
        self.bm25 = Bm25Retriever.from_block_store(blocks)
        self.dim = dim
        self.path = f"BM25 over {name or f'{self.bm25.num_blocks} blocks'}"

    def search(self, query_embeddings: np.ndarray, k: int,
               questions: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(block ids int64 [B, k], zeros float32 [B, k, dim]), best BM25 match first.

        Args:
          query_embeddings: float32 [B, dim]; only B is used (BM25 reads the words).
          k: blocks per question, at most the corpus's.
          questions: the B question texts.
        """
        if questions is None or len(questions) != len(query_embeddings):
            raise ValueError(f"BM25 retrieval needs the question texts: got "
                             f"{'none' if questions is None else len(questions)} for {len(query_embeddings)} queries")
        if not 1 <= k <= self.bm25.num_blocks:
            # As `FixedIndex` refuses a k beyond its blocks: a short list would silently shrink recall@k.
            raise ManifestError(f"{self.path}: {self.bm25.num_blocks} blocks, cannot retrieve {k}")
        block_ids = self.bm25.search(list(questions), k)
        return block_ids, np.zeros(block_ids.shape + (self.dim,), np.float32)

"""Recall@k of retrieval against gold passages, for the dense retriever and a BM25 baseline.

A question counts as recalled at k when one of its top-k blocks comes from its gold
passage (the block's `doc_id` equals `gold_passage_id`).
"""

import logging
from typing import Dict, List, NamedTuple, Sequence

import numpy as np

from realm_tf.corpus.block_records import BlockRecord
from realm_tf.corpus.block_store import NULL_BLOCK_ID


def recall_at_k(retrieved_doc_ids: Sequence[Sequence[str]], gold_doc_ids: Sequence[str],
                ks: Sequence[int]) -> Dict[str, float]:
    """{"recall@k": fraction of questions whose gold document is among their first k retrieved}."""
    if len(retrieved_doc_ids) != len(gold_doc_ids) or not gold_doc_ids:
        raise ValueError(f"{len(retrieved_doc_ids)} retrieval lists for {len(gold_doc_ids)} questions")
    return {
        f"recall@{k}": float(np.mean([gold in retrieved[:k] for retrieved, gold in zip(retrieved_doc_ids, gold_doc_ids)]))
        for k in ks
    }


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

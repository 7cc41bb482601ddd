"""`QaPredictor`: questions in, answers with their evidence out, from a fine-tuned `OpenQaModel`.

For each question: embed it with the query tower, take the top-k blocks of the fixed
index (or of another retrieval: BM25, the null document), read each with the span
reader, and answer with the best (block, span) by span logit (the retrieval score is
part of it, as in training). The answer is the exact slice of the block's text under
the span's tokens, so it keeps the corpus's casing and punctuation. This is the
reference the exported SavedModel is checked against.
"""

import dataclasses
from typing import Callable, List, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
from tqdm.auto import tqdm

from realm_tf.corpus.block_store import BlockStore
from realm_tf.features import Featurizer
from realm_tf.features.reader_inputs import pack_reader_candidates
from realm_tf.modeling.open_qa import OpenQaModel
from realm_tf.modeling.span_reader import best_span


@dataclasses.dataclass
class Evidence:
    """One retrieved block: ids, title, text, and p(z | x) among the question's retrieved blocks."""

    block_id: int
    doc_id: str
    title: str
    text: str
    retrieval_probability: float


@dataclasses.dataclass
class Prediction:
    """The answer to one question ("" when no block holds a valid span), its span logit,
    the block it came from (-1 if none), and the retrieved blocks, best first (the reader
    read the first `top_k` of them)."""

    question: str
    answer: str
    score: float
    answer_block_id: int
    evidence: List[Evidence]


def predict_in_batches(predict_batch: Callable[[List[str]], List[Prediction]], questions: Sequence[str],
                       batch_size: int, progress: bool, name: str) -> List[Prediction]:
    """`predict_batch` over `questions`, `batch_size` at a time, with a progress bar named `name`."""
    predictions = []
    for start in tqdm(range(0, len(questions), batch_size), desc=name, unit="batch", disable=not progress,
                      mininterval=1.0):
        predictions.extend(predict_batch(list(questions[start:start + batch_size])))
    return predictions


class QaPredictor:
    """Answers questions in batches.

    Args:
      model: a fine-tuned `OpenQaModel`.
      featurizer: the `Featurizer` of the model's config.
      retrieval: a `FixedIndex`, `Bm25Retrieval` or `NullRetrieval` (the no-retrieval
        baseline): `search(query_embeddings float32 [B, dim], k)` returns block ids int64
        [B, k] and their embeddings float32 [B, k, dim]; one whose `needs_questions` is
        true also gets `questions=` the B texts.
      blocks: the corpus the index was built from, with texts (`BlockStore(dir, featurizer)`).
      top_k: blocks read per question.
      max_answer_length: the longest answer in wordpieces (at most the reader's
        `max_span_length`); None for the reader's.
      evidence_depth: blocks retrieved per question and kept as its evidence, at least
        `top_k` (None: `top_k`). The first `top_k` are read; the rest let recall@k be
        measured deeper than the reader reads, at the cost of a larger search only.
    """

    def __init__(self, model: OpenQaModel, featurizer: Featurizer, retrieval, blocks: BlockStore, top_k: int,
                 max_answer_length: Optional[int] = None, evidence_depth: Optional[int] = None):
        if blocks.token_begins is None:
            raise ValueError("QaPredictor needs a BlockStore made with a featurizer (texts and token offsets)")
        self.model = model
        self.featurizer = featurizer
        self.retrieval = retrieval
        self.blocks = blocks
        self.top_k = top_k
        self.evidence_depth = evidence_depth
        self.max_answer_length = max_answer_length or model.reader.config.max_span_length
        self._read = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
        self._embed = tf.function(lambda query: model.query_embedder(query, training=False), reduce_retracing=True)

    def predict(self, questions: Sequence[str], batch_size: int = 32, progress: bool = False) -> List[Prediction]:
        return predict_in_batches(self._predict_batch, questions, batch_size, progress, "QaPredictor")

    def retrieve(self, questions: List[str], depth: int):
        """The retrieval step alone: block ids int64 [B, depth] (best first) and their
        embeddings float32 [B, depth, dim], with the query tokens and packed query."""
        query_tokens = self.featurizer.tokenize(questions)
        query = self.featurizer.pack_query(query_tokens)
        by_text = {"questions": questions} if getattr(self.retrieval, "needs_questions", False) else {}
        candidate_ids, candidate_embeddings = self.retrieval.search(self._embed(query).numpy(), depth, **by_text)
        return candidate_ids, candidate_embeddings, query_tokens, query

    def _predict_batch(self, questions: List[str]) -> List[Prediction]:
        # Taken here, not in __init__: top_k may be changed after construction (a test reads every block).
        depth = max(self.top_k, self.evidence_depth or 0)
        candidate_ids, candidate_embeddings, query_tokens, query = self.retrieve(questions, depth)
        # The model reads the first top_k candidates (fewer where the retrieval gives fewer, as the null
        # one does) and scores all of them (C >= K).
        read = candidate_ids[:, :self.top_k]
        reader = pack_reader_candidates(
            self.featurizer, query_tokens, self.blocks.token_ids("body", read.reshape(-1)), read.shape[1])
        outputs = self._read({"query": query, "candidate_embeddings": tf.constant(candidate_embeddings, tf.float32),
                              "reader": {k: tf.constant(v) for k, v in reader.features.items()}})
        best = [t.numpy() for t in best_span(outputs["span_logits"], self.max_answer_length)]
        retrieval_probs = tf.nn.softmax(outputs["retrieval_logits"], axis=-1).numpy()
        predictions = []
        for row, question in enumerate(questions):
            score, k, position, width, found = (field[row] for field in best)
            answer, answer_block = "", -1
            if found:
                answer_block = int(candidate_ids[row, k])
                start = position - reader.body_offsets[row, k]
                answer = self.blocks.texts[answer_block][
                    self.blocks.token_begins[answer_block][start]:self.blocks.token_ends[answer_block][start + width]]
            evidence = [
                Evidence(int(block_id), self.blocks.doc_ids[block_id], self.blocks.title_texts[block_id],
                         self.blocks.texts[block_id], float(retrieval_probs[row, column]))
                for column, block_id in enumerate(candidate_ids[row].tolist())
            ]
            predictions.append(Prediction(question, answer, float(score), answer_block, evidence))
        return predictions

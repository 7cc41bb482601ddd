"""The QA export: a SavedModel that answers questions with evidence, retrieval inside the graph.

Everything `QaPredictor` does on the host runs in the graph: tokenization and packing
(the `Featurizer`, tensorflow-text), the query tower, top-k retrieval over the fixed
index's block embeddings, the reader packing of each retrieved block, the span reader,
and the decoding of the best span back to the exact slice of the block's text.

Signatures (B = questions, K = blocks read per question):

  serving_default(questions: string [B])
  answer_with_options(questions: string [B], k: int32 [], max_answer_length: int32 [])

both returning
  answer          string  [B]     the best span's text, "" when no block holds a valid span
  score           float32 [B]     its span logit (retrieval score included, as in training)
  answer_block_id int64   [B]     the block it came from, -1 if none
  answer_begin,   int64   [B]     the answer's characters (Unicode code points) in that
  answer_end                      block's text, [begin, end); -1 if none
  block_ids       int64   [B, K]  the retrieved blocks, best first
  titles, texts   string  [B, K]  their titles and texts
  probabilities   float32 [B, K]  p(z | x), softmax of the retrieval scores over the K blocks
  retrieved_by    string  [B, K]  which retriever proposed each block: "dense", "lexical" or
                                  "both" (always "dense" but in a hybrid export)
  dense_scores    float32 [B, K]  the block's inner product with the question's embedding
  lexical_scores  float32 [B, K]  its BM25 for the question (0 but in a hybrid export)

Retrieval is "exact" (a matmul and `tf.math.top_k`: TF core and TF Text ops only, so
stock TF Serving serves it) or "scann" (tensorflow-recommenders' ScaNN layer, built as
the index version's searcher was, its candidates re-scored from the embeddings table:
`realm_tf.export.scann_retrieval`; it needs the ScaNN ops: `import scann` before loading
in Python, or a TF Serving built with them). "hybrid" and "scann_hybrid" add lexical
retrieval to them (BM25 over WordPiece ids, `realm_tf.retrieval.lexical_index`, whose
postings are more variables; the index version's own, or built from the blocks) and fuse
the two rankings as the config's `index.hybrid` says (`realm_tf.retrieval.fusion`): the
exact one still needs only TF core and TF Text ops. Bad requests fail with InvalidArgumentError:
questions that are not UTF-8, k outside [1, max_k] (`max_k`, 100 by default, at most the
number of blocks), max_answer_length outside [1, reader.max_span_length]. Large batches
are read in chunks of at most `reader_batch_size` questions, fewer at a k past top_k (a
chunk holds at most reader_batch_size * top_k question-block pairs, or one question's
k), so a request's memory stays bounded whatever its batch and k.

Size: the tables are the block embeddings, ids, titles and zlib-compressed texts,
variables of the SavedModel (not graph constants, so the 2 GB GraphDef limit does not
apply) held in memory by whoever serves it: 4 * D + 8 bytes plus the title and the
compressed text per block (a 288-wordpiece block of English is some 1.2 KB of text, 0.6 KB
compressed). No token ids: the retrieved texts are decompressed and tokenized again in the
graph (core TF and TF Text ops), which gives back the stored ids and places the answer's
characters. A ScaNN export adds the tree and AH codes (D / dims_per_block bytes a block),
not a second copy of the embeddings. `python -m benchmarks.scale` measures the export and its server per million
blocks.

Past what one server holds, `export_two_parts` (`python -m realm_tf.export --parts two`)
splits the export into a two-part deployment that holds no text:

  retriever  serving_default(questions: string [B])
             retrieve_with_options(questions: string [B], k: int32 [])
             -> block_ids, retrieved_by, dense_scores, lexical_scores as above, and
                candidate_embeddings float32 [B, K, D], the blocks' index rows
             (the query tower, the embeddings and ids, ScaNN's tree and codes, the
             lexical postings: 4 * D + 8 bytes a block and the index's own)
  reader     serving_default(questions: string [B], texts: string [B, K],
                             candidate_embeddings: float32 [B, K, D])
             read_with_options(..., max_answer_length: int32 [])
             -> answer, score, answer_begin, answer_end, probabilities as above, and
                answer_index int64 [B], the answer's block's place among the K (-1 if none)
             (the model alone: the same bytes whatever the corpus)

and between them the block lookup reads each retrieved block's title and text from the
block store's memory-mapped files (`realm_tf.serving.two_part.TwoPartPredictor`, which
returns what the single export returns). Both parts are the single export's own graph,
cut where the texts are gathered; the reader refuses texts that are not UTF-8 and inputs
whose shapes disagree.

The export's record (`realm_tf.artifacts.qa_export.QaExportInfo`, assets.extra/realm_qa.json)
holds the retrieval kind, top_k, the checkpoint, the blocks and the index version, and the
config. `assets.extra/tf_serving_warmup_requests`
holds a request per signature (PredictionLog records) that TF Serving runs when it loads
the model, so that the first client does not wait for the graph's set-up; writing it
needs tensorflow-serving-api (installed with realm_tf), without which it is left out.
"""

import dataclasses
import itertools
import logging
import os
import re
import uuid
import zlib
from typing import Any, Dict, Optional, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.index_version import IndexVersion, embedder_export_of, resolve_version
from realm_tf.artifacts.manifests import BlocksManifest
from realm_tf.artifacts.model_dir import ModelDir
from realm_tf.artifacts.qa_export import WARMUP_PATH, QaExportError, QaExportInfo
from realm_tf.artifacts.staging import staged_directory
from realm_tf.configs import load_config
from realm_tf.corpus.block_store import BlockStore
from realm_tf.export.scann_retrieval import RescoredScann
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.modeling.open_qa import OpenQaModel
from realm_tf.modeling.span_reader import best_span
from realm_tf.retrieval.fusion import FusedRanking, fuse_rows
from realm_tf.retrieval.lexical_index import Bm25Parameters, LexicalIndex, LexicalScorer
from realm_tf.tasks.finetune import build_open_qa_model, restore_finetuned

WARMUP_QUESTIONS = ("who wrote the declaration of independence?",)
WARMUP_TEXT = "The Declaration of Independence was drafted by Thomas Jefferson."
RETRIEVAL_KINDS = ("scann", "exact", "hybrid", "scann_hybrid")
# The model (base path) each kind goes to under a serving root: apart, because TF Serving
# serves the newest version of a base path, which must not be one whose ops it lacks.
MODEL_NAMES = {"exact": "realm_qa", "scann": "realm_qa_scann", "hybrid": "realm_qa_hybrid",
               "scann_hybrid": "realm_qa_scann_hybrid"}
# A single export, or a two-part deployment (`export_two_parts`), whose parts go to these models.
PARTS = ("one", "two")
RETRIEVER_NAMES = {kind: name.replace("realm_qa", "realm_retriever") for kind, name in MODEL_NAMES.items()}
READER_NAME = "realm_reader"
# Output name -> (dtype, shape with None for B and K).
OUTPUTS = {
    "answer": (tf.string, [None]),
    "score": (tf.float32, [None]),
    "answer_block_id": (tf.int64, [None]),
    "answer_begin": (tf.int64, [None]),
    "answer_end": (tf.int64, [None]),
    "block_ids": (tf.int64, [None, None]),
    "titles": (tf.string, [None, None]),
    "texts": (tf.string, [None, None]),
    "probabilities": (tf.float32, [None, None]),
    "retrieved_by": (tf.string, [None, None]),
    "dense_scores": (tf.float32, [None, None]),
    "lexical_scores": (tf.float32, [None, None]),
}
# The two-part deployment's: the retriever's outputs (the reader's candidate_embeddings
# input among them), and the reader's, whose answer_index is the answer's block's place
# among the k it was given (-1 if none).
RETRIEVER_OUTPUTS = {
    "block_ids": (tf.int64, [None, None]),
    "candidate_embeddings": (tf.float32, [None, None, None]),
    "retrieved_by": (tf.string, [None, None]),
    "dense_scores": (tf.float32, [None, None]),
    "lexical_scores": (tf.float32, [None, None]),
}
READER_OUTPUTS = {
    "answer": (tf.string, [None]),
    "score": (tf.float32, [None]),
    "answer_index": (tf.int64, [None]),
    "answer_begin": (tf.int64, [None]),
    "answer_end": (tf.int64, [None]),
    "probabilities": (tf.float32, [None, None]),
}
_QUESTIONS = tf.TensorSpec([None], tf.string, name="questions")
_K = tf.TensorSpec([], tf.int32, name="k")
_MAX_ANSWER_LENGTH = tf.TensorSpec([], tf.int32, name="max_answer_length")
_TEXTS = tf.TensorSpec([None, None], tf.string, name="texts")
_CANDIDATE_EMBEDDINGS = tf.TensorSpec([None, None, None], tf.float32, name="candidate_embeddings")
# The most blocks a request may have read per question, unless the export says otherwise:
# a request's memory grows with k, and one asking for every block would hold the reader's
# activations for all of them at once.
DEFAULT_MAX_K = 100
DEFAULT_READER_BATCH_SIZE = 16


def refusal_message(error: "tf.errors.InvalidArgumentError") -> str:
    """The one line of a request's refusal by a QA export signature, from the assertion's data
    ("k must be at most max_k, 57 (the number of blocks)"), without TensorFlow's node and stack lines."""
    for line in error.message.splitlines():
        if line.startswith("assertion failed: "):
            parts = re.findall(r"\[([^\[\]]*)\]", line)
            kept = list(itertools.takewhile(lambda part: not part.startswith("Condition "), parts))
            return " ".join(kept) or line
    return error.message.splitlines()[0] if error.message else type(error).__name__


def _indexed_block_ids(version: IndexVersion, blocks: BlockStore) -> np.ndarray:
    """int64 [N]: the block id of each index row, every one checked to be in `blocks`."""
    block_ids = np.asarray(version.block_ids, np.int64)
    missing = block_ids[~np.isin(block_ids, blocks.arrays.block_ids)]
    if len(missing):
        raise QaExportError(f"{version.path}: {len(missing)} indexed blocks (e.g. {missing[0]}) are not in the "
                            "blocks directory; was the index built from another corpus?")
    return block_ids


def _block_tables(blocks: BlockStore, block_ids: np.ndarray) -> Dict[str, np.ndarray]:
    """The titles and texts of `block_ids` (int64 [N], the index's rows, `_indexed_block_ids`),
    in that order.

    Returns:
      titles object (str) [N], and compressed_texts object (bytes) [N]: each text's UTF-8,
      zlib-compressed (about half the bytes of English text), decompressed in the graph for
      the blocks retrieved.

    No token ids: the export tokenizes the texts it retrieves, which give back the stored
    ids (a `BlockStore` opened with a featurizer refuses blocks whose text does not), and
    the same tokenization places the answer's characters.
    """
    rows = blocks.arrays.rows_of(block_ids)
    return {
        "titles": np.array([blocks.arrays.string("title", row) for row in rows], object),
        "compressed_texts": np.array([zlib.compress(blocks.arrays.string("text", row).encode("utf-8"))
                                      for row in rows], object),
    }


def _valid_utf8(strings):
    """bool, shaped as `strings`: whether each is valid UTF-8."""
    return tf.equal(tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace"), strings)


def _request_checks(questions, max_k: int, num_blocks: int, k=None, max_answer_length=None,
                    max_span_length: int = 0):
    """Assertions of a request: UTF-8 questions, k in [1, max_k], max_answer_length in
    [1, max_span_length] (the last two when given)."""
    valid_utf8 = _valid_utf8(questions)
    checks = [tf.debugging.Assert(tf.reduce_all(valid_utf8), [
        "questions must be UTF-8 text; not valid UTF-8 at index:", tf.where(~valid_utf8)[:, 0]])]
    if k is not None:
        checks += [
            tf.debugging.assert_greater_equal(k, 1, message="k must be at least 1"),
            tf.debugging.assert_less_equal(k, max_k, message=f"k must be at most max_k, {max_k} ("
                                           + ("the number of blocks)" if max_k == num_blocks else
                                              "as exported, --max_k)")),
        ]
    if max_answer_length is not None:
        checks += [
            tf.debugging.assert_greater_equal(max_answer_length, 1, message="max_answer_length must be at least 1"),
            tf.debugging.assert_less_equal(
                max_answer_length, max_span_length,
                message=f"max_answer_length must be at most reader.max_span_length, {max_span_length}"),
        ]
    return checks


def _in_chunks(work, size, outputs: Dict, questions, *rows) -> Dict[str, tf.Tensor]:
    """`work(questions[chunk], *(r[chunk] for r in rows))` over chunks of `size` questions, one
    chunk at a time, its outputs (named as `outputs`: name -> (dtype, shape)) concatenated."""
    # One (empty) chunk for an empty batch, so that the outputs still have their shapes.
    num_chunks = tf.maximum(1, (tf.size(questions) + size - 1) // size)
    arrays = {name: tf.TensorArray(dtype, size=num_chunks, infer_shape=False, element_shape=shape)
              for name, (dtype, shape) in outputs.items()}

    def chunk(i, arrays):
        part = slice(i * size, (i + 1) * size)
        done = work(questions[part], *(r[part] for r in rows))
        return i + 1, {name: arrays[name].write(i, done[name]) for name in arrays}

    # One chunk at a time: parallel iterations would hold several chunks' activations.
    _, arrays = tf.while_loop(lambda i, _: i < num_chunks, chunk, (tf.constant(0), arrays), parallel_iterations=1)
    return {name: array.concat() for name, array in arrays.items()}


class _Retrieval(tf.Module):
    """Questions to their k best blocks: the query tower and the dense (and lexical) search.

    Args:
      model: the fine-tuned `OpenQaModel` (its query tower is used).
      featurizer: its `Featurizer`.
      embeddings: float32 [N, D] and block_ids: int64 [N], the index's rows (`_block_tables`).
      scann_build: the index version's ScaNN parameters, for ScaNN retrieval (`RescoredScann`
        over the embeddings table); None for exact retrieval.
      max_k: the largest k asked of it.
      lexical: a `LexicalScorer` whose rows are the tables', for hybrid retrieval; or None.
      hybrid: the `HybridConfig` that fuses the two rankings (with `lexical`).
    """

    def __init__(self, model: OpenQaModel, featurizer: Featurizer, embeddings: np.ndarray, block_ids: np.ndarray,
                 scann_build, max_k: int, lexical: Optional[LexicalScorer] = None, hybrid=None):
        super().__init__(name="retrieval")
        self.query_variables = list(model.query_embedder.variables)
        self._embed_queries = lambda query: model.query_embedder(query, training=False)
        self.featurizer = featurizer
        # Variables, not constants: they are saved beside the graph, which stays small.
        self.embeddings = tf.Variable(embeddings, trainable=False, name="embeddings")
        self.block_ids = tf.Variable(block_ids, trainable=False, name="block_ids")
        self.scann = None if scann_build is None else RescoredScann(
            self.embeddings, scann_build, shared_name=f"realm_qa_scann/{uuid.uuid4()}")
        self.num_blocks = len(block_ids)
        self.lexical = lexical
        self._hybrid = hybrid
        # Enough dense candidates that they alone fill any k a request may ask for.
        self._candidates = min(self.num_blocks, max(hybrid.candidates, max_k)) if lexical is not None else 0

    def __call__(self, questions, k) -> Dict[str, tf.Tensor]:
        """b questions (string [b]) -> `RETRIEVER_OUTPUTS`, "rows" (int64 [b, k], the blocks'
        rows in the tables), the k best blocks best first, and "tokens" (the questions'
        WordPiece ids, int64 ragged [b, (tokens)])."""
        tokens = self.featurizer.tokenize(questions)
        queries = self._embed_queries(self.featurizer.pack_query(tokens))
        ranking = self._rank(queries, tokens, k)
        rows = ranking.ids
        return {
            "rows": rows,
            "tokens": tokens,
            "block_ids": tf.gather(self.block_ids, rows),
            "candidate_embeddings": tf.gather(self.embeddings, rows),
            "retrieved_by": tf.where(ranking.found_by_dense & ranking.found_by_lexical, "both",
                                     tf.where(ranking.found_by_dense, "dense", "lexical")),
            "dense_scores": ranking.dense_scores,
            "lexical_scores": ranking.lexical_scores,
        }

    def _rank(self, queries, tokens, k) -> FusedRanking:
        """The k best blocks' rows (as ids), best first, with both retrievers' scores ([b, k] each).

        Args:
          queries: float32 [b, D], the question embeddings.
          tokens: int64 ragged [b, (tokens)], the questions' WordPiece ids.
        """
        if self.lexical is not None:
            return fuse_rows(queries, self._dense_rows(queries, self._candidates), self.embeddings,
                             self.lexical.scores(tokens), self._hybrid, self._candidates, k)
        rows = tf.cast(self._dense_rows(queries, k), tf.int64)
        found = tf.ones_like(rows, tf.bool)
        return FusedRanking(ids=rows, scores=tf.zeros(tf.shape(rows)),
                            dense_scores=tf.einsum("bd,bkd->bk", queries, tf.gather(self.embeddings, rows)),
                            lexical_scores=tf.zeros(tf.shape(rows)), found_by_dense=found,
                            found_by_lexical=tf.zeros_like(found))

    def _dense_rows(self, queries, k):
        """Rows of the k best blocks by inner product, best first: float32 [b, D] -> int32 [b, k]."""
        if self.scann is None:
            return self._exact_rows(queries, k)
        distances, rows = self.scann(queries, k)
        b = tf.shape(queries)[0]
        # A tree search whose searched leaves hold fewer than k blocks pads its results
        # (NaN scores, as the host-side Searcher handles too): that batch is searched exactly.
        complete = tf.logical_or(b == 0, tf.logical_and(
            tf.equal(tf.shape(rows)[1], k),
            tf.reduce_all(tf.math.is_finite(distances) & (rows >= 0) & (rows < self.num_blocks))))
        return tf.cond(complete, lambda: tf.reshape(rows, [b, k]), lambda: self._exact_rows(queries, k))

    def _exact_rows(self, queries, k):
        return tf.math.top_k(tf.matmul(queries, self.embeddings, transpose_b=True), k).indices


class _Reading(tf.Module):
    """Questions and their retrieved blocks' texts to the best answer: `QaPredictor`'s reading as TF ops.

    Args:
      model: the fine-tuned `OpenQaModel` (query tower and span reader).
      featurizer: its `Featurizer`.
    """

    def __init__(self, model: OpenQaModel, featurizer: Featurizer):
        super().__init__(name="reading")
        # The model's variables are tracked, not the Keras model: its own SavedModel
        # serialization traces every layer, which doubles the time to save and to load,
        # and serving needs none of it.
        self.model_variables = list(model.variables)
        self._read = lambda batch: model(batch, training=False)
        self.featurizer = featurizer
        self.max_span_length = model.reader.config.max_span_length

    def __call__(self, questions, texts, candidate_embeddings, max_answer_length, tokens=None) -> Dict[str, tf.Tensor]:
        """`READER_OUTPUTS` of b questions (string [b]) from the texts (string [b, k]) and the
        index rows (float32 [b, k, D]) of the k blocks retrieved for each; `tokens`, the
        questions' WordPiece ids if the caller has them (else they are tokenized here)."""
        config = self.featurizer.config
        tokens = self.featurizer.tokenize(questions) if tokens is None else tokens
        b, k = tf.shape(texts)[0], tf.shape(texts)[1]
        # Every retrieved text tokenized again: [b * k, (tokens)], the stored body ids.
        bodies, begins, ends = self.featurizer.tokenize_with_offsets(tf.reshape(texts, [-1]))
        reader = self.featurizer.pack_reader(tf.gather(tokens, tf.repeat(tf.range(b), k)), bodies)
        # The query tower runs again inside the model: its cost is small next to the reader's
        # K packings, and the model's own call keeps the logits exactly the predictor's.
        outputs = self._read({
            "query": self.featurizer.pack_query(tokens),
            "candidate_embeddings": candidate_embeddings,
            "reader": {key: tf.reshape(reader[key], [b, k, config.reader_length]) for key in FEATURE_KEYS},
        })
        score, column, position, width, found = best_span(outputs["span_logits"], max_answer_length)
        # The body starts after [CLS], the query (cut to query_length - 2) and [SEP].
        body_offset = tf.minimum(tokens.row_lengths(), config.query_length - 2) + 2
        first = tf.where(found, tf.cast(position, tf.int64) - body_offset, 0)
        last = tf.where(found, first + tf.cast(width, tf.int64), 0)
        # Token t of the answer's text is at row_splits[its row] + t of the flat offsets, one
        # zero past their end keeping the gathers in range when there is no answer.
        at = tf.gather(begins.row_splits, tf.range(tf.cast(b, tf.int64)) * tf.cast(k, tf.int64)
                       + tf.cast(column, tf.int64))
        padded = lambda offsets: tf.concat([offsets.flat_values, tf.zeros([1], tf.int64)], 0)  # noqa: E731
        begin = tf.gather(padded(begins), at + first)
        end = tf.gather(padded(ends), at + last)
        answer = tf.strings.substr(tf.gather(texts, column, batch_dims=1), begin, end - begin, unit="UTF8_CHAR")
        none = tf.constant(-1, tf.int64)
        return {
            "answer": tf.where(found, answer, ""),
            "score": score,
            "answer_index": tf.where(found, tf.cast(column, tf.int64), none),
            # Where the answer sits in its block, for highlighting it there (the demo page).
            "answer_begin": tf.where(found, begin, none),
            "answer_end": tf.where(found, end, none),
            "probabilities": tf.nn.softmax(outputs["retrieval_logits"], axis=-1),
        }


def _chunk_size(reader_batch_size: int, top_k: int, k):
    """Questions read at once at k blocks each: a chunk's memory is that of its (question, block) pairs."""
    return tf.clip_by_value(reader_batch_size * top_k // tf.maximum(k, 1), 1, reader_batch_size)


class _QaModule(tf.Module):
    """Questions in, answers with evidence out (the signatures of the module docstring).

    Args:
      retrieval: its `_Retrieval`; reading: its `_Reading`.
      titles: object (str) [N] and compressed_texts: object (bytes) [N], the blocks of the
        retrieval's rows (`_block_tables`).
      top_k, max_answer_length: the defaults of serving_default.
      max_k: the largest k answer_with_options takes.
      reader_batch_size: questions read at once at top_k blocks each; at a larger k,
        fewer, so that a chunk holds at most reader_batch_size * top_k (question, block)
        pairs, or one question's k.
    """

    def __init__(self, retrieval: _Retrieval, reading: _Reading, titles: np.ndarray, compressed_texts: np.ndarray,
                 top_k: int, max_answer_length: int, max_k: int, reader_batch_size: int):
        super().__init__(name="realm_qa")
        self.retrieval = retrieval
        self.reading = reading
        self.titles = tf.Variable(titles, trainable=False, name="titles")
        self.compressed_texts = tf.Variable(compressed_texts, trainable=False, name="compressed_texts")
        self._top_k = top_k
        self._max_answer_length = max_answer_length
        self._max_k = max_k
        self._reader_batch_size = reader_batch_size

    @tf.function(input_signature=[_QUESTIONS])
    def serving_default(self, questions):
        # A call of the other signature's function: the graph is traced (and stored) once.
        return self.answer_with_options(questions, tf.constant(self._top_k), tf.constant(self._max_answer_length))

    @tf.function(input_signature=[_QUESTIONS, _K, _MAX_ANSWER_LENGTH])
    def answer_with_options(self, questions, k, max_answer_length):
        checks = _request_checks(questions, self._max_k, self.retrieval.num_blocks, k, max_answer_length,
                                 self.reading.max_span_length)
        with tf.control_dependencies(checks):
            questions = tf.identity(questions)
        return _in_chunks(lambda chunk: self._answer(chunk, k, max_answer_length),
                          _chunk_size(self._reader_batch_size, self._top_k, k), OUTPUTS, questions)

    def _answer(self, questions, k, max_answer_length) -> Dict[str, tf.Tensor]:
        """`QaPredictor._predict_batch` as TF ops, for b questions (string [b]); returns `OUTPUTS`."""
        retrieved = self.retrieval(questions, k)
        rows = retrieved["rows"]
        texts = tf.io.decode_compressed(tf.gather(self.compressed_texts, rows), compression_type="ZLIB")
        read = self.reading(questions, texts, retrieved["candidate_embeddings"], max_answer_length,
                            retrieved["tokens"])
        return joined_outputs(retrieved, read, tf.gather(self.titles, rows), texts)


@tf.autograph.experimental.do_not_convert  # Plain Python on tensors or arrays: nothing to convert.
def joined_outputs(retrieved: Dict, read: Dict, titles, texts) -> Dict[str, tf.Tensor]:
    """`OUTPUTS` from the retrieval's (`RETRIEVER_OUTPUTS`) and the reading's (`READER_OUTPUTS`)
    tensors, with the retrieved blocks' titles and texts (string [B, K])."""
    block_ids, column = retrieved["block_ids"], read["answer_index"]
    answer_block_id = tf.where(column >= 0, tf.gather(block_ids, tf.maximum(column, 0), batch_dims=1),
                               tf.constant(-1, tf.int64))
    return {
        **{name: read[name] for name in ("answer", "score", "answer_begin", "answer_end", "probabilities")},
        "answer_block_id": answer_block_id,
        "block_ids": block_ids,
        "titles": titles,
        "texts": texts,
        **{name: retrieved[name] for name in ("retrieved_by", "dense_scores", "lexical_scores")},
    }


class _RetrieverModule(tf.Module):
    """The first part of a two-part deployment: questions in, the k best blocks out (`RETRIEVER_OUTPUTS`)."""

    def __init__(self, retrieval: _Retrieval, top_k: int, max_k: int, batch_size: int):
        super().__init__(name="realm_retriever")
        self.retrieval = retrieval
        self._top_k = top_k
        self._max_k = max_k
        self._batch_size = batch_size

    @tf.function(input_signature=[_QUESTIONS])
    def serving_default(self, questions):
        return self.retrieve_with_options(questions, tf.constant(self._top_k))

    @tf.function(input_signature=[_QUESTIONS, _K])
    def retrieve_with_options(self, questions, k):
        with tf.control_dependencies(_request_checks(questions, self._max_k, self.retrieval.num_blocks, k)):
            questions = tf.identity(questions)

        def retrieve(chunk):
            retrieved = self.retrieval(chunk, k)
            return {name: retrieved[name] for name in RETRIEVER_OUTPUTS}

        return _in_chunks(retrieve, self._batch_size, RETRIEVER_OUTPUTS, questions)


class _ReaderModule(tf.Module):
    """The second part of a two-part deployment: questions and their blocks' texts in, answers
    out (`READER_OUTPUTS`); it holds the model and no block."""

    def __init__(self, reading: _Reading, dim: int, num_blocks: int, top_k: int, max_answer_length: int, max_k: int,
                 reader_batch_size: int):
        super().__init__(name="realm_reader")
        self.reading = reading
        self._dim = dim
        self._num_blocks = num_blocks
        self._top_k = top_k
        self._max_answer_length = max_answer_length
        self._max_k = max_k
        self._reader_batch_size = reader_batch_size

    @tf.function(input_signature=[_QUESTIONS, _TEXTS, _CANDIDATE_EMBEDDINGS])
    def serving_default(self, questions, texts, candidate_embeddings):
        return self.read_with_options(questions, texts, candidate_embeddings, tf.constant(self._max_answer_length))

    @tf.function(input_signature=[_QUESTIONS, _TEXTS, _CANDIDATE_EMBEDDINGS, _MAX_ANSWER_LENGTH])
    def read_with_options(self, questions, texts, candidate_embeddings, max_answer_length):
        k = tf.shape(texts)[1]
        checks = _request_checks(questions, self._max_k, self._num_blocks, k, max_answer_length,
                                 self.reading.max_span_length) + [
            tf.debugging.assert_equal(tf.shape(texts)[0], tf.size(questions),
                                      message="texts must have a row of blocks for each question"),
            tf.debugging.assert_equal(tf.shape(candidate_embeddings),
                                      tf.stack([tf.size(questions), k, self._dim]),
                                      message=f"candidate_embeddings must be [questions, k, {self._dim}], k as texts'"),
            tf.debugging.Assert(tf.reduce_all(_valid_utf8(texts)), ["texts must be UTF-8 text"]),
        ]
        with tf.control_dependencies(checks):
            questions = tf.identity(questions)
        return _in_chunks(lambda *chunk: self.reading(*chunk, max_answer_length),
                          _chunk_size(self._reader_batch_size, self._top_k, k), READER_OUTPUTS,
                          questions, texts, candidate_embeddings)


def _write_warmup_requests(path: str, requests: Dict[str, Dict[str, np.ndarray]]) -> int:
    """Writes one PredictionLog per signature ({signature: {input name: value}}) to `path` (a
    TFRecord file); returns how many."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError:
        logging.warning("tensorflow-serving-api is not installed: the export has no TF Serving warmup requests")
        return 0
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(requests)


@dataclasses.dataclass(frozen=True)
class _Source:
    """What an export is made from, checked: the model, its config, the blocks and the index."""

    model_dir: str
    config: Any
    featurizer: Featurizer
    model: OpenQaModel
    checkpoint: str
    blocks_dir: str
    blocks: BlockStore
    index_version: str
    version: IndexVersion
    block_ids: np.ndarray
    embedder: Optional[str]
    retrieval: str
    scann_build: Optional[Dict[str, Any]]
    lexical: Optional[LexicalScorer]
    top_k: int
    max_answer_length: int
    max_k: int
    reader_batch_size: int

    def retrieval_module(self) -> _Retrieval:
        return _Retrieval(self.model, self.featurizer, np.asarray(self.version.embeddings, np.float32),
                          self.block_ids, self.scann_build, self.max_k, self.lexical, self.config.index.hybrid)

    def save(self, module: tf.Module, signatures: Dict, export_dir: str, part: str, outputs: Dict,
             warmup: Dict[str, Dict[str, np.ndarray]]) -> str:
        """Saves `module` with `signatures` to `export_dir` (staged: all or nothing) with its record."""
        with staged_directory(export_dir) as staging:
            tf.saved_model.save(module, staging, signatures=signatures)
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            warmup_requests = _write_warmup_requests(os.path.join(staging, WARMUP_PATH), warmup)
            QaExportInfo.now(
                retrieval=self.retrieval,
                part=part,
                scann_build=self.scann_build,
                top_k=self.top_k,
                max_answer_length=self.max_answer_length,
                max_k=self.max_k,
                reader_batch_size=self.reader_batch_size,
                warmup_requests=warmup_requests,
                num_blocks=self.version.num_blocks,
                model_dir=os.path.abspath(self.model_dir),
                checkpoint=os.path.abspath(self.checkpoint),
                blocks_dir=os.path.abspath(self.blocks_dir),
                index_version=os.path.abspath(self.index_version),
                embedder_export=self.embedder,
                vocabulary={"sha256": self.featurizer.vocabulary.sha256, "size": self.featurizer.vocabulary.size},
                outputs={name: {"dtype": dtype.name, "shape": ["B", "K", "D"][:len(shape)]}
                         for name, (dtype, shape) in outputs.items()},
                config=self.config.as_dict(),
            ).write(staging)
        return export_dir


def _load_source(model_dir: str, retrieval: str, blocks_dir: Optional[str], index: Optional[str],
                 top_k: Optional[int], max_answer_length: Optional[int], max_k: int, reader_batch_size: int,
                 export_dirs) -> _Source:
    """Checks the arguments of an export (see `export_qa_model`) and loads what it is made from."""
    if retrieval not in RETRIEVAL_KINDS:
        raise QaExportError(f"retrieval {retrieval!r} is not one of {list(RETRIEVAL_KINDS)}")
    if reader_batch_size < 1:
        raise QaExportError(f"reader_batch_size must be positive, got {reader_batch_size}")
    for export_dir in export_dirs:
        if tf.io.gfile.exists(export_dir):
            raise QaExportError(f"{export_dir} already exists; exports are never overwritten")
    info = ModelDir(model_dir).read_run_info()
    config = load_config(info.config)
    featurizer = Featurizer(config.features)
    blocks_dir = blocks_dir or info.blocks_dir
    BlocksManifest.read(blocks_dir).check_compatible(blocks_dir, config.features.block_length,
                                                     featurizer.vocabulary.sha256)
    index_version = resolve_version(index or info.index_version)
    version = IndexVersion.load(index_version, verify=True)
    if version.dim != config.retriever.projection_size:
        raise QaExportError(f"{index_version}: embeddings of dim {version.dim}, but the model's query tower "
                            f"projects to {config.retriever.projection_size}")
    if version.sentences_dir:
        # Exporting its block vectors alone would answer from another ranking than the one
        # the model was evaluated with.
        raise QaExportError(f"{index_version}: has sentence vectors, which the QA export does not carry yet; export "
                            "from a version built without index.sentence_vectors")
    trained_with = embedder_export_of(info.index_version)
    embedder = version.embedder_export or None
    if trained_with and embedder != trained_with:
        logging.warning("%s was built with embedder %s, but the model was fine-tuned against one built with %s: "
                        "its query tower matches only the document tower it was trained with",
                        index_version, embedder, trained_with)
    top_k = config.finetune.top_k if top_k is None else top_k
    if not 1 <= top_k <= version.num_blocks:
        raise QaExportError(f"top_k must be in [1, {version.num_blocks}] (the index's blocks), got {top_k}")
    if max_k < top_k:
        raise QaExportError(f"max_k must be at least top_k, {top_k}; got {max_k}")
    max_span_length = config.reader.max_span_length
    max_answer_length = max_span_length if max_answer_length is None else max_answer_length
    if not 1 <= max_answer_length <= max_span_length:
        raise QaExportError(f"max_answer_length must be in [1, {max_span_length}] (reader.max_span_length), "
                            f"got {max_answer_length}")

    model = build_open_qa_model(config, featurizer)
    checkpoint = restore_finetuned(model, model_dir)
    blocks = BlockStore(blocks_dir, featurizer)
    lexical = None
    if "hybrid" in retrieval:
        lexical = LexicalScorer(LexicalIndex.of_version(version, featurizer.vocabulary,
                                                        Bm25Parameters(config.index.hybrid.k1, config.index.hybrid.b),
                                                        blocks.arrays))
    return _Source(model_dir=model_dir, config=config, featurizer=featurizer, model=model, checkpoint=checkpoint,
                   blocks_dir=blocks_dir, blocks=blocks, index_version=index_version, version=version,
                   block_ids=_indexed_block_ids(version, blocks), embedder=embedder, retrieval=retrieval,
                   scann_build=version.build if retrieval.startswith("scann") else None, lexical=lexical,
                   top_k=top_k, max_answer_length=max_answer_length, max_k=min(max_k, version.num_blocks),
                   reader_batch_size=reader_batch_size)


def _int32(value: int) -> np.ndarray:
    return np.asarray(value, np.int32)


def export_qa_model(model_dir: str, export_dir: str, retrieval: str = "scann", blocks_dir: Optional[str] = None,
                    index: Optional[str] = None, top_k: Optional[int] = None,
                    max_answer_length: Optional[int] = None, max_k: int = DEFAULT_MAX_K,
                    reader_batch_size: int = DEFAULT_READER_BATCH_SIZE) -> str:
    """Exports a fine-tuned open-QA model with its blocks and index as one SavedModel.

    Args:
      model_dir: a `--task=finetune` model_dir (its newest checkpoint and its `RunInfo`).
      export_dir: where to write the SavedModel; must not exist yet.
      retrieval: "scann", "exact", "hybrid" or "scann_hybrid" (see the module docstring).
      blocks_dir, index: the corpus and the index version (or root: its newest version)
        to serve; default those the model was fine-tuned with. Others re-index without
        retraining: their embeddings must come from the same document tower.
      top_k: blocks read per question by serving_default (default finetune.top_k).
      max_answer_length: longest answer in wordpieces for serving_default (default
        reader.max_span_length).
      max_k: the largest k a request may ask for (at most the index's blocks); with
        reader_batch_size, it bounds a request's memory.
      reader_batch_size: questions read at once at top_k blocks each (fewer at a larger
        k); bounds the memory of large batches.

    Returns:
      `export_dir`.
    """
    source = _load_source(model_dir, retrieval, blocks_dir, index, top_k, max_answer_length, max_k,
                          reader_batch_size, [export_dir])
    tables = _block_tables(source.blocks, source.block_ids)
    module = _QaModule(source.retrieval_module(), _Reading(source.model, source.featurizer), tables["titles"],
                       tables["compressed_texts"], source.top_k, source.max_answer_length, source.max_k,
                       reader_batch_size)
    questions = np.asarray(WARMUP_QUESTIONS, object)
    # The functions themselves, not concrete functions traced here: saving traces them
    # again in its own context, and tracing is most of an export's time.
    return source.save(
        module, {"serving_default": module.serving_default, "answer_with_options": module.answer_with_options},
        export_dir, "qa", OUTPUTS,
        {"serving_default": {"questions": questions},
         "answer_with_options": {"questions": questions, "k": _int32(source.top_k),
                                 "max_answer_length": _int32(source.max_answer_length)}})


def export_two_parts(model_dir: str, retriever_dir: str, reader_dir: str, retrieval: str = "scann",
                     blocks_dir: Optional[str] = None, index: Optional[str] = None, top_k: Optional[int] = None,
                     max_answer_length: Optional[int] = None, max_k: int = DEFAULT_MAX_K,
                     reader_batch_size: int = DEFAULT_READER_BATCH_SIZE) -> Tuple[str, str]:
    """Exports a fine-tuned open-QA model as a two-part deployment: a retriever SavedModel
    (the query tower and the index: questions -> the k best blocks' ids and index rows) and a
    reader SavedModel (the model alone: questions, the blocks' texts and rows -> answers),
    joined by a block lookup from the block store (`realm_tf.inference.two_part_predictor`).
    Neither holds the blocks' texts. Arguments as `export_qa_model`'s; returns both directories."""
    source = _load_source(model_dir, retrieval, blocks_dir, index, top_k, max_answer_length, max_k,
                          reader_batch_size, [retriever_dir, reader_dir])
    questions = np.asarray(WARMUP_QUESTIONS, object)
    retriever = _RetrieverModule(source.retrieval_module(), source.top_k, source.max_k, reader_batch_size)
    source.save(retriever, {"serving_default": retriever.serving_default,
                            "retrieve_with_options": retriever.retrieve_with_options},
                retriever_dir, "retriever", RETRIEVER_OUTPUTS,
                {"serving_default": {"questions": questions},
                 "retrieve_with_options": {"questions": questions, "k": _int32(source.top_k)}})
    reader = _ReaderModule(_Reading(source.model, source.featurizer), source.version.dim, source.version.num_blocks,
                           source.top_k, source.max_answer_length, source.max_k, reader_batch_size)
    texts = np.full([len(questions), source.top_k], WARMUP_TEXT, object)
    rows = np.zeros([len(questions), source.top_k, source.version.dim], np.float32)
    source.save(reader, {"serving_default": reader.serving_default, "read_with_options": reader.read_with_options},
                reader_dir, "reader", READER_OUTPUTS,
                {"serving_default": {"questions": questions, "texts": texts, "candidate_embeddings": rows},
                 "read_with_options": {"questions": questions, "texts": texts, "candidate_embeddings": rows,
                                       "max_answer_length": _int32(source.max_answer_length)}})
    return retriever_dir, reader_dir


def export_for_serving(model_dir: str, output: Optional[str] = None, output_root: str = "saved_models",
                       model_name: Optional[str] = None, retrieval: str = "scann",
                       reader_batch_size: int = DEFAULT_READER_BATCH_SIZE, parts: str = "one", **options):
    """`export_qa_model` (parts "one") or `export_two_parts` ("two") into TF Serving's layout
    (`realm_tf.artifacts.serving_root`): the next version under `output_root/<model_name>`
    (default `MODEL_NAMES[retrieval]`; the two parts under `RETRIEVER_NAMES[retrieval]` and
    `READER_NAME`), then the root's serving files rewritten. With `output`, the export goes
    there (the two parts to output/retriever and output/reader) and no serving files are
    written. `options` are `export_qa_model`'s. Returns the export directory, or both parts'."""
    from realm_tf.artifacts.serving_root import next_version_dir, write_serving_files

    if parts not in PARTS:
        raise QaExportError(f"parts {parts!r} is not one of {list(PARTS)}")
    if parts == "two":
        if model_name:
            raise QaExportError(f"a two-part deployment goes to {RETRIEVER_NAMES[retrieval]} and {READER_NAME}; "
                                "model_name names a single export's model")
        if output:
            dirs = os.path.join(output, "retriever"), os.path.join(output, "reader")
        else:
            dirs = (next_version_dir(os.path.join(output_root, RETRIEVER_NAMES[retrieval])),
                    next_version_dir(os.path.join(output_root, READER_NAME)))
        exported = export_two_parts(model_dir, *dirs, retrieval=retrieval, reader_batch_size=reader_batch_size,
                                    **options)
    else:
        exported = output or next_version_dir(os.path.join(output_root, model_name or MODEL_NAMES[retrieval]))
        export_qa_model(model_dir, exported, retrieval=retrieval, reader_batch_size=reader_batch_size, **options)
    if not output:
        write_serving_files(output_root, reader_batch_size)
    return exported

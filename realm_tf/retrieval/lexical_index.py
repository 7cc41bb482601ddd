"""BM25 over WordPiece ids, as arrays on disk and as TF ops: `LexicalIndex`, `LexicalScorer`.

The terms are the blocks' own WordPiece ids (title and body, as the compact block store
holds them), so the lexical retriever tokenizes a question with the same `Featurizer`
the towers and the reader use, in training, evaluation and serving alike, and needs no
word tokenizer of its own. Stop words (bm25s's English list, where a word is one
WordPiece), punctuation and the special tokens carry no postings.

Weights are Lucene's BM25 (as bm25s computes it by default):

    w(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avg|d|))
    idf(t)  = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with |d| the block's count of indexed (non-stop) tokens. A question's score for a block
is the sum of w(t, d) over its tokens, repeats included.

The postings are stored by term (compressed sparse rows of the [terms, blocks] matrix):

    term_starts.npy  int64   [V + 1]  postings of term t are [term_starts[t], term_starts[t+1])
    rows.npy         int32   [P]      the row (into block_ids) of each posting, ascending per term
    weights.npy      float32 [P]      w(t, d) of each posting
    block_ids.npy    int64   [N]      the block of each row

so scoring a question touches only the postings of its own tokens. That is 8 bytes a
posting and 8 a block, on disk and in memory, plus 8 a vocabulary term (0.24 MB): some
130 postings, about 1.1 KB, for a 288-wordpiece block of English.
"""

import dataclasses
import json
import logging
import os
import string
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.index_version import file_sha256
from realm_tf.corpus import block_store
from realm_tf.errors import RealmError

LEXICAL_FORMAT = "realm_tf.lexical.v1"
LEXICAL_INFO_NAME = "lexical.json"
_ARRAYS = {"term_starts": np.int64, "rows": np.int32, "weights": np.float32, "block_ids": np.int64}
# Rows per pass of the build: bounds its memory (about 40 bytes a token of the pass).
_BUILD_ROWS = 1 << 16

logger = logging.getLogger(__name__)


class LexicalIndexError(RealmError, ValueError):
    """A lexical index directory that is missing, partial, corrupt, or built for another vocabulary."""


@dataclasses.dataclass(frozen=True)
class Bm25Parameters:
    """BM25's term-frequency saturation `k1` and length normalization `b` (bm25s's defaults)."""

    k1: float = 1.5
    b: float = 0.75


def stop_ids(vocabulary) -> np.ndarray:
    """int64 [S], sorted: the WordPiece ids that carry no postings.

    The special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]), every piece made only of
    punctuation, and bm25s's English stop words that are one WordPiece each.
    """
    from bm25s.stopwords import STOPWORDS_EN

    punctuation, stop_words = set(string.punctuation), set(STOPWORDS_EN)
    ids = [vocabulary.pad_id, vocabulary.unk_id, vocabulary.cls_id, vocabulary.sep_id, vocabulary.mask_id]
    for token_id, token in enumerate(vocabulary.tokens()):
        piece = token[2:] if token.startswith("##") else token
        if (piece and all(c in punctuation for c in piece)) or token in stop_words:
            ids.append(token_id)
    return np.unique(np.asarray(ids, np.int64))


@dataclasses.dataclass
class LexicalIndex:
    """BM25 postings of a corpus by WordPiece id (see the module docstring for the arrays).

    Attributes:
      term_starts: int64 [V + 1].
      rows: int32 [P].
      weights: float32 [P].
      block_ids: int64 [N].
      parameters: the `Bm25Parameters` the weights were computed with.
      vocabulary_sha256: the vocabulary whose ids the terms are.
    """

    term_starts: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    block_ids: np.ndarray
    parameters: Bm25Parameters
    vocabulary_sha256: str

    @property
    def num_blocks(self) -> int:
        return len(self.block_ids)

    @property
    def num_terms(self) -> int:
        return len(self.term_starts) - 1

    @property
    def num_postings(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    @classmethod
    def build(cls, passes: Iterable[Tuple[np.ndarray, np.ndarray]], block_ids: np.ndarray, vocabulary,
              parameters: Bm25Parameters = Bm25Parameters()) -> "LexicalIndex":
        """BM25 postings of blocks given as token ids.

        Args:
          passes: the corpus's tokens, each pass (tokens int [T], rows int [T]): WordPiece
            ids in any order (BM25 ignores it) and the row of `block_ids` each comes from.
            Every row's tokens are in one pass.
          block_ids: int64 [N], the block of each row.
          vocabulary: a `Vocabulary` (the terms are its ids).
          parameters: k1 and b.
        """
        block_ids = np.asarray(block_ids, np.int64)
        n = len(block_ids)
        if not n:
            raise LexicalIndexError("a lexical index needs at least one block")
        stops = stop_ids(vocabulary)
        lengths = np.zeros([n], np.int64)
        keys, counts = [np.zeros([0], np.int64)], [np.zeros([0], np.int64)]
        for tokens, token_rows in passes:
            tokens, token_rows = np.asarray(tokens, np.int64), np.asarray(token_rows, np.int64)
            if not tokens.size:
                continue
            if tokens.min() < 0 or tokens.max() >= vocabulary.size:
                raise LexicalIndexError(f"token ids must lie in [0, {vocabulary.size}) (the vocabulary's), got "
                                        f"{tokens.min()}..{tokens.max()}")
            if token_rows.min() < 0 or token_rows.max() >= n:
                raise LexicalIndexError(f"token rows must lie in [0, {n}), got {token_rows.min()}..{token_rows.max()}")
            kept = ~np.isin(tokens, stops)
            tokens, token_rows = tokens[kept], token_rows[kept]
            lengths += np.bincount(token_rows, minlength=n)
            # One key per (term, row): sorted, they are the postings in CSR order.
            pass_keys, pass_counts = np.unique(tokens * n + token_rows, return_counts=True)
            keys.append(pass_keys)
            counts.append(pass_counts)
        keys, counts = np.concatenate(keys), np.concatenate(counts).astype(np.float32)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        if keys.size and not (np.diff(keys) > 0).all():
            raise LexicalIndexError("a row's tokens came in more than one pass")
        terms, rows = keys // n, (keys % n).astype(np.int32)
        term_counts = np.bincount(terms, minlength=vocabulary.size)
        idf = np.log1p((n - term_counts + 0.5) / (term_counts + 0.5))
        k1, b = parameters.k1, parameters.b
        norm = k1 * (1.0 - b + b * lengths / max(float(lengths.mean()), 1e-9))
        weights = (idf[terms] * counts / (counts + norm[rows])).astype(np.float32)
        term_starts = np.concatenate([[0], np.cumsum(term_counts)]).astype(np.int64)
        return cls(term_starts, rows, weights, block_ids, parameters, vocabulary.sha256)

    @classmethod
    def from_block_arrays(cls, arrays, vocabulary, parameters: Bm25Parameters = Bm25Parameters(),
                          block_ids: Optional[np.ndarray] = None) -> "LexicalIndex":
        """Of every block of a compact block store (`BlockArrays`), title and body.

        Args:
          block_ids: int64 [N], the rows' order, e.g. a dense index version's, so that the two
            share row numbers; every block of the store once. Default: the store's order.
        """
        if arrays.info.vocabulary_sha256 != vocabulary.sha256:
            raise LexicalIndexError(f"{arrays.directory}: its blocks were tokenized with vocabulary sha256 "
                                    f"{arrays.info.vocabulary_sha256}, not {vocabulary.sha256}")
        store_ids = np.asarray(arrays.block_ids)
        if block_ids is None:
            block_ids = store_ids
        block_ids = np.asarray(block_ids, np.int64)
        if len(block_ids) != len(store_ids):
            raise LexicalIndexError(f"{arrays.directory}: {len(store_ids)} blocks, but {len(block_ids)} rows asked for")
        # The target row of each store row.
        order = np.argsort(block_ids, kind="stable")
        at = np.minimum(np.searchsorted(block_ids[order], store_ids), len(block_ids) - 1)
        if (block_ids[order][at] != store_ids).any():
            missing = store_ids[block_ids[order][at] != store_ids][0]
            raise LexicalIndexError(f"{arrays.directory}: block {missing} is not among the rows asked for")
        row_of_store_row = order[at]

        def passes():
            for start in range(0, len(store_ids), _BUILD_ROWS):
                stop = min(start + _BUILD_ROWS, len(store_ids))
                parts = [block_store.token_rows(arrays, part, start, stop) for part in ("title", "body")]
                yield (np.concatenate([p.values for p in parts]),
                       np.concatenate([np.repeat(row_of_store_row[start:stop], p.lengths()) for p in parts]))

        return cls.build(passes(), block_ids, vocabulary, parameters)

    def save(self, directory: str) -> None:
        """Writes the arrays and `lexical.json` (parameters, sizes, sha256 of every file) into `directory`."""
        os.makedirs(directory, exist_ok=True)
        files = {}
        for name in _ARRAYS:
            path = os.path.join(directory, f"{name}.npy")
            np.save(path, getattr(self, name))
            files[f"{name}.npy"] = file_sha256(path)
        info = {"format": LEXICAL_FORMAT, "k1": self.parameters.k1, "b": self.parameters.b,
                "num_blocks": self.num_blocks, "num_terms": self.num_terms, "num_postings": self.num_postings,
                "vocabulary_sha256": self.vocabulary_sha256, "files_sha256": files}
        with open(os.path.join(directory, LEXICAL_INFO_NAME), "w", encoding="utf-8") as f:
            f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str, verify: bool = True) -> "LexicalIndex":
        """The index saved in `directory`, memory-mapped; with `verify`, every file's sha256 checked."""
        info_path = os.path.join(directory, LEXICAL_INFO_NAME)
        try:
            with open(info_path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            raise LexicalIndexError(f"{info_path}: missing; {directory} holds no lexical index") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LexicalIndexError(f"{info_path}: not valid JSON: {e}") from e
        if not isinstance(info, dict) or info.get("format") != LEXICAL_FORMAT:
            raise LexicalIndexError(f"{info_path}: format {info.get('format') if isinstance(info, dict) else None!r}, "
                                    f"expected {LEXICAL_FORMAT!r}")
        expected_sizes = {"term_starts": info["num_terms"] + 1, "rows": info["num_postings"],
                          "weights": info["num_postings"], "block_ids": info["num_blocks"]}
        arrays: Dict[str, np.ndarray] = {}
        for name, dtype in _ARRAYS.items():
            path = os.path.join(directory, f"{name}.npy")
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise LexicalIndexError(f"{path}: missing file of the lexical index in {directory}") from None
            if array.dtype != dtype or array.shape != (expected_sizes[name],):
                raise LexicalIndexError(f"{path}: {array.dtype} {array.shape}, {LEXICAL_INFO_NAME} says "
                                        f"{np.dtype(dtype)} ({expected_sizes[name]},)")
            if verify and file_sha256(path) != info["files_sha256"][f"{name}.npy"]:
                raise LexicalIndexError(f"{path}: checksum mismatch against {LEXICAL_INFO_NAME}; the file was "
                                        "modified or damaged")
            arrays[name] = array
        return cls(**arrays, parameters=Bm25Parameters(info["k1"], info["b"]),
                   vocabulary_sha256=info["vocabulary_sha256"])

    @classmethod
    def of_version(cls, version, vocabulary, parameters: Bm25Parameters = Bm25Parameters(),
                   arrays=None) -> "LexicalIndex":
        """The lexical index of an `IndexVersion`, rows as its block_ids: the one it holds, or,
        when it holds none, one built from `arrays` (the `BlockArrays` of its blocks).

        Raises:
          LexicalIndexError: the version holds none and no arrays are given, or it holds one
            of another vocabulary or other rows.
        """
        if version.lexical_dir:
            index = cls.load(version.lexical_dir)
            if index.vocabulary_sha256 != vocabulary.sha256:
                raise LexicalIndexError(f"{version.lexical_dir}: a lexical index of vocabulary sha256 "
                                        f"{index.vocabulary_sha256}, not {vocabulary.sha256}")
            if not np.array_equal(index.block_ids, version.block_ids):
                raise LexicalIndexError(f"{version.lexical_dir}: its rows are not the index version's blocks")
            return index
        if arrays is None:
            raise LexicalIndexError(f"{version.path}: no lexical index (build the index with "
                                    "index.hybrid.lexical_index=true), and no blocks to build one from")
        logger.info("%s holds no lexical index; building one from %s", version.path, arrays.directory)
        return cls.from_block_arrays(arrays, vocabulary, parameters, block_ids=np.asarray(version.block_ids))


class LexicalScorer(tf.Module):
    """A `LexicalIndex` as TF constants and core ops, for graphs and SavedModels.

    Scoring gathers the postings of the questions' tokens (`tf.ragged.range`) and sums
    their weights per (question, row) with `tf.math.unsorted_segment_sum`: no py_func, and
    no work for terms the questions do not hold.

    Args:
      index: the `LexicalIndex`.
    """

    def __init__(self, index: LexicalIndex, name: str = "lexical_scorer"):
        super().__init__(name=name)
        self.num_blocks = index.num_blocks
        self.num_terms = index.num_terms
        # Variables, not constants: a SavedModel keeps them in its variables files, not its graph proto
        # (which is limited to 2 GB).
        self.term_starts = tf.Variable(np.asarray(index.term_starts), trainable=False, name="term_starts")
        self.rows = tf.Variable(np.asarray(index.rows), trainable=False, name="rows")
        self.weights = tf.Variable(np.asarray(index.weights), trainable=False, name="weights")
        self.block_ids = tf.Variable(np.asarray(index.block_ids), trainable=False, name="block_ids")

    def scores(self, query_tokens):
        """float32 [Q, N]: each question's BM25 of every row.

        Args:
          query_tokens: int ragged [Q, (tokens)], WordPiece ids (a `Featurizer.tokenize` result).
        """
        query_tokens = tf.cast(query_tokens, tf.int64)
        terms = tf.clip_by_value(query_tokens.flat_values, 0, self.num_terms - 1)
        starts = tf.gather(self.term_starts, terms)
        ends = tf.gather(self.term_starts, terms + 1)
        postings = tf.ragged.range(starts, ends)
        # The question of each posting: its token's row in query_tokens.
        question = tf.gather(query_tokens.value_rowids(), postings.value_rowids())
        positions = postings.flat_values
        rows = tf.cast(tf.gather(self.rows, positions), tf.int64)
        num_questions = query_tokens.nrows()
        summed = tf.math.unsorted_segment_sum(tf.gather(self.weights, positions), question * self.num_blocks + rows,
                                              num_questions * self.num_blocks)
        return tf.reshape(summed, [num_questions, self.num_blocks])

    def search_rows(self, query_tokens, k: int):
        """(rows int32 [Q, k], scores float32 [Q, k]): each question's best k rows, best first."""
        top = tf.math.top_k(self.scores(query_tokens), k=k)
        return top.indices, top.values

    def search(self, query_tokens, k: int):
        """(block ids int64 [Q, k], scores float32 [Q, k]): each question's best k blocks, best first."""
        rows, scores = self.search_rows(query_tokens, k)
        return tf.gather(self.block_ids, rows), scores

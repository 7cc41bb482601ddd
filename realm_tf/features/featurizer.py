"""`Featurizer`: WordPiece tokenization and the query, block and reader packings as TF ops.

Packings (L = the static length from `FeaturesConfig`):

  query   `[CLS] query [SEP]`                 segments 0...0            L = query_length
  block   `[CLS] title [SEP] body [SEP]`      segments 0...0 1...1      L = block_length
  reader  `[CLS] query [SEP] body [SEP]`      segments 0...0 1...1      L = reader_length

Truncation keeps earlier segments and trims later ones (Model Garden's "waterfall"
trimmer): a block keeps its title and loses the end of its body; the reader input cuts
the query to `query_length - 2` wordpieces first, as the query tower sees it, and then
truncates the block, not the question, as the original REALM reader does.
"""

import functools
from typing import Dict, List, Sequence, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tensorflow_text as tf_text
from official.nlp.modeling.layers import text_layers

from realm_tf.configs import FeaturesConfig
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH, Vocabulary

# The keys of one packing, the inputs of Model Garden's BertEncoder, in its order.
FEATURE_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
# {FEATURE_KEYS}: int32 [batch, L].
PackedInputs = Dict[str, tf.Tensor]


class Featurizer(tf.Module):
    """Tokenizes strings and packs token ids into fixed-length BERT inputs.

    A `tf.Module`, so a SavedModel that holds one carries the vocabulary as an asset.
    Every method takes a batch: strings are `tf.string [batch]`, token ids are
    `tf.RaggedTensor` int64 `[batch, (tokens)]` (int32 also accepted).
    """

    def __init__(self, config: FeaturesConfig, name: str = "featurizer"):
        super().__init__(name=name)
        self.config = config
        self.vocabulary = Vocabulary.from_file(config.vocab_file or BUNDLED_VOCAB_PATH)
        self._tokenizer = tf_text.BertTokenizer(
            self.vocabulary.path,
            lower_case=config.lower_case,
            token_out_type=tf.int64,
        )

    def tokenize(self, texts) -> tf.RaggedTensor:
        """WordPiece ids of each string: tf.string [batch] -> int64 ragged [batch, (tokens)]."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        return self._tokenizer.tokenize(texts).merge_dims(-2, -1)

    def tokenize_with_offsets(self, texts) -> Tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """WordPiece ids of each string and the characters each token came from, as TF ops
        (eager or in a graph: the QA export cuts its answers with them).

        tf.string [batch] of UTF-8 text -> (ids, begins, ends), int64 ragged [batch, (tokens)]
        each, with characters (Unicode code points) [begins[i], ends[i]) of the text those of
        token i (a "##" piece: its part of the word). The answer of a span of tokens is then
        an exact slice of the text.
        """
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        ids, byte_begins, byte_ends = (ragged.merge_dims(-2, -1) for ragged in
                                       self._tokenizer.tokenize_with_offsets(texts))
        begins, last_chars = self._chars_of_bytes(texts, byte_begins, byte_ends - 1)
        return ids, begins, last_chars + 1

    def traced_tokenize_with_offsets(self, texts) -> Tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """`tokenize_with_offsets` of a host batch (str or UTF-8 bytes [batch]) through one
        tf.function a process per vocabulary and casing: no tracing per call or per dataset."""
        return _traced_offsets(self.vocabulary.path, self.config.lower_case)(tf.constant(list(texts), tf.string))

    def tokenize_with_char_offsets(self, texts: Sequence[str]) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`tokenize_with_offsets` on the host: per string, (ids, begins, ends) int64 [T] numpy."""
        if not len(texts):
            return []
        ids, begins, ends = self.traced_tokenize_with_offsets(texts)
        splits = ids.row_splits.numpy()
        values = [ragged.flat_values.numpy() for ragged in (ids, begins, ends)]
        return [tuple(v[splits[i]:splits[i + 1]] for v in values) for i in range(len(texts))]

    def _chars_of_bytes(self, texts: tf.Tensor, *byte_offsets: tf.RaggedTensor) -> Tuple[tf.RaggedTensor, ...]:
        """The character of each text that each of its byte offsets falls in.

        tf_text reports byte offsets into the text as it tokenizes it: with `lower_case`,
        NFKC-case-folded, NFD-decomposed and stripped of combining marks (so "É" is one
        byte "e" there, "½" is five bytes "1⁄2", a zero-width space none). Each character's
        width in that view comes from the same TF ops, one character at a time; an offset
        past the view's end (a rare multi-character composition) counts as its last byte.

        Args:
          texts: tf.string [batch].
          *byte_offsets: int64 ragged [batch, (n)] each, offsets into each text's view.
        Returns:
          int64 ragged [batch, (n)] for each of `byte_offsets`.
        """
        chars = tf.strings.unicode_split(texts, "UTF-8")
        flat = chars.flat_values
        widths = tf.strings.length(flat)  # UTF-8 bytes.
        if self.config.lower_case:
            # An ASCII character stays one byte (case folding and NFD keep it one, it has no
            # mark to strip), so only the others go through the ops: most texts have few.
            wide = tf.where(widths > 1)
            view = tf.strings.regex_replace(
                tf_text.normalize_utf8(tf_text.case_fold_utf8(tf.gather_nd(flat, wide)), "NFD"), r"\p{Mn}", "")
            widths = tf.tensor_scatter_nd_update(widths, wide, tf.strings.length(view))
        # Every text's characters end to end: where each character's bytes end, and where
        # each text's bytes and characters start.
        ends = tf.cumsum(tf.cast(widths, tf.int64))
        byte_starts = tf.gather(tf.concat([tf.zeros([1], tf.int64), ends], 0), chars.row_splits)
        char_starts = chars.row_splits[:-1]

        def char_of(offsets: tf.RaggedTensor) -> tf.RaggedTensor:
            rows = offsets.value_rowids()
            last_byte = tf.gather(byte_starts[1:] - byte_starts[:-1], rows) - 1
            at = tf.minimum(offsets.flat_values, last_byte) + tf.gather(byte_starts[:-1], rows)
            found = tf.searchsorted(ends, at, side="right", out_type=tf.int64)
            return offsets.with_flat_values(found - tf.gather(char_starts, rows))

        return tuple(char_of(offsets) for offsets in byte_offsets)

    def pack_query(self, query_tokens: tf.RaggedTensor) -> PackedInputs:
        """`[CLS] query [SEP]`, int32 [batch, query_length]."""
        return self._pack([query_tokens], self.config.query_length)

    def pack_block(self, title_tokens: tf.RaggedTensor, body_tokens: tf.RaggedTensor) -> PackedInputs:
        """`[CLS] title [SEP] body [SEP]`, int32 [batch, block_length].

        The null document is a block with an empty title and body: `[CLS] [SEP] [SEP]`.
        """
        return self._pack([title_tokens, body_tokens], self.config.block_length)

    def pack_reader(self, query_tokens: tf.RaggedTensor, body_tokens: tf.RaggedTensor) -> PackedInputs:
        """`[CLS] query [SEP] body [SEP]`, int32 [batch, reader_length]; the title is not read."""
        query_tokens = query_tokens[:, : self.config.query_length - 2]
        return self._pack([query_tokens, body_tokens], self.config.reader_length)

    def query_features(self, queries) -> PackedInputs:
        """Tokenizes and packs query strings, tf.string [batch]."""
        return self.pack_query(self.tokenize(queries))

    def block_features(self, titles, bodies) -> PackedInputs:
        """Tokenizes and packs blocks given as title and body strings, tf.string [batch] each."""
        return self.pack_block(self.tokenize(titles), self.tokenize(bodies))

    def _pack(self, segments: Sequence[tf.RaggedTensor], length: int) -> PackedInputs:
        # Token ids may come from the tokenizer (int64 row splits) or from parsed
        # records (tf.io.RaggedFeature: int32 row splits); packing needs one kind.
        segments = [tf.cast(s, tf.int64).with_row_splits_dtype(tf.int64) for s in segments]
        ids = (length, self.vocabulary.cls_id, self.vocabulary.sep_id, self.vocabulary.pad_id)
        if tf.executing_eagerly():  # Host-side batching: one traced call, not some fifty eager ops.
            return _traced_packer(len(segments), *ids)(*segments)
        return _pack_segments(segments, *ids)


def _pack_segments(segments: Sequence[tf.RaggedTensor], length: int, cls_id: int, sep_id: int,
                   pad_id: int) -> PackedInputs:
    packed = text_layers.BertPackInputs.bert_pack_inputs(
        segments, seq_length=length, start_of_sequence_id=cls_id, end_of_segment_id=sep_id, padding_id=pad_id,
        truncator="waterfall")
    return {key: tf.cast(value, tf.int32) for key, value in packed.items()}


@functools.lru_cache(maxsize=None)
def _traced_packer(num_segments: int, length: int, cls_id: int, sep_id: int, pad_id: int):
    """`_pack_segments` as a tf.function of `num_segments` int64 ragged [batch, (tokens)]
    inputs. Kept here, not on the Featurizer: a tf.Module would save it in every SavedModel."""
    spec = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1, row_splits_dtype=tf.int64)
    return tf.function(lambda *segments: _pack_segments(list(segments), length, cls_id, sep_id, pad_id),
                       input_signature=[spec] * num_segments)


@functools.lru_cache(maxsize=None)
def _traced_offsets(vocab_file: str, lower_case: bool):
    """`Featurizer.tokenize_with_offsets` as a tf.function of tf.string [batch], one per vocabulary
    and casing (all the offsets depend on): about twice as fast on the host as its eager ops,
    traced once a process. Kept here, not on the Featurizer, for `_traced_packer`'s reason."""
    featurizer = Featurizer(FeaturesConfig(vocab_file=vocab_file, lower_case=lower_case))
    return tf.function(featurizer.tokenize_with_offsets, input_signature=[tf.TensorSpec([None], tf.string)])

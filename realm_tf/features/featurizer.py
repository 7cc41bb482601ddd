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
import re
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
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


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
        self._views: Dict[str, bytes] = {}  # Character -> its bytes as the tokenizer sees them.

    def tokenize(self, texts) -> tf.RaggedTensor:
        """WordPiece ids of each string: tf.string [batch] -> int64 ragged [batch, (tokens)]."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        return self._tokenizer.tokenize(texts).merge_dims(-2, -1)

    def tokenize_with_char_offsets(self, texts: Sequence[str]) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """WordPiece ids of each string and the characters each token came from.

        Returns, per string, (ids int64 [T], begins int64 [T], ends int64 [T]) with
        `text[begins[i]:ends[i]]` the characters of token i (a "##" piece: its part of
        the word). The answer of a span of tokens is then an exact slice of the text.
        """
        ids, begins, ends = self._tokenizer.tokenize_with_offsets(tf.constant(list(texts), tf.string))
        flat = lambda ragged: ragged.merge_dims(-2, -1).to_list()  # noqa: E731
        result = []
        for text, row_ids, row_begins, row_ends in zip(texts, flat(ids), flat(begins), flat(ends)):
            char_at = self._char_of_tokenizer_byte(text)
            at = lambda offsets: char_at[np.minimum(np.asarray(offsets, np.int64), len(char_at) - 1)]  # noqa: E731
            result.append((np.asarray(row_ids, np.int64), at(row_begins), at(np.asarray(row_ends) - 1) + 1))
        return result

    def _char_of_tokenizer_byte(self, text: str) -> np.ndarray:
        """int64 [bytes]: the character of `text` each byte of the tokenizer's view came from.

        tf_text reports byte offsets into the text as it tokenizes it: with `lower_case`,
        NFKC-case-folded, NFD-decomposed and stripped of combining marks (so "É" is one
        byte "e" there, "½" is five bytes "1⁄2", a zero-width space none). Each
        character's bytes in that view come from the same TF ops, one character at a
        time; the last index is repeated past the end should a rare multi-character
        composition make the two views differ in length.
        """
        # An ASCII character is one byte in that view (case folding and NFD keep it one, it
        # has no mark to strip), so only the others are looked up: most texts have few.
        lengths = np.ones([len(text)], np.int64)
        for found in _NON_ASCII.finditer(text):
            lengths[found.start()] = len(self._tokenizer_view(found.group()))
        return np.repeat(np.arange(len(text), dtype=np.int64), lengths)

    def _tokenizer_view(self, ch: str) -> bytes:
        if ch not in self._views:
            view = tf.constant([ch])
            if self.config.lower_case:  # As tf_text's BasicTokenizer.lower_case.
                view = tf.strings.regex_replace(
                    tf_text.normalize_utf8(tf_text.case_fold_utf8(view), "NFD"), r"\p{Mn}", "")
            self._views[ch] = view.numpy()[0]
        return self._views[ch]

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

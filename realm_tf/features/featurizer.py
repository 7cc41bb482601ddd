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

from typing import Dict, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tensorflow_text as tf_text
from official.nlp.modeling.layers import text_layers

from realm_tf.configs import FeaturesConfig
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH, Vocabulary

# {"input_word_ids", "input_mask", "input_type_ids"}: int32 [batch, L], the inputs of
# Model Garden's BertEncoder.
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
        packed = text_layers.BertPackInputs.bert_pack_inputs(
            segments,
            seq_length=length,
            start_of_sequence_id=self.vocabulary.cls_id,
            end_of_segment_id=self.vocabulary.sep_id,
            padding_id=self.vocabulary.pad_id,
            truncator="waterfall",
        )
        return {key: tf.cast(value, tf.int32) for key, value in packed.items()}

"""Featurization, written once: sentence splitting, WordPiece tokenization and input packing.

The Beam pipelines, the trainer and the exported SavedModel all featurize through
`Featurizer`, as TF ops, so a served model tokenizes exactly as training did.
"""

from realm_tf.features.featurizer import FEATURE_KEYS, Featurizer, PackedInputs
from realm_tf.features.sentences import get_sentence_splitter, register_sentence_splitter
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH, Vocabulary, VocabularyError

__all__ = [
    "BUNDLED_VOCAB_PATH",
    "FEATURE_KEYS",
    "Featurizer",
    "PackedInputs",
    "Vocabulary",
    "VocabularyError",
    "get_sentence_splitter",
    "register_sentence_splitter",
]

"""A WordPiece vocabulary file and the ids of BERT's special tokens in it."""

import dataclasses
import hashlib
import pathlib
from typing import List

from realm_tf.errors import RealmError

BUNDLED_VOCAB_PATH = pathlib.Path(__file__).resolve().parents[1] / "assets" / "bert_vocab" / "vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class VocabularyError(RealmError, ValueError):
    """A vocabulary file that is missing or lacks what BERT packing needs."""


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """One token per line; the line number (0-based) is the id.

    Attributes:
      path: the file, as given (a local path or any tf.io.gfile path).
      size: number of tokens.
      sha256: digest of the file's bytes; manifests record it so that blocks, embedders
        and indexes built on different vocabularies are refused.
      pad_id, unk_id, cls_id, sep_id, mask_id: special token ids.
    """

    path: str
    size: int
    sha256: str
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @classmethod
    def from_file(cls, path) -> "Vocabulary":
        import tensorflow as tf  # gfile reads local and cloud paths alike.

        path = str(path)
        if not tf.io.gfile.exists(path):
            raise VocabularyError(f"vocabulary file not found: {path}")
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        try:
            tokens = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise VocabularyError(f"{path}: not UTF-8 at byte {e.start}") from e
        if not tokens:
            raise VocabularyError(f"{path}: vocabulary is empty")
        ids = {}
        for i, token in enumerate(tokens):
            if token in ids:
                # TF's lookup table would fail on it later, without naming the file.
                raise VocabularyError(f"{path}:{i + 1}: duplicate token {token!r} (first at line {ids[token] + 1})")
            ids[token] = i
        missing = [t for t in SPECIAL_TOKENS if t not in ids]
        if missing:
            raise VocabularyError(f"{path}: vocabulary lacks the special tokens {missing}")
        return cls(
            path=path,
            size=len(tokens),
            sha256=hashlib.sha256(data).hexdigest(),
            pad_id=ids["[PAD]"],
            unk_id=ids["[UNK]"],
            cls_id=ids["[CLS]"],
            sep_id=ids["[SEP]"],
            mask_id=ids["[MASK]"],
        )

    def tokens(self) -> List[str]:
        """Every token, by id."""
        import tensorflow as tf

        with tf.io.gfile.GFile(self.path, "rb") as f:
            return f.read().decode("utf-8").splitlines()

    def continuation_mask(self):
        """bool [size]: whether each token continues a word (WordPiece's "##" prefix).

        A span of wordpieces is a span of whole words when it starts on a token that is
        not a continuation and the token after it is not one either.
        """
        import numpy as np

        return np.array([token.startswith("##") for token in self.tokens()], bool)

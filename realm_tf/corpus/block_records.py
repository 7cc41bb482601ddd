"""The block record: one retrievable unit of the knowledge corpus, as a `tf.train.Example`.

Features:
  block_id         int64   stable id: the first 63 bits of sha256(doc_id, block_index)
  doc_id           bytes   the source document's id
  block_index      int64   position of the block within its document (0-based)
  title            bytes   the document's title (UTF-8)
  text             bytes   the body: `document.text[start:end]`, whole sentences as written
  title_token_ids  int64[] WordPiece ids of the title (cut to `corpus.max_title_tokens`)
  body_token_ids   int64[] WordPiece ids of the body
  sentence_starts  int64[] offset in body_token_ids where each sentence begins (the first
                           is 0); a sentence longer than a block counts as its pieces

Token ids are authoritative: pack blocks from them (`Featurizer.pack_block`), so no
later stage re-tokenizes the text differently.
"""

import dataclasses
import hashlib
from typing import Dict, List

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf


def int64_feature(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def text_feature(value: str) -> tf.train.Feature:
    """One UTF-8 string as a bytes feature."""
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))


def block_id_for(doc_id: str, block_index: int) -> int:
    """A non-negative int64 that depends only on the document id and the block's position."""
    digest = hashlib.sha256(f"{doc_id}\x00{block_index}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclasses.dataclass(frozen=True)
class BlockRecord:
    block_id: int
    doc_id: str
    block_index: int
    title: str
    text: str
    title_token_ids: List[int]
    body_token_ids: List[int]
    sentence_starts: List[int]

    def to_example(self) -> tf.train.Example:
        ints, text = int64_feature, text_feature
        return tf.train.Example(
            features=tf.train.Features(
                feature={
                    "block_id": ints([self.block_id]),
                    "doc_id": text(self.doc_id),
                    "block_index": ints([self.block_index]),
                    "title": text(self.title),
                    "text": text(self.text),
                    "title_token_ids": ints(self.title_token_ids),
                    "body_token_ids": ints(self.body_token_ids),
                    "sentence_starts": ints(self.sentence_starts),
                }
            )
        )

    def serialize(self) -> bytes:
        return self.to_example().SerializeToString()

    @classmethod
    def from_bytes(cls, serialized: bytes) -> "BlockRecord":
        features = tf.train.Example.FromString(serialized).features.feature
        return cls(
            block_id=features["block_id"].int64_list.value[0],
            doc_id=features["doc_id"].bytes_list.value[0].decode("utf-8"),
            block_index=features["block_index"].int64_list.value[0],
            title=features["title"].bytes_list.value[0].decode("utf-8"),
            text=features["text"].bytes_list.value[0].decode("utf-8"),
            title_token_ids=list(features["title_token_ids"].int64_list.value),
            body_token_ids=list(features["body_token_ids"].int64_list.value),
            sentence_starts=list(features["sentence_starts"].int64_list.value),
        )


# The parsing spec for tf.data; token ids come back as int64 RaggedTensors.
BLOCK_FEATURE_SPEC = {
    "block_id": tf.io.FixedLenFeature([], tf.int64),
    "doc_id": tf.io.FixedLenFeature([], tf.string),
    "block_index": tf.io.FixedLenFeature([], tf.int64),
    "title": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "title_token_ids": tf.io.RaggedFeature(tf.int64),
    "body_token_ids": tf.io.RaggedFeature(tf.int64),
    "sentence_starts": tf.io.RaggedFeature(tf.int64),
}


def parse_block_examples(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """tf.string [batch] serialized block records -> dict of [batch] tensors (ragged token ids)."""
    return tf.io.parse_example(serialized, BLOCK_FEATURE_SPEC)


def read_parsed_records(paths, parse_batch, parse_batch_size: int = 1024) -> tf.data.Dataset:
    """Records of TFRecord shards parsed in batches by `parse_batch`, then one dict per element."""
    return (
        tf.data.TFRecordDataset(paths)
        .batch(parse_batch_size)
        .map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
    )


def read_block_dataset(paths, parse_batch_size: int = 1024) -> tf.data.Dataset:
    """Block records from TFRecord shards, one parsed dict per element (token ids as 1-D int64)."""
    return read_parsed_records(paths, parse_block_examples, parse_batch_size)

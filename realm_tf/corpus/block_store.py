"""`BlockStore`: every block of a chunked corpus by block id, for host-side batching.

Retrieval returns block ids; the reader needs the blocks' token ids, and open-QA needs
their text too (answers are slices of it). The null document is block id -1: no title,
no body, no text.

The blocks are read from the directory's compact store (`realm_tf.artifacts.block_arrays`:
uint16 token ids and offset-indexed texts, memory-mapped), built from the TFRecord shards
the first time the directory is opened and reused afterwards. Building it re-tokenizes
every text with the directory's own vocabulary to find each body token's characters; a
block whose text does not give back its stored ids gets no offsets, and opening the
store with a featurizer (to cut answers from the texts) refuses such a directory.
"""

import logging
import os
import shutil
import tempfile
import uuid
from typing import Dict, Iterator, Optional

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from realm_tf.artifacts.block_arrays import (BlockArrays, BlockBatch, blocks_manifest_sha256, compact_dir,
                                             read_block_arrays_info, write_block_arrays)
from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.corpus.block_records import read_block_dataset
from realm_tf.features.ragged_rows import RaggedRows

NULL_BLOCK_ID = -1
logger = logging.getLogger(__name__)


def read_doc_ids(blocks_dir: str) -> Dict[int, str]:
    """Block id -> doc id (the passage it was cut from) of every block of a chunked corpus."""
    return dict(BlockStore(blocks_dir).doc_ids.items())


class _Column:
    """A read-only mapping block id -> one field of the block (the null document included),
    in the directory's record order, read from the compact store on access."""

    def __init__(self, arrays: BlockArrays, read, null):
        self._arrays, self._read, self._null = arrays, read, null

    def __getitem__(self, block_id: int):
        if block_id == NULL_BLOCK_ID:
            return self._null
        row = self._arrays.row_of(int(block_id))
        if row is None:
            raise KeyError(block_id)
        return self._read(row)

    def __contains__(self, block_id) -> bool:
        return int(block_id) == NULL_BLOCK_ID or self._arrays.row_of(int(block_id)) is not None

    def __iter__(self) -> Iterator[int]:
        yield NULL_BLOCK_ID
        yield from (int(i) for i in self._arrays.block_ids)

    def __len__(self) -> int:
        return self._arrays.info.num_blocks + 1

    def items(self):
        return ((block_id, self[block_id]) for block_id in self)

    def values(self):
        return (self[block_id] for block_id in self)


class BlockStore:
    """Token ids, texts and token offsets of every block.

    Attributes (mappings block id -> value, the null document -1 included, iterated in
    the directory's record order):
      titles, bodies: the WordPiece ids of the title / body (lists of int).
      doc_ids, title_texts, texts: str.
      token_begins, token_ends: int64 [len(body)], the characters of `texts[id]` each body
        token came from; None unless opened with a featurizer, whose vocabulary and casing
        must be the blocks' (the offsets are theirs).
    """

    def __init__(self, blocks_dir: str, featurizer=None):
        manifest = BlocksManifest.read(blocks_dir)
        if featurizer is not None:
            manifest.check_tokenization(blocks_dir, featurizer.vocabulary.sha256, featurizer.config.lower_case)
        self.arrays = open_block_arrays(blocks_dir, manifest, featurizer)
        arrays = self.arrays
        empty = np.zeros([0], np.int64)
        self.titles = _Column(arrays, lambda row: arrays.tokens("title", row).tolist(), [])
        self.bodies = _Column(arrays, lambda row: arrays.tokens("body", row).tolist(), [])
        self.doc_ids = _Column(arrays, lambda row: arrays.string("doc_id", row), "")
        self.title_texts = _Column(arrays, lambda row: arrays.string("title", row), "")
        self.texts = _Column(arrays, lambda row: arrays.string("text", row), "")
        self.token_begins: Optional[_Column] = None
        self.token_ends: Optional[_Column] = None
        if featurizer is not None:
            if arrays.info.unlocated_blocks:
                raise ManifestError(
                    f"{blocks_dir}: block {arrays.info.first_unlocated} (and {arrays.info.unlocated_blocks - 1} "
                    "more) does not re-tokenize to its stored body_token_ids, so answers cannot be cut from its "
                    "text; were the blocks made with another vocabulary or casing than features.vocab_file / "
                    "features.lower_case?")
            self.token_begins = _Column(arrays, lambda row: arrays.char_offsets("begins", row).astype(np.int64), empty)
            self.token_ends = _Column(arrays, lambda row: arrays.char_offsets("ends", row).astype(np.int64), empty)

    def __len__(self) -> int:
        return self.arrays.info.num_blocks  # The null document is not a block of the corpus.

    def token_ids(self, part: str, block_ids: np.ndarray) -> RaggedRows:
        """The title ("title") or body ("body") WordPiece ids of each of `block_ids` (int [n],
        the null document -1 empty), as uint16 `RaggedRows` [n, (tokens)]: one gather, no
        Python loop over the blocks."""
        block_ids = np.asarray(block_ids, np.int64)
        rows = np.full(block_ids.shape, -1, np.int64)
        real = block_ids != NULL_BLOCK_ID
        rows[real] = self.arrays.rows_of(block_ids[real])
        return RaggedRows(*self.arrays.token_arrays(part)).take(rows)


def open_block_arrays(blocks_dir: str, manifest: Optional[BlocksManifest] = None, featurizer=None) -> BlockArrays:
    """The compact store of `blocks_dir`, built first if it is missing or was built from
    another manifest (the directory was chunked again). `featurizer` tokenizes the texts
    for the character offsets; by default one of the directory's own vocabulary."""
    manifest = manifest or BlocksManifest.read(blocks_dir)
    digest = blocks_manifest_sha256(blocks_dir)
    local = "://" not in blocks_dir
    target = compact_dir(blocks_dir) if local else os.path.join(tempfile.mkdtemp(prefix="realm_blocks_"), "compact")
    info = read_block_arrays_info(target)
    if info is not None and info.blocks_manifest_sha256 == digest:
        return BlockArrays(target)
    if info is not None:  # Stale: out of sight first, then built again.
        trash = os.path.join(os.path.dirname(target), f".trash-{uuid.uuid4().hex}")
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    featurizer = featurizer or _featurizer_of(blocks_dir, manifest)
    logger.info("building the compact block store of %s (%d blocks)", blocks_dir, manifest.num_blocks)
    try:
        write_block_arrays(target, _block_batches(blocks_dir, manifest, featurizer), digest,
                           featurizer.vocabulary.sha256)
    except OSError:
        # Another process (the refresher beside the trainer) published it first.
        info = read_block_arrays_info(target)
        if info is None or info.blocks_manifest_sha256 != digest:
            raise
    return BlockArrays(target)


def _featurizer_of(blocks_dir: str, manifest: BlocksManifest):
    """A `Featurizer` of the vocabulary and casing the blocks were tokenized with."""
    from realm_tf.configs import FeaturesConfig
    from realm_tf.features import BUNDLED_VOCAB_PATH, Featurizer, Vocabulary

    vocabulary = manifest.vocabulary
    for path in (str(vocabulary.get("path")), BUNDLED_VOCAB_PATH):
        if os.path.isfile(path) and Vocabulary.from_file(path).sha256 == vocabulary.get("sha256"):
            return Featurizer(FeaturesConfig(vocab_file=path, lower_case=bool(vocabulary.get("lower_case"))))
    raise ManifestError(f"{blocks_dir}: its vocabulary {vocabulary.get('path')} (sha256 "
                        f"{str(vocabulary.get('sha256'))[:12]}...) is not on this machine; open the blocks with a "
                        "Featurizer of that vocabulary")


def _block_batches(blocks_dir: str, manifest: BlocksManifest, featurizer, batch_size: int = 512
                   ) -> Iterator[BlockBatch]:
    """Every record in file order, `batch_size` at a time, with the body tokens' character
    offsets: each text is tokenized again in the input pipeline, and a block whose tokens
    differ from its stored ids is not located."""

    def retokenized(batch):
        ids, begins, ends = featurizer.tokenize_with_offsets(batch["text"])
        # Ragged values come to numpy as columns: every row's values end to end, and row lengths.
        columns = {key: batch[key] for key in ("block_id", "doc_id", "title", "text")}
        for key, ragged in (("title", batch["title_token_ids"]), ("body", batch["body_token_ids"]), ("found", ids)):
            columns[f"{key}_ids"], columns[f"{key}_lengths"] = ragged.flat_values, ragged.row_lengths()
        columns["begins"], columns["ends"] = begins.flat_values, ends.flat_values
        return columns

    records = read_block_dataset(manifest.block_paths(blocks_dir)).ragged_batch(batch_size).map(retokenized)
    for c in records.prefetch(1).as_numpy_iterator():
        located = same_rows(c["body_ids"], c["body_lengths"], c["found_ids"], c["found_lengths"])
        # The offsets of located blocks, aligned with the stored ids (the same number of them).
        stored, found = np.repeat(located, c["body_lengths"]), np.repeat(located, c["found_lengths"])
        aligned = [np.full(len(c["body_ids"]), -1, np.int64) for _ in range(2)]
        for out, chars in zip(aligned, (c["begins"], c["ends"])):
            out[stored] = chars[found]
        yield BlockBatch(block_ids=c["block_id"], doc_ids=list(c["doc_id"]), titles=list(c["title"]),
                         texts=list(c["text"]), title_ids=c["title_ids"], title_lengths=c["title_lengths"],
                         body_ids=c["body_ids"], body_lengths=c["body_lengths"], begins=aligned[0], ends=aligned[1],
                         located=located)


def same_rows(values_a: np.ndarray, lengths_a: np.ndarray, values_b: np.ndarray, lengths_b: np.ndarray) -> np.ndarray:
    """Which rows of two ragged arrays of n rows are equal: bool [n].

    values_*: [sum(lengths_*)], the rows end to end; lengths_*: int [n].
    """
    equal = lengths_a == lengths_b
    # Compare the rows of equal length element by element; a difference marks its row unequal.
    in_a, in_b = np.repeat(equal, lengths_a), np.repeat(equal, lengths_b)
    rows = np.repeat(np.flatnonzero(equal), lengths_a[equal])
    equal[rows[values_a[in_a] != values_b[in_b]]] = False
    return equal

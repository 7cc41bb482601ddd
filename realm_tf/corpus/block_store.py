"""`BlockStore`: every block of a chunked corpus by block id, for host-side batching.

Retrieval returns block ids; the reader needs the blocks' token ids, and open-QA needs
their text too (answers are slices of it). The null document is block id -1: no title,
no body, no text.

The blocks are read from the directory's compact store (`realm_tf.artifacts.block_arrays`:
uint16 token ids and offset-indexed texts, memory-mapped, a piece a block shard). The
chunking pipeline writes it, each worker the piece of its own shard (`write_shard_piece`);
a directory chunked without it (or re-chunked by other means) gets it built from its
TFRecord shards the first time it is opened: by a process a CPU for a large one, and
resumed at its next piece if the build is cut short. Building a piece re-tokenizes every
text with the directory's own vocabulary to find each body token's characters; a block
whose text does not give back its stored ids gets no offsets, and opening the store with a
featurizer (to cut answers from the texts) refuses such a directory.
"""

import logging
import os
import shutil
import tempfile
import uuid
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tqdm.auto import tqdm

from realm_tf.artifacts.block_arrays import (INFO_NAME, PIECE_INFO_NAME, BlockArrays, BlockBatch, PieceInfo,
                                             blocks_manifest_sha256, compact_dir, partial_dir, piece_name,
                                             read_block_arrays_info, write_piece, write_store_record)
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

    def get(self, block_id: int, default=None):
        try:
            return self[block_id]
        except KeyError:
            return default

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
        the null document -1 empty), as uint16 `RaggedRows` [n, (tokens)]: a gather a piece, no
        Python loop over the blocks."""
        block_ids = np.asarray(block_ids, np.int64)
        rows = np.full(block_ids.shape, -1, np.int64)
        real = block_ids != NULL_BLOCK_ID
        rows[real] = self.arrays.rows_of(block_ids[real])
        return take_tokens(self.arrays, part, rows)


def take_tokens(arrays: BlockArrays, part: str, rows: np.ndarray) -> RaggedRows:
    """The title ("title") or body ("body") ids of store rows `rows` (int [n], repeats
    allowed, -1 an empty row), as uint16 `RaggedRows` [n, (tokens)]: a gather a piece of
    the store, no loop over the rows."""
    rows = np.asarray(rows, np.int64)
    starts = arrays.piece_starts
    if len(starts) == 2:
        return RaggedRows(*arrays.piece_tokens(part, 0)).take(rows)
    of_piece = np.searchsorted(starts, rows, side="right") - 1
    lengths = np.zeros(rows.shape, np.int64)
    gathered = []
    for p in range(len(starts) - 1):
        mine = np.flatnonzero((of_piece == p) & (rows >= 0))
        if len(mine):
            taken = RaggedRows(*arrays.piece_tokens(part, p)).take(rows[mine] - starts[p])
            lengths[mine] = taken.lengths()
            gathered.append((mine, taken))
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.zeros([int(splits[-1])], np.uint16)
    for mine, taken in gathered:
        # Each taken element's place: its row's begin in the output plus its place in the row.
        values[np.repeat(splits[mine] - taken.splits[:-1], taken.lengths())
               + np.arange(len(taken.values), dtype=np.int64)] = taken.values
    return RaggedRows(values, splits)


def token_rows(arrays: BlockArrays, part: str, start: int, stop: int) -> RaggedRows:
    """The title ("title") or body ("body") ids of store rows [start, stop), as uint16
    `RaggedRows`: a slice of each piece they span, read into memory."""
    starts, parts = arrays.piece_starts, []
    for p in range(len(starts) - 1):
        first, last = max(start, starts[p]) - starts[p], min(stop, starts[p + 1]) - starts[p]
        if first < last:
            values, splits = arrays.piece_tokens(part, p)
            parts.append(RaggedRows(np.array(values[splits[first]:splits[last]]),
                                    np.array(splits[first:last + 1] - splits[first])))
    return RaggedRows.concat(parts) if parts else RaggedRows(np.zeros([0], np.uint16), np.zeros([1], np.int64))


def open_block_arrays(blocks_dir: str, manifest: Optional[BlocksManifest] = None, featurizer=None) -> BlockArrays:
    """The compact store of `blocks_dir`, built first if it is missing or was built for
    another manifest (the directory was chunked again). `featurizer` tokenizes the texts
    for the character offsets; by default one of the directory's own vocabulary. A store on
    gs:// is copied to a local folder first (memory maps need local files)."""
    manifest = manifest or BlocksManifest.read(blocks_dir)
    digest = blocks_manifest_sha256(blocks_dir)
    if "://" in blocks_dir:
        return _local_copy(blocks_dir, manifest, digest, featurizer)
    target = compact_dir(blocks_dir)
    info = read_block_arrays_info(target)
    if info is not None and info.blocks_manifest_sha256 == digest:
        return BlockArrays(target)
    if os.path.exists(target):  # Stale or unfinished: out of sight first, then built again.
        trash = os.path.join(os.path.dirname(target), f".trash-{uuid.uuid4().hex}")
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        _build_store(blocks_dir, manifest, digest, featurizer, target)
    except OSError:
        # Another process (the refresher beside the trainer) published it first.
        info = read_block_arrays_info(target)
        if info is None or info.blocks_manifest_sha256 != digest:
            raise
    return BlockArrays(target)


def _local_copy(blocks_dir: str, manifest: BlocksManifest, digest: str, featurizer) -> BlockArrays:
    """The store of a remote `blocks_dir` in a fresh local folder: its pieces copied when
    the store there is current, else built here from its shards."""
    import tensorflow as tf

    source = compact_dir(blocks_dir)
    target = os.path.join(tempfile.mkdtemp(prefix="realm_blocks_"), "compact")
    info = read_block_arrays_info(source)
    if info is None or info.blocks_manifest_sha256 != digest:
        _build_store(blocks_dir, manifest, digest, featurizer, target)
        return BlockArrays(target)
    for piece in info.pieces:
        _copy_piece(os.path.join(source, piece), os.path.join(target, piece))
    tf.io.gfile.copy(os.path.join(source, INFO_NAME), os.path.join(target, INFO_NAME))
    return BlockArrays(target)


def _copy_piece(source: str, target: str) -> None:
    """Copies the piece folder `source` to `target` (either local or gs://), its record last,
    as when a piece is written in place."""
    import tensorflow as tf

    tf.io.gfile.makedirs(target)
    for name in sorted(tf.io.gfile.listdir(source), key=lambda n: n == PIECE_INFO_NAME):
        tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name))


def _build_store(blocks_dir: str, manifest: BlocksManifest, digest: str, featurizer, target: str,
                 workers: Optional[int] = None) -> None:
    """Builds the store of `blocks_dir` at the local `target`, a piece a shard, and renames it into place.

    The finished pieces wait in `partial_dir(target, digest)`, so a build cut short (a
    machine that went down an hour into a corpus of millions of blocks) keeps them and
    builds only the rest; partial builds for other manifests are removed. `workers`
    processes build pieces side by side (default: `build_workers`).
    """
    featurizer = featurizer or _featurizer_of(blocks_dir, manifest)
    partial = partial_dir(target, digest)
    _remove_other_partials(target, keep=partial)
    os.makedirs(partial, exist_ok=True)
    shards = manifest.block_paths(blocks_dir)
    names = [piece_name(shard) for shard in shards]
    todo = [(shard, os.path.join(partial, name)) for shard, name in zip(shards, names)
            if not _finished_piece(os.path.join(partial, name), featurizer.vocabulary.sha256)]
    workers = build_workers(manifest.num_blocks, len(todo)) if workers is None else max(1, min(workers, len(todo)))
    logger.info("building the compact block store of %s (%d blocks, %d shards; %d pieces kept from an earlier "
                "attempt; %d process%s)", blocks_dir, manifest.num_blocks, len(shards), len(shards) - len(todo),
                workers, "es" if workers > 1 else "")
    with tqdm(total=len(shards), initial=len(shards) - len(todo), desc="building the compact block store",
              unit=" pieces", disable=len(todo) < 2) as bar:
        for _ in _write_pieces(todo, featurizer, workers):
            bar.update()
    write_store_record(partial, names, digest)
    try:
        os.rename(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # Published meanwhile by a builder beside this one.
        raise


# Below this many blocks, starting worker processes (each imports TensorFlow, some seconds)
# costs more than building the pieces one after the other saves.
PARALLEL_MIN_BLOCKS = 50_000


def build_workers(num_blocks: int, num_pieces: int) -> int:
    """How many processes build `num_pieces` pieces of a store of `num_blocks` blocks: one a
    CPU (at most one a piece) for a large store, else 1 (this process)."""
    if num_pieces < 2 or num_blocks < PARALLEL_MIN_BLOCKS:
        return 1
    return min(num_pieces, os.cpu_count() or 1)


def _finished_piece(piece_dir: str, vocabulary_sha256: str) -> bool:
    """Whether `piece_dir` is a whole piece (its record is written last) of this vocabulary."""
    try:
        return PieceInfo.read(piece_dir).vocabulary_sha256 == vocabulary_sha256
    except (OSError, ValueError):
        return False


def _remove_other_partials(target: str, keep: str) -> None:
    """Removes the partial builds of `target` for other manifests (the directory was chunked again)."""
    parent = os.path.dirname(keep)
    prefix = os.path.basename(partial_dir(target, ""))
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        path = os.path.join(parent, name)
        if name.startswith(prefix) and path != keep:
            shutil.rmtree(path, ignore_errors=True)


def _write_pieces(todo: Sequence, featurizer, workers: int) -> Iterator[str]:
    """Writes the piece of each (shard, piece_dir) of `todo`, in this process or in `workers`
    spawned ones; yields each piece_dir as it is finished."""
    if workers <= 1:
        for shard, piece_dir in todo:
            yield _write_missing_piece(shard, piece_dir, featurizer)
        return
    import concurrent.futures
    import multiprocessing

    # Spawned, not forked: the builder may be a process with TensorFlow's threads running.
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_start_worker, initargs=(featurizer.config,)) as pool:
        futures = [pool.submit(_write_piece_in_worker, shard, piece_dir) for shard, piece_dir in todo]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


_worker_featurizer = None  # A worker process's one Featurizer, for every piece it builds.


def _start_worker(features_config) -> None:
    from realm_tf.features import Featurizer

    global _worker_featurizer
    _worker_featurizer = Featurizer(features_config)


def _write_piece_in_worker(shard: str, piece_dir: str) -> str:
    return _write_missing_piece(shard, piece_dir, _worker_featurizer)


def _write_missing_piece(shard: str, piece_dir: str, featurizer) -> str:
    """Writes the piece of `shard` at `piece_dir` unless a builder beside this one just did."""
    try:
        write_shard_piece(shard, piece_dir, featurizer)
    except OSError:
        if not _finished_piece(piece_dir, featurizer.vocabulary.sha256):
            raise
    return piece_dir


def publish_shard_piece(shard: str, blocks_dir: str, featurizer) -> str:
    """Writes the piece of block shard `shard` into the store folder of `blocks_dir` (local
    or gs://, where it is written locally and copied) and returns its name; what the
    chunking pipeline's workers do, a shard each. The store is whole once
    `write_store_record` lists its pieces."""
    import tensorflow as tf

    name = piece_name(shard)
    target = os.path.join(compact_dir(blocks_dir), name)
    if tf.io.gfile.exists(target):  # A retried bundle's piece, perhaps half copied.
        tf.io.gfile.rmtree(target)
    if "://" not in blocks_dir:
        os.makedirs(compact_dir(blocks_dir), exist_ok=True)
        write_shard_piece(shard, target, featurizer)
        return name
    with tempfile.TemporaryDirectory(prefix="realm_piece_") as local:
        write_shard_piece(shard, os.path.join(local, name), featurizer)
        _copy_piece(os.path.join(local, name), target)
    return name


def write_shard_piece(shard: str, piece_dir: str, featurizer) -> PieceInfo:
    """Writes the piece of block shard `shard` (a TFRecord file, local or gs://) into the
    local folder `piece_dir`: its blocks with the character offsets `featurizer` finds."""
    return write_piece(piece_dir, _block_batches([shard], featurizer), featurizer.vocabulary.sha256,
                       os.path.basename(shard))


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


def _block_batches(paths: Sequence[str], featurizer, batch_size: int = 512) -> Iterator[BlockBatch]:
    """Every record of the block shards `paths` in file order, `batch_size` at a time, with
    the body tokens' character offsets: each text is tokenized again, and a block whose
    tokens differ from its stored ids is not located."""

    def columns(batch):
        # Ragged values come to numpy as columns: every row's values end to end, and row lengths.
        out = {key: batch[key] for key in ("block_id", "doc_id", "title", "text")}
        for key in ("title", "body"):
            ragged = batch[f"{key}_token_ids"]
            out[f"{key}_ids"], out[f"{key}_lengths"] = ragged.flat_values, ragged.row_lengths()
        return out

    records = read_block_dataset(list(paths)).ragged_batch(batch_size).map(columns).prefetch(1)
    for c in records.as_numpy_iterator():
        # Tokenized on the host by a function traced once a process, not once a dataset: a
        # store of many pieces (a piece a shard) pays no tracing a piece.
        ids, begins, ends = featurizer.traced_tokenize_with_offsets(c["text"])
        found_lengths = ids.row_lengths().numpy()
        located = same_rows(c["body_ids"], c["body_lengths"], ids.flat_values.numpy(), found_lengths)
        # The offsets of located blocks, aligned with the stored ids (the same number of them).
        stored, found = np.repeat(located, c["body_lengths"]), np.repeat(located, found_lengths)
        aligned = [np.full(len(c["body_ids"]), -1, np.int64) for _ in range(2)]
        for out, chars in zip(aligned, (begins, ends)):
            out[stored] = chars.flat_values.numpy()[found]
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

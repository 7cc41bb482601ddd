"""The compact block store: a block directory's blocks as flat, memory-mapped arrays.

    <blocks_dir>/compact/
      arrays.json            `BlockArraysInfo`: the pieces in row order, their totals and the
                             digest of the manifest they belong to; written last
      <piece>/               one piece a block shard (blocks-SSSSS-of-NNNNN), written by the
                             chunking pipeline's worker of that shard (or by the first
                             reader of a directory chunked without them):
        piece.json                          `PieceInfo`, written last
        block_ids.i64                       int64 [n], the shard's blocks in record order
        title_tokens.u16, title_offsets.i64 the WordPiece ids of every title, uint16 [T];
                                            block i's are [title_offsets[i], title_offsets[i + 1])
        body_tokens.u16, body_offsets.i64   the same for the bodies, uint16 [B]
        token_begins.u16, token_ends.u16    uint16 [B]: the characters of block i's text each
                                            body token came from (indexed by body_offsets),
                                            65,535 for a token of an unlocated block; int32
                                            (.i32, -1 for those) in a piece whose offsets do not
                                            fit (`PieceInfo.char_offsets_dtype`)
        doc_ids.utf8, titles.utf8, texts.utf8   UTF-8 strings back to back, with
        doc_id_offsets.i64, title_text_offsets.i64, text_offsets.i64   byte offsets [n + 1]

Raw little-endian arrays, opened with `numpy.memmap`: nothing is read until a block is
touched, and what stays resident is the pages touched. A token costs 2 bytes (the
vocabulary has 30,522 ids, under 2**16) plus 4 for its character offsets (a block's text
is a few thousand characters, so they fit uint16 too), read only for the blocks answered
from. Rows number the blocks of all pieces, piece after piece.

A piece is built from its shard alone, so at corpus scale the pieces are built where the
shards are written, a worker each, and nothing but the small `arrays.json` needs every
piece. Pieces and store are staged and renamed into place like every artifact here;
`BlockArraysInfo.blocks_manifest_sha256` ties the store to the `manifest.json` it was
built for, so a re-chunked directory's stale arrays are rebuilt, not read. A store built
by a directory's first reader collects its finished pieces in

    <blocks_dir>/.compact-partial-<first 16 hex digits of that digest>/

and is renamed to `compact/` once whole, so a build cut short resumes at its next piece.
"""

import dataclasses
import hashlib
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from realm_tf.artifacts.manifests import MANIFEST_NAME
from realm_tf.artifacts.staging import staged_directory
from realm_tf.errors import RealmError

COMPACT_DIR = "compact"
PARTIAL_INFIX = "-partial-"
INFO_NAME = "arrays.json"
PIECE_INFO_NAME = "piece.json"
ARRAYS_FORMAT = "realm_tf.block_arrays.v2"
PIECE_FORMAT = "realm_tf.block_arrays.piece.v1"
MAX_TOKEN_ID = np.iinfo(np.uint16).max
_TOKENS = {"title": "title_tokens.u16", "body": "body_tokens.u16"}
_TOKEN_OFFSETS = {"title": "title_offsets.i64", "body": "body_offsets.i64"}
# The character offsets' files by dtype (`PieceInfo.char_offsets_dtype`); uint16 keeps its
# largest value for "unlocated", int32 (the pieces written before uint16, and a piece whose
# offsets reach it) keeps -1.
_CHARS = {"uint16": {"begins": "token_begins.u16", "ends": "token_ends.u16"},
          "int32": {"begins": "token_begins.i32", "ends": "token_ends.i32"}}
UNLOCATED_U16 = np.iinfo(np.uint16).max
_STRINGS = {"doc_id": ("doc_ids.utf8", "doc_id_offsets.i64"), "title": ("titles.utf8", "title_text_offsets.i64"),
            "text": ("texts.utf8", "text_offsets.i64")}
_DTYPES = {".u16": np.uint16, ".i32": np.int32, ".i64": np.int64}


class BlockArraysError(RealmError, ValueError):
    """Compact block arrays that are missing, stale, or cannot hold the blocks."""


def compact_dir(blocks_dir: str) -> str:
    return os.path.join(blocks_dir, COMPACT_DIR)


def partial_dir(target: str, blocks_manifest_sha256: str) -> str:
    """Where the store `target` (a local compact folder) collects its pieces while it is
    built for the manifest of digest `blocks_manifest_sha256`: beside it, named after both."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}{PARTIAL_INFIX}{blocks_manifest_sha256[:16]}")


def _widened(offsets: np.ndarray) -> np.ndarray:
    """uint16 character offsets as int32, the "unlocated" mark as -1."""
    return np.where(offsets == UNLOCATED_U16, np.int32(-1), offsets.astype(np.int32))


def piece_name(shard: str) -> str:
    """The piece of block shard `shard` (a path or file name): its name without the suffix."""
    return os.path.splitext(os.path.basename(shard))[0]


def blocks_manifest_sha256(blocks_dir: str) -> str:
    """The digest of the block directory's manifest, which names its shards and counts."""
    import tensorflow as tf  # tf.io.gfile: block directories may be on gs://.

    with tf.io.gfile.GFile(os.path.join(blocks_dir, MANIFEST_NAME), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read_record(path: str, format_name: str, cls):
    """The dataclass `cls` of the JSON record at `path` (tf.io.gfile: local or gs://)."""
    import json

    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "r") as f:
            record = json.loads(f.read())
    except tf.errors.NotFoundError:
        raise BlockArraysError(f"{path}: missing; not a compact block store") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BlockArraysError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(record, dict) or record.get("format") != format_name:
        raise BlockArraysError(f"{path}: format is not {format_name!r}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in record]
    if missing:
        raise BlockArraysError(f"{path}: no field {missing[0]!r}")
    fields = {f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _write_record(path: str, format_name: str, record) -> None:
    import json

    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps({"format": format_name, **dataclasses.asdict(record)}, indent=2, sort_keys=True))


@dataclasses.dataclass(frozen=True)
class PieceInfo:
    """The record of one piece (the blocks of one shard).

    Attributes:
      num_blocks, num_title_tokens, num_body_tokens: the arrays' lengths.
      vocabulary_sha256: of the vocabulary the character offsets were computed with.
      source: the name of the block shard it was built from.
      unlocated_blocks: blocks whose text does not re-tokenize to their token ids (a
        word cut between wordpieces by the chunker), so their offsets are -1.
      first_unlocated: "<block id> (document <doc id>)" of the first of them, for errors.
      char_offsets_dtype: "uint16", or "int32" where an offset reaches 65,535 (and in the
        pieces written before uint16, whose records lack the field).
    """

    num_blocks: int
    num_title_tokens: int
    num_body_tokens: int
    vocabulary_sha256: str
    source: str
    unlocated_blocks: int = 0
    first_unlocated: str = ""
    char_offsets_dtype: str = "int32"

    @classmethod
    def read(cls, piece_dir: str) -> "PieceInfo":
        return _read_record(os.path.join(piece_dir, PIECE_INFO_NAME), PIECE_FORMAT, cls)


@dataclasses.dataclass(frozen=True)
class BlockArraysInfo:
    """The store's record: its pieces' totals.

    Attributes:
      num_blocks, num_title_tokens, num_body_tokens, unlocated_blocks: sums over the pieces.
      blocks_manifest_sha256: of the `manifest.json` the store belongs to.
      vocabulary_sha256: of the vocabulary the character offsets were computed with.
      pieces: the pieces' directory names, in row order.
      first_unlocated: the first piece's first unlocated block, for errors.
    """

    num_blocks: int
    num_title_tokens: int
    num_body_tokens: int
    blocks_manifest_sha256: str
    vocabulary_sha256: str
    pieces: Tuple[str, ...]
    unlocated_blocks: int = 0
    first_unlocated: str = ""

    @classmethod
    def read(cls, directory: str) -> "BlockArraysInfo":
        return _read_record(os.path.join(directory, INFO_NAME), ARRAYS_FORMAT, cls)


@dataclasses.dataclass(frozen=True)
class BlockBatch:
    """n blocks to append to a piece, as columns (what one `ragged_batch` of block records gives).

    Attributes:
      block_ids: int64 [n].
      doc_ids, titles, texts: n UTF-8 `bytes` each.
      title_ids, body_ids: int64 [T] and [B], every block's WordPiece ids end to end.
      title_lengths, body_lengths: int64 [n], how many of them each block has.
      begins, ends: int64 [B], the characters of its text each body token came from.
      located: bool [n]; False for a block whose text does not hold its tokens: its
        begins and ends are ignored and stored as -1, and it is counted as unlocated.
    """

    block_ids: np.ndarray
    doc_ids: Sequence[bytes]
    titles: Sequence[bytes]
    texts: Sequence[bytes]
    title_ids: np.ndarray
    title_lengths: np.ndarray
    body_ids: np.ndarray
    body_lengths: np.ndarray
    begins: np.ndarray
    ends: np.ndarray
    located: np.ndarray


class BlockArraysWriter:
    """Appends batches of blocks to the arrays of a piece's staging directory, holding only
    the offsets (8 bytes a block each) in memory; `close` writes the piece's record last."""

    unlocated_blocks = 0
    first_unlocated = ""
    char_offsets_dtype = "uint16"

    def __init__(self, directory: str):
        self.directory = directory
        names = [*_TOKENS.values(), *_CHARS["uint16"].values(), "block_ids.i64",
                 *(data for data, _ in _STRINGS.values())]
        self._files = {name: open(os.path.join(directory, name), "wb") for name in names}
        self._offsets = {name: [np.zeros([1], np.int64)] for name in [*_TOKEN_OFFSETS.values(),
                                                                      *(offsets for _, offsets in _STRINGS.values())]}

    def _append(self, name: str, values, dtype) -> None:
        np.asarray(values, dtype).astype(np.dtype(dtype).newbyteorder("<"), copy=False).tofile(self._files[name])

    def _extend_offsets(self, name: str, lengths: np.ndarray) -> None:
        offsets = self._offsets[name]
        offsets.append(offsets[-1][-1] + np.cumsum(lengths, dtype=np.int64))

    def add_batch(self, batch: BlockBatch) -> None:
        n = len(batch.block_ids)
        for part, ids, lengths in (("title", batch.title_ids, batch.title_lengths),
                                   ("body", batch.body_ids, batch.body_lengths)):
            ids = np.asarray(ids, np.int64)
            if int(np.sum(lengths)) != len(ids) or len(lengths) != n:
                raise BlockArraysError(f"blocks {batch.block_ids[:1].tolist()}...: {len(ids)} {part} ids for "
                                       f"lengths summing to {int(np.sum(lengths))} over {len(lengths)} of {n} blocks")
            bad = (ids < 0) | (ids > MAX_TOKEN_ID)
            if bad.any():
                row = int(np.searchsorted(np.cumsum(lengths), np.argmax(bad), side="right"))
                raise BlockArraysError(f"block {int(batch.block_ids[row])}: token id {int(ids[np.argmax(bad)])} does "
                                       "not fit uint16; the compact store holds vocabularies of at most 65,536 ids")
            self._append(_TOKENS[part], ids, np.uint16)
            self._extend_offsets(_TOKEN_OFFSETS[part], lengths)
        if not len(batch.begins) == len(batch.ends) == len(batch.body_ids):
            raise BlockArraysError(f"blocks {batch.block_ids[:1].tolist()}...: {len(batch.begins)} character offsets "
                                   f"for {len(batch.body_ids)} tokens")
        located = np.asarray(batch.located, bool)
        if not located.all():
            unlocated = np.flatnonzero(~located)
            self.unlocated_blocks += len(unlocated)
            first = int(unlocated[0])
            self.first_unlocated = self.first_unlocated or (
                f"{int(batch.block_ids[first])} (document {batch.doc_ids[first].decode('utf-8')!r})")
        by_token = np.repeat(located, batch.body_lengths)
        chars = {name: np.where(by_token, values, -1) for name, values in (("begins", batch.begins),
                                                                           ("ends", batch.ends))}
        if self.char_offsets_dtype == "uint16" and max(int(v.max(initial=-1)) for v in chars.values()) >= UNLOCATED_U16:
            self._widen_char_offsets()
        for name, values in chars.items():
            if self.char_offsets_dtype == "uint16":
                values = np.where(values < 0, UNLOCATED_U16, values)
            self._append(_CHARS[self.char_offsets_dtype][name], values, np.dtype(self.char_offsets_dtype))
        self._append("block_ids.i64", batch.block_ids, np.int64)
        for part, values in (("doc_id", batch.doc_ids), ("title", batch.titles), ("text", batch.texts)):
            data_name, offsets_name = _STRINGS[part]
            self._files[data_name].write(b"".join(values))
            self._extend_offsets(offsets_name, np.fromiter(map(len, values), np.int64, len(values)))

    def _widen_char_offsets(self) -> None:
        """Rewrites the uint16 offsets written so far as int32 (-1 for unlocated), for a
        block whose text is too long for uint16; the rest of the piece is written int32."""
        for name, narrow in _CHARS["uint16"].items():
            self._files.pop(narrow).close()
            values = _widened(np.fromfile(os.path.join(self.directory, narrow), np.dtype("<u2")))
            os.remove(os.path.join(self.directory, narrow))
            wide = _CHARS["int32"][name]
            self._files[wide] = open(os.path.join(self.directory, wide), "wb")
            self._append(wide, values, np.int32)
        self.char_offsets_dtype = "int32"

    def close(self, vocabulary_sha256: str, source: str) -> PieceInfo:
        for f in self._files.values():
            f.close()
        ends = {}
        for name, pieces in self._offsets.items():
            offsets = np.concatenate(pieces)
            offsets.astype("<i8").tofile(os.path.join(self.directory, name))
            ends[name] = int(offsets[-1])
        info = PieceInfo(num_blocks=sum(len(p) for p in self._offsets[_STRINGS["text"][1]]) - 1,
                         num_title_tokens=ends[_TOKEN_OFFSETS["title"]], num_body_tokens=ends[_TOKEN_OFFSETS["body"]],
                         vocabulary_sha256=vocabulary_sha256, source=source,
                         unlocated_blocks=self.unlocated_blocks, first_unlocated=self.first_unlocated,
                         char_offsets_dtype=self.char_offsets_dtype)
        _write_record(os.path.join(self.directory, PIECE_INFO_NAME), PIECE_FORMAT, info)
        return info


def write_piece(piece_dir: str, batches: Iterator[BlockBatch], vocabulary_sha256: str, source: str) -> PieceInfo:
    """Writes `batches` (the blocks of block shard `source`) as the piece `piece_dir` of a
    local store, staged beside it and renamed into place."""
    with staged_directory(piece_dir) as staging:
        writer = BlockArraysWriter(staging)
        for batch in batches:
            writer.add_batch(batch)
        return writer.close(vocabulary_sha256, source)


def write_store_record(directory: str, pieces: Sequence[str], blocks_manifest_sha256: str) -> BlockArraysInfo:
    """Makes the pieces `pieces` (directory names under `directory`, in row order) one store:
    checks they share a vocabulary and writes `arrays.json`, last. Reads the pieces' records
    only (local or gs://)."""
    infos = [PieceInfo.read(os.path.join(directory, name)) for name in pieces]
    vocabularies = {info.vocabulary_sha256 for info in infos}
    if len(vocabularies) > 1:
        raise BlockArraysError(f"{directory}: its pieces were tokenized with {len(vocabularies)} vocabularies "
                               f"({', '.join(sorted(v[:12] for v in vocabularies))}); a store has one")
    first_unlocated = next((info.first_unlocated for info in infos if info.unlocated_blocks), "")
    info = BlockArraysInfo(
        num_blocks=sum(i.num_blocks for i in infos), num_title_tokens=sum(i.num_title_tokens for i in infos),
        num_body_tokens=sum(i.num_body_tokens for i in infos), blocks_manifest_sha256=blocks_manifest_sha256,
        vocabulary_sha256=vocabularies.pop() if vocabularies else "", pieces=tuple(pieces),
        unlocated_blocks=sum(i.unlocated_blocks for i in infos), first_unlocated=first_unlocated)
    _write_record(os.path.join(directory, INFO_NAME), ARRAYS_FORMAT, info)
    return info


def write_block_arrays(output_dir: str, batches: Iterator[BlockBatch], blocks_manifest_sha256: str,
                       vocabulary_sha256: str, source: str = "blocks") -> BlockArraysInfo:
    """Writes `batches` as a store of one piece, `output_dir`, staged beside it and renamed into place."""
    with staged_directory(output_dir) as staging:
        write_piece(os.path.join(staging, piece_name(source)), batches, vocabulary_sha256, source)
        return write_store_record(staging, [piece_name(source)], blocks_manifest_sha256)


class _Piece:
    """The memory-mapped arrays of one piece."""

    def __init__(self, directory: str):
        self.directory = directory
        self.info = PieceInfo.read(directory)
        if self.info.char_offsets_dtype not in _CHARS:
            raise BlockArraysError(f"{os.path.join(directory, PIECE_INFO_NAME)}: char_offsets_dtype "
                                   f"{self.info.char_offsets_dtype!r} is not one of {sorted(_CHARS)}")
        self.char_files = _CHARS[self.info.char_offsets_dtype]
        sizes = {"block_ids.i64": self.info.num_blocks,
                 _TOKENS["title"]: self.info.num_title_tokens, _TOKENS["body"]: self.info.num_body_tokens,
                 **{name: self.info.num_body_tokens for name in self.char_files.values()}}
        sizes.update({name: self.info.num_blocks + 1 for name in _TOKEN_OFFSETS.values()})
        sizes.update({offsets: self.info.num_blocks + 1 for _, offsets in _STRINGS.values()})
        self.arrays: Dict[str, np.ndarray] = {name: self._map(name, size) for name, size in sizes.items()}
        for data_name, offsets_name in _STRINGS.values():
            self.arrays[data_name] = self._map(data_name, int(self.arrays[offsets_name][-1]), np.uint8)

    def _map(self, name: str, size: int, dtype=None) -> np.ndarray:
        path = os.path.join(self.directory, name)
        dtype = np.dtype(dtype or _DTYPES[os.path.splitext(name)[1]]).newbyteorder("<")
        expected = size * dtype.itemsize
        found = os.path.getsize(path) if os.path.exists(path) else None
        if found != expected:
            raise BlockArraysError(f"{path}: {found} bytes, {PIECE_INFO_NAME} says {expected}; the store is damaged")
        # An empty file cannot be memory-mapped; nothing would be read from it anyway.
        return np.memmap(path, dtype, mode="r", shape=(size,)) if size else np.zeros([0], dtype)

    def slice(self, data_name: str, offsets_name: str, row: int) -> np.ndarray:
        offsets = self.arrays[offsets_name]
        return self.arrays[data_name][offsets[row]:offsets[row + 1]]


class BlockArrays:
    """The compact store of one block directory, memory-mapped (see the module docstring).

    Attributes:
      info: its `BlockArraysInfo`.
      block_ids: int64 [N], the blocks of every piece in row order.
      piece_starts: int64 [pieces + 1], the first row of each piece, then N.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.info = BlockArraysInfo.read(directory)
        self._pieces = [_Piece(os.path.join(directory, name)) for name in self.info.pieces]
        counts = [piece.info.num_blocks for piece in self._pieces]
        if sum(counts) != self.info.num_blocks:
            raise BlockArraysError(f"{os.path.join(directory, INFO_NAME)}: {self.info.num_blocks} blocks, its pieces "
                                   f"hold {sum(counts)}; the store is damaged")
        # Row r of the store is row r - piece_starts[p] of piece p, piece_starts[p] <= r < piece_starts[p + 1].
        self.piece_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.block_ids = (np.concatenate([piece.arrays["block_ids.i64"] for piece in self._pieces])
                          if self._pieces else np.zeros([0], np.int64))
        self._order = np.argsort(self.block_ids, kind="stable")
        self._sorted_ids = self.block_ids[self._order]

    def _locate(self, row: int) -> Tuple[_Piece, int]:
        p = int(np.searchsorted(self.piece_starts, row, side="right")) - 1
        return self._pieces[p], row - int(self.piece_starts[p])

    def row_of(self, block_id: int) -> Optional[int]:
        """The row of `block_id`, None if the store has no such block."""
        at = int(np.searchsorted(self._sorted_ids, block_id))
        if at < len(self._sorted_ids) and self._sorted_ids[at] == block_id:
            return int(self._order[at])
        return None

    def rows_of(self, block_ids: np.ndarray) -> np.ndarray:
        """int64 [n]: the rows of `block_ids` (int [n]); KeyError names the first id the store lacks."""
        block_ids = np.asarray(block_ids, np.int64)
        if not len(self._sorted_ids):
            if len(block_ids):
                raise KeyError(int(block_ids[0]))
            return np.zeros([0], np.int64)
        at = np.minimum(np.searchsorted(self._sorted_ids, block_ids), len(self._sorted_ids) - 1)
        missing = self._sorted_ids[at] != block_ids
        if missing.any():
            raise KeyError(int(block_ids[missing][0]))
        return self._order[at].astype(np.int64)

    def piece_tokens(self, part: str, piece: int) -> Tuple[np.ndarray, np.ndarray]:
        """(uint16 [tokens], int64 [n + 1]) of piece `piece` (rows piece_starts[piece] on):
        every title's ("title") or body's ("body") ids end to end, and where its row i's
        begin (memory-mapped, nothing read yet)."""
        arrays = self._pieces[piece].arrays
        return arrays[_TOKENS[part]], arrays[_TOKEN_OFFSETS[part]]

    def tokens(self, part: str, row: int) -> np.ndarray:
        """uint16 [tokens]: the title's ("title") or body's ("body") WordPiece ids of `row`."""
        piece, local = self._locate(row)
        return piece.slice(_TOKENS[part], _TOKEN_OFFSETS[part], local)

    def char_offsets(self, which: str, row: int) -> np.ndarray:
        """int32 [body tokens]: the body tokens' first characters ("begins") or ends ("ends"),
        -1 for every token of an unlocated block."""
        piece, local = self._locate(row)
        values = piece.slice(piece.char_files[which], _TOKEN_OFFSETS["body"], local)
        return _widened(values) if piece.info.char_offsets_dtype == "uint16" else np.asarray(values, np.int32)

    def string(self, part: str, row: int) -> str:
        """The "doc_id", "title" or "text" of `row`."""
        piece, local = self._locate(row)
        return bytes(piece.slice(*_STRINGS[part], local)).decode("utf-8")

    def file_bytes(self) -> Dict[str, int]:
        """Bytes on disk by array, over every piece: what a reader touching every block would map."""
        sizes: Dict[str, int] = {}
        for piece in self._pieces:
            for name, array in piece.arrays.items():
                sizes[name] = sizes.get(name, 0) + int(array.nbytes)
        return sizes


def read_block_arrays_info(directory: str) -> Optional[BlockArraysInfo]:
    """The store's record, None if there is no complete store there."""
    try:
        return BlockArraysInfo.read(directory)
    except BlockArraysError:
        return None

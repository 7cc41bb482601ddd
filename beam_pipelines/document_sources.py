"""Reading documents with their positions: JSONL lines and TFRecord records, numbered from 1.

Each file is read sequentially by one worker, one record at a time (nothing holds a
whole file), so errors can name the exact line; a corpus of millions of documents is
expected as many files (shards), which are read in parallel.
"""

import dataclasses
from typing import Iterator, List, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from realm_tf.corpus.documents import BadRecordError, SourcePosition, parse_example, parse_json_line
from realm_tf.errors import RealmError

JSONL = "jsonl"
TFRECORD = "tfrecord"
_SUFFIXES = {
    ".jsonl": JSONL,
    ".json": JSONL,
    ".jsonl.gz": JSONL,
    ".tfrecord": TFRECORD,
    ".tfrecords": TFRECORD,
    ".tfrecord.gz": TFRECORD,
}


class InputError(RealmError, ValueError):
    """An input path or format that cannot be read at all."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str
    format: str


def list_input_files(patterns: Sequence[str], input_format: str = "auto") -> List[InputFile]:
    """Expands file patterns (local or cloud) into files with a format; errors name the pattern.

    Args:
      patterns: paths or globs.
      input_format: "jsonl", "tfrecord", or "auto" (by file name suffix).
    """
    if not patterns:
        raise InputError("no --input given")
    files = []
    for pattern in patterns:
        matches = FileSystems.match([pattern])[0].metadata_list
        if not matches:
            raise InputError(f"--input {pattern!r}: no such file")
        for metadata in sorted(matches, key=lambda m: m.path):
            files.append(InputFile(metadata.path, _format_of(metadata.path, input_format)))
    return files


def _format_of(path: str, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    for suffix, name in sorted(_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if path.endswith(suffix):
            return name
    raise InputError(
        f"{path}: cannot tell the format from the name (expected one of {sorted(_SUFFIXES)}); "
        "pass --input_format=jsonl or --input_format=tfrecord"
    )


def read_documents(input_file: InputFile) -> Iterator[Tuple[SourcePosition, object]]:
    """Yields `(position, Document)` or `(position, BadRecordError)` for each record of a file.

    An empty file yields one `BadRecordError` of kind "empty_file" at line 0. Blank JSONL
    lines hold no record and are passed over.
    """
    parse = parse_json_line if input_file.format == JSONL else parse_example
    empty = True
    try:
        for source, raw in _records(input_file):
            empty = False
            try:
                yield source, parse(raw, source)
            except BadRecordError as e:
                yield source, e
    except BadRecordError as e:  # A corrupt file: nothing after this point can be read.
        yield e.source, e
        return
    if empty:
        source = SourcePosition(input_file.path, 0)
        yield source, BadRecordError(source, "empty_file", "the file holds no records")


def _records(input_file: InputFile) -> Iterator[Tuple[SourcePosition, bytes]]:
    if input_file.format == JSONL:
        with FileSystems.open(input_file.path) as f:
            number = 0
            while True:
                line = f.readline()
                if not line:
                    return
                number += 1
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield SourcePosition(input_file.path, number), line
    else:
        import tensorflow as tf

        compression = "GZIP" if input_file.path.endswith(".gz") else ""
        number = 0
        iterator = iter(tf.data.TFRecordDataset(input_file.path, compression_type=compression))
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            except tf.errors.DataLossError as e:
                source = SourcePosition(input_file.path, number + 1)
                raise BadRecordError(source, "corrupt_tfrecord", f"corrupt TFRecord: {e.message}") from None
            number += 1
            yield SourcePosition(input_file.path, number), record.numpy()

"""Input documents, parsed and validated one record at a time.

A document is `{"id": str, "title": str, "text": str}`: a JSON object per line of a
JSONL file, or a `tf.train.Example` with bytes features `id`, `title`, `text` per
record of a TFRecord file. `id` and `text` must be non-empty; `title` must be present
and may be empty (corpora such as news have none).
"""

import dataclasses
import json

from realm_tf.errors import RealmError


@dataclasses.dataclass(frozen=True)
class SourcePosition:
    """Where a record came from: the file and the 1-based line (JSONL) or record (TFRecord); 0 for the whole file."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    source: SourcePosition


class BadRecordError(RealmError, ValueError):
    """A record that cannot become a document; the message names its file and line.

    Attributes:
      source: where the record is.
      kind: a short category ("malformed_json", "missing_field", ...) that manifests count.
      reason: what is wrong, for people.
    """

    def __init__(self, source: SourcePosition, kind: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.kind = kind
        self.reason = reason


_FIELDS = ("id", "title", "text")


def parse_json_line(raw: bytes, source: SourcePosition) -> Document:
    """Parses one JSONL line (bytes, without the newline) into a validated `Document`."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecordError(source, "invalid_utf8", f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadRecordError(source, "malformed_json", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise BadRecordError(source, "malformed_json", f"expected a JSON object, got {type(record).__name__}")
    return _validated({name: record.get(name) for name in _FIELDS}, source)


def parse_example(raw: bytes, source: SourcePosition) -> Document:
    """Parses one serialized `tf.train.Example` into a validated `Document`."""
    from tensorflow.core.example import example_pb2
    from google.protobuf.message import DecodeError

    example = example_pb2.Example()
    try:
        example.ParseFromString(raw)
    except DecodeError:
        raise BadRecordError(source, "malformed_example", "not a serialized tf.train.Example") from None
    features = example.features.feature
    fields = {}
    for name in _FIELDS:
        if name not in features:
            fields[name] = None
            continue
        values = features[name].bytes_list.value
        if len(values) != 1:
            raise BadRecordError(source, "malformed_example", f"field {name!r} must hold exactly one bytes value, has {len(values)}")
        try:
            fields[name] = values[0].decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRecordError(source, "invalid_utf8", f"field {name!r} is not valid UTF-8 (byte {e.start})") from None
    return _validated(fields, source)


def _validated(fields, source: SourcePosition) -> Document:
    for name in _FIELDS:
        value = fields[name]
        if value is None:
            raise BadRecordError(source, "missing_field", f"missing field {name!r}")
        if not isinstance(value, str):
            raise BadRecordError(source, "wrong_type", f"field {name!r} must be a string, got {type(value).__name__}")
    if not fields["id"].strip():
        raise BadRecordError(source, "empty_field", "empty field 'id'")
    if not fields["text"].strip():
        raise BadRecordError(source, "empty_field", "empty field 'text'")
    return Document(id=fields["id"], title=fields["title"], text=fields["text"], source=source)

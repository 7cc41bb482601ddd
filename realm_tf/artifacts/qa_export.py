"""A QA export's own record and files, inside the SavedModel (`realm_tf.export.qa_export`).

    <export_dir>/
      saved_model.pb, variables/, assets/             the SavedModel (its vocabulary an asset)
      assets.extra/realm_qa.json                      `QaExportInfo`, written last
      assets.extra/tf_serving_warmup_requests         PredictionLog records TF Serving replays on load

The record says how the export retrieves and reads (retrieval kind, top_k, max_k, the
answer length), what it was made from (model dir, checkpoint, blocks, index version,
embedder export, vocabulary digest) and the full config.
"""

import dataclasses
import datetime
import os
from typing import Any, Dict, Optional, Tuple

import realm_tf
from realm_tf.artifacts.staging import read_json, write_json
from realm_tf.errors import RealmError

METADATA_PATH = os.path.join("assets.extra", "realm_qa.json")
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
# v2: answer_begin and answer_end among the outputs. v3: k bounded by max_k, chunks by question-block pairs.
QA_FORMAT = "realm_tf.qa.v3"


class QaExportError(RealmError, ValueError):
    """A QA export that cannot be made from the given model, blocks and index, or read back."""


@dataclasses.dataclass(frozen=True)
class QaExportInfo:
    """The record of one QA export.

    Attributes:
      retrieval: "exact", "scann", "hybrid" (exact and lexical) or "scann_hybrid".
      scann_build: the index's ScaNN build parameters (scann exports), else None.
      top_k, max_answer_length: what serving_default reads and answers with.
      max_k: the largest k answer_with_options accepts.
      reader_batch_size: questions read at once at top_k blocks each.
      warmup_requests: how many warmup records were written (0: none).
      num_blocks: blocks held in the export.
      model_dir, checkpoint, blocks_dir, index_version: absolute paths it was made from.
      embedder_export: the embedder the index was built with (None if unknown).
      vocabulary: {"sha256", "size"} of the vocabulary asset.
      outputs: {output name: {"dtype", "shape"}} of both signatures.
      config: the full experiment config, as a dict.
      part: "qa", the whole export; or a part of a two-part deployment: "retriever" (the
        query tower and the index) or "reader" (the model, no block).
      created_at, created_by: when, and by which realm_tf.
    """

    retrieval: str
    scann_build: Optional[Dict[str, Any]]
    top_k: int
    max_answer_length: int
    max_k: int
    reader_batch_size: int
    warmup_requests: int
    num_blocks: int
    model_dir: str
    checkpoint: str
    blocks_dir: str
    index_version: str
    embedder_export: Optional[str]
    vocabulary: Dict[str, Any]
    outputs: Dict[str, Any]
    config: Dict[str, Any]
    part: str = "qa"
    created_at: str = ""
    created_by: str = ""

    @classmethod
    def now(cls, **fields) -> "QaExportInfo":
        return cls(created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   created_by=f"realm_tf {realm_tf.__version__}", **fields)

    def write(self, export_dir: str) -> None:
        """Writes the record into `export_dir` (a staging directory: the last file written)."""
        write_json(os.path.join(export_dir, METADATA_PATH), {"format": QA_FORMAT, **dataclasses.asdict(self)})

    @classmethod
    def read(cls, export_dir: str) -> "QaExportInfo":
        """Raises QaExportError, naming the path, when export_dir is not a QA export."""
        path = os.path.join(export_dir, METADATA_PATH)
        record = read_json(path, QaExportError, f"is {export_dir!r} a QA export of python -m realm_tf.export?")
        if not isinstance(record, dict) or record.get("format") != QA_FORMAT:
            raise QaExportError(f"{path}: format is not {QA_FORMAT!r}; not a QA export of this version of realm_tf")
        fields = {f.name for f in dataclasses.fields(cls)}
        # Fields with a default were added later: a record written before them has none.
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in record and f.default is dataclasses.MISSING)
        if missing:
            raise QaExportError(f"{path}: no field {missing[0]!r}")
        return cls(**{name: record[name] for name in fields if name in record})


def load_qa_export(export_dir: str) -> Tuple[QaExportInfo, Any]:
    """(its `QaExportInfo`, the SavedModel `tf.saved_model.load`ed) of a QA export, the ops its
    graph needs (TF Text's, and ScaNN's for a scann or scann_hybrid export but its reader part)
    registered before the load."""
    info = QaExportInfo.read(export_dir)
    if info.retrieval.startswith("scann") and info.part != "reader":
        import scann  # noqa: F401
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return info, tf.saved_model.load(export_dir)

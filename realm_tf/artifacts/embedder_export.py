"""An embedder export's own record: `assets.extra/realm_embedder.json` inside the SavedModel.

    {"format": "realm_tf.embedder.v1", "step": 120, "created_at": "...",
     "projection_size": 128, "share_towers": false,
     "features": {<FeaturesConfig fields>, "vocab_file": "vocab.txt"},
     "vocabulary": {"sha256": "...", "size": 30522}}

The SavedModel and its signatures are `realm_tf.retrieval.embedder_export`'s; the record
is written last, so an export without it is incomplete. The vocabulary travels as the
SavedModel's asset `assets/<vocab_file>`.
"""

import dataclasses
import datetime
import json
import os
from typing import Any, Dict

from realm_tf.artifacts.staging import write_json
from realm_tf.errors import RealmError

METADATA_PATH = os.path.join("assets.extra", "realm_embedder.json")
EMBEDDER_FORMAT = "realm_tf.embedder.v1"


class EmbedderExportError(RealmError, ValueError):
    """An embedder export that is missing, incomplete or does not fit what it is used with."""


@dataclasses.dataclass(frozen=True)
class EmbedderExportInfo:
    """The record of one embedder export.

    Attributes:
      step: the training step whose weights it holds.
      projection_size: the embeddings' width P.
      share_towers: whether queries and blocks go through one tower.
      features: the `FeaturesConfig` fields it packs with; `vocab_file` is the asset's base name.
      vocabulary_sha256, vocabulary_size: of that asset, checked against blocks it embeds.
      created_at: ISO 8601, UTC.
    """

    step: int
    projection_size: int
    share_towers: bool
    features: Dict[str, Any]
    vocabulary_sha256: str
    vocabulary_size: int
    created_at: str = ""

    @classmethod
    def now(cls, **fields) -> "EmbedderExportInfo":
        return cls(created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(), **fields)

    def vocab_path(self, export_dir: str) -> str:
        return os.path.join(export_dir, "assets", self.features["vocab_file"])

    def write(self, export_dir: str) -> None:
        """Writes the record into `export_dir` (a staging directory: the last file written)."""
        write_json(os.path.join(export_dir, METADATA_PATH), {
            "format": EMBEDDER_FORMAT, "step": int(self.step), "created_at": self.created_at,
            "projection_size": int(self.projection_size), "share_towers": bool(self.share_towers),
            "features": dict(self.features),
            "vocabulary": {"sha256": self.vocabulary_sha256, "size": int(self.vocabulary_size)}})

    @classmethod
    def read(cls, export_dir: str) -> "EmbedderExportInfo":
        import tensorflow as tf  # tf.io.gfile: exports may be on gs://.

        path = os.path.join(export_dir, METADATA_PATH)
        if not tf.io.gfile.isdir(export_dir):
            raise EmbedderExportError(f"embedder export not found: {export_dir}")
        if not tf.io.gfile.exists(path):
            raise EmbedderExportError(f"{export_dir}: no {METADATA_PATH}; not an embedder export of realm_tf.export")
        try:
            with tf.io.gfile.GFile(path) as f:
                record = json.load(f)
        except json.JSONDecodeError as e:
            raise EmbedderExportError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(record, dict) or record.get("format") != EMBEDDER_FORMAT:
            found = record.get("format") if isinstance(record, dict) else record
            raise EmbedderExportError(f"{path}: format {found!r}, expected {EMBEDDER_FORMAT!r}")
        try:
            return cls(step=int(record["step"]), projection_size=int(record["projection_size"]),
                       share_towers=bool(record["share_towers"]), features=dict(record["features"]),
                       vocabulary_sha256=str(record["vocabulary"]["sha256"]),
                       vocabulary_size=int(record["vocabulary"]["size"]), created_at=str(record.get("created_at", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise EmbedderExportError(f"{path}: field {e} missing or malformed") from e


def is_complete_export(export_dir: str) -> bool:
    """Whether `export_dir` holds its record, which is written last."""
    return os.path.isfile(os.path.join(export_dir, METADATA_PATH))

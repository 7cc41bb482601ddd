"""The model dir: what `python -m realm_tf.train` writes, and where each piece lives.

    <model_dir>/
      checkpoints/ckpt-N.*        tf.train.Checkpoint(model=..., optimizer=...), the trainer's
      train/, eval/               TensorBoard summaries
      eval.json                   {"step": N, <metric>: value, ...} of the last evaluation
      embedder/<step>/            embedder exports (artifacts.embedder_export), the refresher's input
      embedder/TRAINING_DONE      written once training ends: no more exports will come
      config.yaml, open_qa.json   fine-tuning only: its config and `RunInfo`
      refresh.log                 pre-training's background refresher, when started with training

Only this module spells these names; everything else asks a `ModelDir`.
"""

import dataclasses
import os
import re
import shutil
from typing import Dict, List, Optional, Tuple

from realm_tf.artifacts.embedder_export import is_complete_export
from realm_tf.artifacts.staging import read_json, write_json
from realm_tf.errors import RealmError

CHECKPOINTS = "checkpoints"
EXPORTS = "embedder"
TRAINING_DONE = "TRAINING_DONE"
RUN_INFO = "open_qa.json"
CONFIG = "config.yaml"
EVAL_RESULTS = "eval.json"
REFRESH_LOG = "refresh.log"
_STEP_NAME = re.compile(r"[0-9]+")


class ModelDirError(RealmError, ValueError):
    """A model dir that lacks what it is used for (a checkpoint, its run info)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a fine-tuning run was trained with, so evaluation and export default to it.

    Attributes:
      config: absolute path of the run's saved config.yaml.
      blocks_dir: absolute path of the chunked corpus.
      index_version: absolute path of the fixed index version it read.
    """

    config: str
    blocks_dir: str
    index_version: str


@dataclasses.dataclass(frozen=True)
class ModelDir:
    """One training run's directory (`path`); see the module docstring for its layout."""

    path: str

    @property
    def checkpoints_dir(self) -> str:
        return os.path.join(self.path, CHECKPOINTS)

    def summaries_dir(self, name: str) -> str:
        """TensorBoard's directory for `name` ("train" or "eval")."""
        return os.path.join(self.path, name)

    def latest_checkpoint(self) -> Optional[str]:
        """The newest checkpoint prefix, None if there is none."""
        import tensorflow as tf

        return tf.train.latest_checkpoint(self.checkpoints_dir)

    def remove_unfinished_checkpoints(self) -> List[str]:
        """Removes the `<prefix>_temp` folders a checkpoint save killed midway leaves (TF
        writes a sharded save there, then renames it); returns their names. Only for the
        run's one trainer, before it saves: a live save's folder looks the same."""
        directory = self.checkpoints_dir
        names = sorted(n for n in os.listdir(directory) if n.endswith("_temp")) if os.path.isdir(directory) else []
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        return names

    def require_checkpoint(self, what: str = "a") -> str:
        """`latest_checkpoint()`, or a ModelDirError naming the directory (`what` describes it)."""
        path = self.latest_checkpoint()
        if path is None:
            raise ModelDirError(f"{self.path}: no {what} checkpoint under {CHECKPOINTS}/")
        return path

    # --- embedder exports --------------------------------------------------------------

    @property
    def exports_dir(self) -> str:
        return os.path.join(self.path, EXPORTS)

    def export_dir(self, step: int) -> str:
        """Where the embedder export of `step` goes."""
        return os.path.join(self.exports_dir, str(int(step)))

    def complete_exports(self) -> List[Tuple[int, str]]:
        """(step, path) of the complete embedder exports, by step ascending; exports still
        being staged (hidden `.staging-*` directories) are left out."""
        try:
            entries = os.listdir(self.exports_dir)
        except FileNotFoundError:
            return []
        return sorted((int(entry), os.path.join(self.exports_dir, entry)) for entry in entries
                      if _STEP_NAME.fullmatch(entry) and is_complete_export(os.path.join(self.exports_dir, entry)))

    def holds_export(self, export_dir: str) -> bool:
        """Whether `export_dir` is one of this run's embedder exports (not, say, the ICT
        warm start's, which the initial index was built from)."""
        return os.path.abspath(export_dir).startswith(os.path.abspath(self.exports_dir) + os.sep)

    @property
    def training_done_path(self) -> str:
        return os.path.join(self.exports_dir, TRAINING_DONE)

    def training_done(self) -> bool:
        return os.path.exists(self.training_done_path)

    def mark_training_done(self) -> None:
        """Tells the refresher that no more exports will come (written after the last one)."""
        os.makedirs(self.exports_dir, exist_ok=True)
        with open(self.training_done_path, "w", encoding="utf-8") as f:
            f.write("done\n")

    @property
    def refresh_log(self) -> str:
        return os.path.join(self.path, REFRESH_LOG)

    # --- fine-tuning's run info ----------------------------------------------------------

    @property
    def config_path(self) -> str:
        return os.path.join(self.path, CONFIG)

    @property
    def run_info_path(self) -> str:
        return os.path.join(self.path, RUN_INFO)

    def has_run_info(self) -> bool:
        return os.path.exists(self.run_info_path)

    def read_run_info(self) -> RunInfo:
        path = self.run_info_path
        record = read_json(path, ModelDirError, f"is {self.path!r} a --task=finetune model_dir?")
        fields = [f.name for f in dataclasses.fields(RunInfo)]
        missing = [name for name in fields if not isinstance(record.get(name) if isinstance(record, dict) else None, str)]
        if missing:
            raise ModelDirError(f"{path}: no string field {missing[0]!r}")
        return RunInfo(**{name: record[name] for name in fields})

    def write_run_info(self, info: RunInfo) -> None:
        os.makedirs(self.path, exist_ok=True)
        write_json(self.run_info_path, {k: os.path.abspath(v) for k, v in dataclasses.asdict(info).items()})

    # --- evaluation results --------------------------------------------------------------

    @property
    def eval_results_path(self) -> str:
        return os.path.join(self.path, EVAL_RESULTS)

    def write_eval_results(self, step: int, metrics: Dict) -> None:
        write_json(self.eval_results_path, {"step": int(step), **metrics})

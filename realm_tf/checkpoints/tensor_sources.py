"""Read-only access to the tensors of a checkpoint on disk, whatever wrote it.

A `TensorSource` lists names and shapes without loading anything and reads one tensor
at a time as a numpy array, so a 13M x 128 `block_emb` is read only when asked for.

  TfCheckpointSource     a TensorFlow checkpoint prefix (`*.index` + `*.data-*`): TF1
                         name-based ones (the REALM/ORQA releases, original BERT) and
                         TF2 object-based ones (Model Garden) alike.
  HuggingFaceSource      `model.safetensors` (also sharded, with its `.index.json`) or
                         `pytorch_model.bin` (needs torch) of a Hugging Face model directory.
"""

import json
import os
from typing import Dict, List, Tuple

import numpy as np

from realm_tf.errors import RealmError


class CheckpointError(RealmError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


class TensorSource:
    """Names, shapes and values of a checkpoint's tensors; `path` names it in messages.

    Subclasses fill `_shape_map` (name -> shape) when opened and implement `read`.
    """

    path: str
    _shape_map: Dict[str, Tuple[int, ...]]

    def names(self) -> List[str]:
        return sorted(self._shape_map)

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._shape_map[name]

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        return name in self._shape_map


class TfCheckpointSource(TensorSource):
    """A TensorFlow checkpoint, by its prefix (`.../model.ckpt-1000`, `.../variables/variables`)."""

    def __init__(self, prefix: str):
        import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
        import tensorflow as tf

        self.path = prefix
        try:
            self._reader = tf.train.load_checkpoint(prefix)
        except (tf.errors.OpError, ValueError) as error:
            raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint ({error})") from error
        self._shape_map = {name: tuple(shape) for name, shape in self._reader.get_variable_to_shape_map().items()}

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self._reader.get_tensor(name))

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a variable, read from the checkpoint without the rest of it
        (RestoreV2 with a slice: the release's block_emb is 6.8 GB)."""
        import tensorflow as tf

        shape = self._shape_map[name]
        spec = " ".join(str(d) for d in shape) + f" {start},{stop - start}" + ":-" * (len(shape) - 1)
        dtype = self._reader.get_variable_to_dtype_map()[name]
        return tf.raw_ops.RestoreV2(prefix=self.path, tensor_names=[name], shape_and_slices=[spec],
                                    dtypes=[dtype])[0].numpy()


class HuggingFaceSource(TensorSource):
    """The weights file(s) of a Hugging Face model directory.

    Prefers safetensors (read lazily, no torch needed); falls back to `pytorch_model.bin`,
    which needs torch (`pip install torch==2.13.0`, the CPU build) and is loaded whole.
    """

    SAFETENSORS = "model.safetensors"
    SAFETENSORS_INDEX = "model.safetensors.index.json"
    PYTORCH = "pytorch_model.bin"

    def __init__(self, directory: str):
        self.directory = directory
        self._tensors = None
        self._files: Dict[str, str] = {}  # tensor name -> safetensors file
        self._open_files: Dict[str, object] = {}  # file -> its safe_open handle, kept for reads
        single = os.path.join(directory, self.SAFETENSORS)
        index = os.path.join(directory, self.SAFETENSORS_INDEX)
        if os.path.exists(single):
            self.path = single
            self._index_safetensors([single])
        elif os.path.exists(index):
            self.path = index
            with open(index, encoding="utf-8") as f:
                try:
                    weight_map = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError) as error:
                    raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({error})") from error
            self._index_safetensors(sorted({os.path.join(directory, f) for f in weight_map.values()}))
        elif os.path.exists(os.path.join(directory, self.PYTORCH)):
            self.path = os.path.join(directory, self.PYTORCH)
            self._tensors = self._load_pytorch(self.path)
            self._shape_map = {name: tuple(value.shape) for name, value in self._tensors.items()}
        else:
            raise CheckpointError(
                f"{directory}: no {self.SAFETENSORS}, {self.SAFETENSORS_INDEX} or {self.PYTORCH} found")

    def _index_safetensors(self, files: List[str]) -> None:
        from safetensors import safe_open

        self._shape_map = {}
        for file in files:
            try:
                with safe_open(file, framework="numpy") as f:
                    for name in f.keys():
                        self._files[name] = file
                        self._shape_map[name] = tuple(f.get_slice(name).get_shape())
            except (OSError, Exception) as error:  # safetensors raises its own SafetensorError.
                raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from error

    @staticmethod
    def _load_pytorch(path: str) -> Dict[str, np.ndarray]:
        try:
            import torch
        except ImportError as error:
            raise CheckpointError(
                f"{path}: reading pytorch_model.bin needs torch (pip install torch==2.13.0), "
                "or save the model as safetensors") from error
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds for a bad file.
            raise CheckpointError(f"{path}: not a readable PyTorch state dict ({error})") from error
        return {name: value.float().numpy() if value.is_floating_point() else value.numpy()
                for name, value in state.items()}

    def read(self, name: str) -> np.ndarray:
        if self._tensors is not None:
            return self._tensors[name]
        from safetensors import safe_open

        file = self._files[name]
        if file not in self._open_files:  # Opening maps the file; once per file, not per tensor.
            self._open_files[file] = safe_open(file, framework="numpy")
        return np.asarray(self._open_files[file].get_tensor(name))

"""`RaggedRows`: rows of unequal length as two numpy arrays, for batching on the host.

Host-side batching gathers a few hundred rows (token ids of queries or blocks) out of
many. As flat values and row splits, a gather is three numpy calls, where lists of
Python ints cost a call per row and `tf.ragged.constant` a conversion per element.
"""

import dataclasses
from typing import Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class RaggedRows:
    """Attributes:
      values: [total] the rows' elements, end to end (any dtype).
      splits: int64 [rows + 1], row r is values[splits[r]:splits[r + 1]].
    """

    values: np.ndarray
    splits: np.ndarray

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], dtype=np.int64) -> "RaggedRows":
        lengths = np.fromiter((len(row) for row in rows), np.int64, count=len(rows))
        values = np.fromiter((v for row in rows for v in row), dtype, count=int(lengths.sum()))
        return cls(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    @classmethod
    def concat(cls, parts: Sequence["RaggedRows"]) -> "RaggedRows":
        """The rows of `parts`, one after the other."""
        starts = np.cumsum([0] + [len(p.values) for p in parts[:-1]])
        splits = [parts[0].splits[:1]] + [p.splits[1:] + s for p, s in zip(parts, starts)]
        return cls(np.concatenate([p.values for p in parts]), np.concatenate(splits))

    def __len__(self) -> int:
        return len(self.splits) - 1

    def lengths(self) -> np.ndarray:
        """int64 [rows]."""
        return np.diff(self.splits)

    def take(self, rows: np.ndarray) -> "RaggedRows":
        """The rows at `rows` (int [n], repeats allowed), in that order; a row of -1 is empty."""
        rows = np.asarray(rows, np.int64)
        empty = rows < 0
        begins = self.splits[np.where(empty, 0, rows)]
        lengths = np.where(empty, 0, self.splits[rows + 1] - begins)
        splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Each output element's source: its row's begin plus its place in the row.
        source = np.repeat(begins - splits[:-1], lengths) + np.arange(splits[-1], dtype=np.int64)
        return RaggedRows(self.values[source], splits)

    def to_dense(self, width: int, offset: int = 0, dtype=None) -> np.ndarray:
        """[rows, width], each row's elements (plus `offset`) from column 0 on, zeros after;
        rows longer than `width` are cut."""
        lengths = np.minimum(self.lengths(), width)
        rows = np.repeat(np.arange(len(self)), lengths)
        columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        dense = np.zeros((len(self), width), dtype or self.values.dtype)
        dense[rows, columns] = self.values[np.repeat(self.splits[:-1], lengths) + columns] + offset
        return dense

    def to_tensor(self, dtype=tf.int64) -> tf.RaggedTensor:
        """A [rows, (elements)] `tf.RaggedTensor`."""
        return tf.RaggedTensor.from_row_splits(tf.constant(self.values.astype(dtype.as_numpy_dtype)),
                                               tf.constant(self.splits), validate=False)

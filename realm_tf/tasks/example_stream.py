"""`ShardedExampleStream`: a task's examples streamed from TFRecord shards, one window in memory.

The order, fixed by a seed: in epoch e, the shards in an order drawn from [seed, e],
read `cycle` at a time in round robin (so a window mixes shards), and cut into
consecutive windows of `window` examples; window w is parsed into columns and read in a
permutation drawn from [seed, e, w]. Batches are consecutive runs of that stream; one may
span two windows, or two epochs. Every example comes once per epoch.

Resuming costs one window, not the run so far: the example at position
p = start_step * batch_size sits in epoch p // N, window (p % N) // window. A resumed
stream skips the records before that window (read, never parsed), draws the same
permutations and so yields, batch for batch, what an uninterrupted stream would have.

Memory is one window of parsed columns (two while a batch spans windows), whatever N.
"""

from typing import Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import ManifestError
from realm_tf.features.ragged_rows import RaggedRows

# Example fields by name: per-example arrays [n, ...] or ragged rows [n, (elements)].
Columns = Dict[str, Union[np.ndarray, RaggedRows]]


def take_columns(columns: Columns, rows: np.ndarray) -> Columns:
    return {name: column.take(rows) if isinstance(column, RaggedRows) else column[rows]
            for name, column in columns.items()}


def concat_columns(parts: Sequence[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    return {name: RaggedRows.concat([p[name] for p in parts]) if isinstance(column, RaggedRows)
            else np.concatenate([p[name] for p in parts]) for name, column in parts[0].items()}


class ShardedExampleStream:
    """The examples of `paths` in the seeded order of the module docstring.

    Args:
      paths: the TFRecord shards, in the manifest's order.
      num_examples: how many records they hold (the manifest's count; checked every epoch).
      parse: object [n] serialized records -> their `Columns`.
      window: examples per window: the shuffle's reach, and what is held in memory.
      source: the directory, for errors.
      cycle: shards read at once, in round robin.
    """

    def __init__(self, paths: Sequence[str], num_examples: int, parse: Callable[[np.ndarray], Columns],
                 window: int, source: str, cycle: int = 16):
        if num_examples <= 0 or not paths:
            raise ManifestError(f"{source}: no examples")
        if window <= 0:
            raise ValueError(f"the shuffle window must be positive, got {window}")
        self.paths, self.num_examples, self.parse = list(paths), num_examples, parse
        self.window, self.source, self.cycle = min(window, num_examples), source, cycle

    def head(self, n: int) -> Columns:
        """The first `n` examples in the manifest's shard order, unshuffled (to build a model, or look)."""
        return self.parse(next(tf.data.TFRecordDataset(self.paths).take(n).batch(n).as_numpy_iterator()))

    def batches(self, batch_size: int, seed: int, start_step: int = 0) -> Iterator[Columns]:
        """Endless `Columns` of `batch_size` examples, from the one at `start_step * batch_size` on."""
        pending: List[Columns] = []
        needed = batch_size
        for columns, order in self._windows(seed, start_step * batch_size):
            at = 0
            while at < len(order):
                take = min(needed, len(order) - at)
                pending.append(take_columns(columns, order[at:at + take]))
                at, needed = at + take, needed - take
                if needed == 0:
                    yield concat_columns(pending)
                    pending, needed = [], batch_size

    def _windows(self, seed: int, position: int) -> Iterator[Tuple[Columns, np.ndarray]]:
        """(a window's columns, the rows to read in order) from stream position `position` on."""
        epoch, offset = divmod(position, self.num_examples)
        first_window, skip_in_window = divmod(offset, self.window)
        while True:
            seen = first_window * self.window
            for window, records in enumerate(self._records(seed, epoch, seen), start=first_window):
                order = np.random.default_rng([seed, epoch, window]).permutation(len(records))
                seen += len(records)
                yield self.parse(records), order[skip_in_window:]
                skip_in_window = 0
            if seen != self.num_examples:
                raise ManifestError(f"{self.source}: the manifest counts {self.num_examples} examples, its shards "
                                    f"hold {seen}; were the shards changed after it was written?")
            epoch, first_window = epoch + 1, 0

    def _records(self, seed: int, epoch: int, skip: int) -> Iterator[np.ndarray]:
        order = np.random.default_rng([seed, epoch]).permutation(len(self.paths))
        shards = tf.data.Dataset.from_tensor_slices([self.paths[i] for i in order])
        records = shards.interleave(tf.data.TFRecordDataset, cycle_length=min(self.cycle, len(self.paths)),
                                    block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return records.skip(skip).batch(self.window).as_numpy_iterator()

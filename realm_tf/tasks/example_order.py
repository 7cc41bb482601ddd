"""The order in which a task's in-memory examples are batched: a fresh permutation per epoch.

Resumable: the batches from step `start_step` on are those a run from step 0 would
have drawn there, since each epoch's order depends only on the seed and the epoch.
"""

from typing import Iterator

import numpy as np


def epoch_batches(num_examples: int, batch_size: int, seed: int, start_step: int = 0) -> Iterator[np.ndarray]:
    """Endless int64 [batch_size] arrays of example indices; a batch may span two epochs."""

    def epoch_order(epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(num_examples)

    position = start_step * batch_size
    epoch = position // num_examples
    order, following = epoch_order(epoch), epoch_order(epoch + 1)
    while True:
        while position // num_examples > epoch:  # Orders are drawn once per epoch, not per batch.
            epoch += 1
            order, following = following, epoch_order(epoch + 1)
        offset = position - epoch * num_examples
        take = order[offset:offset + batch_size]
        while len(take) < batch_size:  # The batch runs into the next epoch (or more, for tiny sets).
            take = np.concatenate([take, following[:batch_size - len(take)]])
        position += batch_size
        yield take

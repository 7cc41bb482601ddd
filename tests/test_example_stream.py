"""Streamed training examples: each once an epoch, resumable batch for batch, one window in memory."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.artifacts.manifests import ManifestError
from realm_tf.features.ragged_rows import RaggedRows
from realm_tf.tasks.example_stream import ShardedExampleStream

SHARD_SIZES = (37, 5, 0, 61, 20)  # Unequal, and one empty: Beam writes shards like that.
N = sum(SHARD_SIZES)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    paths, example_id = [], 0
    for shard, size in enumerate(SHARD_SIZES):
        path = str(root / f"examples-{shard:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(size):
                ids = tf.train.Feature(int64_list=tf.train.Int64List(value=[example_id] * (example_id % 4)))
                key = tf.train.Feature(int64_list=tf.train.Int64List(value=[example_id]))
                writer.write(tf.train.Example(features=tf.train.Features(
                    feature={"id": key, "ids": ids})).SerializeToString())
                example_id += 1
        paths.append(path)
    return paths


def _parse(serialized, calls=None):
    if calls is not None:
        calls.append(len(serialized))
    parsed = tf.io.parse_example(serialized, {"id": tf.io.FixedLenFeature([], tf.int64),
                                              "ids": tf.io.RaggedFeature(tf.int64)})
    return {"id": parsed["id"].numpy(),
            "ids": RaggedRows(parsed["ids"].values.numpy(), parsed["ids"].row_splits.numpy().astype(np.int64))}


def _ids(stream, batch_size, seed, start_step, num_batches):
    batches = stream.batches(batch_size, seed, start_step)
    return [next(batches)["id"] for _ in range(num_batches)]


def test_every_example_comes_once_an_epoch_in_a_shuffled_order(shards):
    calls = []
    stream = ShardedExampleStream(shards, N, lambda s: _parse(s, calls), window=32, source="dir")
    batch_size = 7  # Does not divide N: batches span windows and epochs.
    stream_ids = np.concatenate(_ids(stream, batch_size, seed=3, start_step=0, num_batches=2 * N // batch_size + 1))
    first, second = stream_ids[:N], stream_ids[N:2 * N]
    assert sorted(first) == list(range(N)) and sorted(second) == list(range(N))
    assert not np.array_equal(first, np.arange(N))  # Shuffled,
    assert not np.array_equal(first, second)  # and afresh each epoch.
    # Round robin over the shards: the first window already mixes examples of several of them.
    shard_of = np.searchsorted(np.cumsum(SHARD_SIZES), first[:32], side="right")
    assert len(set(shard_of.tolist())) >= 3
    assert max(calls) <= 32  # Never more than a window parsed at once.
    other_seed = np.concatenate(_ids(stream, batch_size, seed=4, start_step=0, num_batches=N // batch_size))
    assert not np.array_equal(other_seed, first[:len(other_seed)])


@pytest.mark.parametrize("start_step", [1, 4, 5, 17, 40])  # In the first window, across one, into epoch 2 and 3.
def test_a_resumed_stream_yields_what_an_uninterrupted_one_would_have(shards, start_step):
    stream = ShardedExampleStream(shards, N, _parse, window=32, source="dir")
    uninterrupted = _ids(stream, 7, seed=0, start_step=0, num_batches=start_step + 3)[start_step:]
    resumed = _ids(stream, 7, seed=0, start_step=start_step, num_batches=3)
    for expected, got in zip(uninterrupted, resumed):
        np.testing.assert_array_equal(got, expected)


def test_ragged_columns_stay_with_their_examples(shards):
    stream = ShardedExampleStream(shards, N, _parse, window=16, source="dir")
    batch = next(stream.batches(50, seed=1))  # Spans four windows.
    for row, example_id in enumerate(batch["id"].tolist()):
        ids = batch["ids"]
        assert ids.values[ids.splits[row]:ids.splits[row + 1]].tolist() == [example_id] * (example_id % 4)


def test_shards_that_disagree_with_the_manifest_are_refused(shards):
    stream = ShardedExampleStream(shards, N + 1, _parse, window=32, source="/data/examples")
    with pytest.raises(ManifestError, match=r"/data/examples: the manifest counts 124 examples, its shards hold 123"):
        _ids(stream, 7, seed=0, start_step=0, num_batches=N // 7 + 1)


def test_head_reads_the_first_examples_unshuffled(shards):
    assert ShardedExampleStream(shards, N, _parse, 32, "dir").head(3)["id"].tolist() == [0, 1, 2]


def test_ragged_rows_take_concat_and_dense_agree_with_lists():
    rows = [[1, 2, 3], [], [4], [5, 6]]
    ragged = RaggedRows.from_lists(rows)
    taken = ragged.take(np.array([3, -1, 0, 0, 2]))  # -1: an empty row (the null document).
    assert taken.to_tensor().to_list() == [[5, 6], [], [1, 2, 3], [1, 2, 3], [4]]
    assert RaggedRows.concat([ragged, taken]).to_tensor().to_list() == rows + taken.to_tensor().to_list()
    np.testing.assert_array_equal(taken.to_dense(2, offset=1), [[6, 7], [0, 0], [2, 3], [2, 3], [5, 0]])

"""Pre-training inputs, streamed and gathered against held in lists: `python -m benchmarks.pretraining_inputs`.

    python -m benchmarks.pretraining_inputs [--num_blocks 20000] [--num_examples 200000]
        [--batch_size 32] [--batches 40] [--window 100000] [--workdir runs/bench/pretraining_inputs]

Writes N synthetic blocks (as benchmarks.block_store does) and E synthetic pre-training
examples of the real shapes (a 30-wordpiece query with one to three masked tokens, the
source block drawn at random) in 8 TFRecord shards, then measures, in one run:

  examples   reading them for training.
             baseline: every example parsed into a Python object held in a list (what
             PretrainTask did before: `_read_examples`);
             stream: one epoch of realm_tf.tasks.example_stream.ShardedExampleStream
             (`--window` examples held and shuffled at a time).
             Wall time untraced, then the Python and numpy heap it held at its peak, by
             tracemalloc over a second pass (TensorFlow's own buffers are not counted; both
             sides pass records through the same tf.data reader).
  batches    assembling B examples and their K = 8 candidates (the null document and 7
             block ids drawn at random: retrieval is left out, as it is the same for both)
             into the model's inputs, with the base config's lengths.
             baseline: the per-example and per-block code of before (Python lists and
             `tf.ragged.constant`, re-implemented here as it was);
             gathered: realm_tf.tasks.pretrain.pack_pretraining_batch (numpy gathers
             from the compact block store).
             Both on the same batches, in turns; every output of the two is checked equal.
"""

import argparse
import gc
import pathlib
import shutil
import sys
import time
import tracemalloc
from typing import Callable, Dict, Optional, Sequence

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from benchmarks import common
from benchmarks.block_store import write_synthetic_blocks

RESULTS = common.RESULTS_DIR / "pretraining_inputs.json"
QUERY_TOKENS, NUM_CANDIDATES, SHARDS = 30, 8, 8
MASK_TOKEN_ID = 103


def write_synthetic_examples(directory: pathlib.Path, num_examples: int, block_ids: np.ndarray, max_masks: int,
                             seed: int = 0):
    """E synthetic pre-training examples in SHARDS TFRecord shards; returns their paths."""
    import tensorflow as tf

    from realm_tf.corpus.pretraining_examples import PretrainingExample

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    paths = [str(directory / f"examples-{s:05d}-of-{SHARDS:05d}.tfrecord") for s in range(SHARDS)]
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    for n in range(num_examples):
        tokens = rng.integers(1000, 30000, QUERY_TOKENS)
        width = int(rng.integers(1, min(3, max_masks) + 1))
        start = int(rng.integers(0, QUERY_TOKENS - width))
        targets = tokens[start:start + width].tolist()
        tokens[start:start + width] = MASK_TOKEN_ID
        writers[n % SHARDS].write(PretrainingExample(
            tokens.tolist(), list(range(start, start + width)), targets, int(rng.choice(block_ids)), "salient",
            "synthetic").serialize())
    for writer in writers:
        writer.close()
    return paths


def random_candidates(rng: np.random.Generator, block_ids: np.ndarray, batch_size: int) -> np.ndarray:
    """int64 [batch_size, NUM_CANDIDATES]: the null document (-1), then NUM_CANDIDATES - 1
    of `block_ids` drawn at random for each example (retrieval left out)."""
    drawn = rng.choice(block_ids, (batch_size, NUM_CANDIDATES - 1))
    return np.concatenate([np.full((batch_size, 1), -1), drawn], axis=1)


def baseline_examples(paths):
    """All examples as Python objects in a list: PretrainTask before the stream."""
    import tensorflow as tf

    from realm_tf.corpus.pretraining_examples import PretrainingExample

    return [PretrainingExample.from_bytes(raw) for raw in tf.data.TFRecordDataset(paths).as_numpy_iterator()]


def baseline_pack(featurizer, blocks, examples, candidate_ids: np.ndarray, max_masks: int) -> Dict:
    """The batch assembly of before, one example and one block at a time."""
    import tensorflow as tf

    from realm_tf.features import FEATURE_KEYS

    (b, k), config = candidate_ids.shape, featurizer.config
    query_tokens = tf.ragged.constant([e.query_token_ids for e in examples], dtype=tf.int64, ragged_rank=1)
    query = featurizer.pack_query(query_tokens)
    flat_ids = candidate_ids.reshape(-1).tolist()
    bodies = [blocks.bodies[i] for i in flat_ids]
    candidates = featurizer.pack_block(
        tf.ragged.constant([blocks.titles[i] for i in flat_ids], dtype=tf.int64, ragged_rank=1),
        tf.ragged.constant(bodies, dtype=tf.int64, ragged_rank=1))
    reader = featurizer.pack_reader(tf.gather(query_tokens, np.repeat(np.arange(b), k)),
                                    tf.ragged.constant(bodies, dtype=tf.int64, ragged_rank=1))
    positions, targets = np.zeros((b, max_masks), np.int32), np.zeros((b, max_masks), np.int32)
    weights = np.zeros((b, max_masks), np.float32)
    for row, example in enumerate(examples):
        n = len(example.masked_positions)
        positions[row, :n] = np.asarray(example.masked_positions) + 1
        targets[row, :n] = example.masked_token_ids
        weights[row, :n] = 1.0
    return {
        "query": {key: query[key].numpy() for key in FEATURE_KEYS},
        "candidates": {key: candidates[key].numpy().reshape(b, k, config.block_length) for key in FEATURE_KEYS},
        "reader": {key: reader[key].numpy().reshape(b, k, config.reader_length) for key in FEATURE_KEYS},
        "masked_positions": positions, "masked_ids": targets, "masked_weights": weights,
    }


def _assert_same(expected, got, path="batch"):
    if isinstance(expected, dict):
        for key in expected:
            _assert_same(expected[key], got[key], f"{path}.{key}")
    elif not np.array_equal(expected, got):
        raise RuntimeError(f"{path}: the gathered batch differs from the baseline's")


def _timed_and_traced(read: Callable[[], int]):
    """(seconds, examples) of an untraced call, then the peak traced heap of a second one."""
    gc.collect()
    started = time.perf_counter()
    count = read()
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    read()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, count, peak


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pretraining_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_blocks", type=int, default=20_000, help="synthetic blocks (default: %(default)s)")
    parser.add_argument("--num_examples", type=int, default=200_000,
                        help="synthetic pre-training examples (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=32, help="examples a batch (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=40, help="batches assembled by each side (default: %(default)s)")
    parser.add_argument("--window", type=int, default=100_000,
                        help="the stream's shuffle window, pretrain.shuffle_window (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/pretraining_inputs"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"num_blocks": NUM_CANDIDATES, "num_examples": 1, "batch_size": 1,
                                         "batches": 2, "window": 1})

    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.corpus.pretraining_examples import parse_pretraining_columns
    from realm_tf.features import Featurizer
    from realm_tf.tasks.example_stream import ShardedExampleStream, take_columns
    from realm_tf.tasks.pretrain import pack_pretraining_batch

    machine = common.machine_info()
    config = load_config("base")
    max_masks = config.pretrain.max_masked_tokens
    shutil.rmtree(args.workdir, ignore_errors=True)
    started = time.perf_counter()
    write_synthetic_blocks(args.workdir / "blocks", args.num_blocks)
    blocks = BlockStore(str(args.workdir / "blocks"))
    paths = write_synthetic_examples(args.workdir / "examples", args.num_examples, blocks.arrays.block_ids, max_masks)
    print(f"{args.num_blocks} blocks and {args.num_examples} examples written in "
          f"{time.perf_counter() - started:.0f}s", flush=True)

    stream = ShardedExampleStream(paths, args.num_examples, parse_pretraining_columns, args.window, "synthetic")
    epoch_batches = -(-args.num_examples // args.batch_size)

    def read_stream() -> int:
        batches = stream.batches(args.batch_size, seed=0)
        return sum(len(next(batches)["block_id"]) for _ in range(epoch_batches))

    list_seconds, list_count, list_peak = _timed_and_traced(lambda: len(baseline_examples(paths)))
    stream_seconds, stream_count, stream_peak = _timed_and_traced(read_stream)
    print(f"examples: a list in {list_seconds:.1f}s holding {list_peak / 2**20:.0f} MiB; streamed in "
          f"{stream_seconds:.1f}s holding {stream_peak / 2**20:.0f} MiB at its peak", flush=True)

    featurizer = Featurizer(config.features)
    examples = baseline_examples(paths[:1])  # Objects for the baseline, columns for the gather: the same examples.
    columns = stream.parse(np.array([e.serialize() for e in examples[:args.batch_size * args.batches]], object))
    rng = np.random.default_rng(1)
    inputs = [(np.arange(i * args.batch_size, (i + 1) * args.batch_size) % len(examples),
               random_candidates(rng, blocks.arrays.block_ids, args.batch_size)) for i in range(args.batches)]
    seconds, outputs = common.timed_in_turns({
        "baseline": lambda x: baseline_pack(featurizer, blocks, [examples[r] for r in x[0]], x[1], max_masks),
        "gathered": lambda x: pack_pretraining_batch(featurizer, blocks, take_columns(columns, x[0]),
                                                     lambda query, sources: x[1], max_masks),
    }, inputs, warmup=2)
    for expected, got in zip(outputs["baseline"], outputs["gathered"]):
        _assert_same(expected, got)
    rate = {name: len(times) / sum(times) for name, times in seconds.items()}
    f = config.features
    results = {
        "benchmark": "pretraining_inputs",
        "command": common.command_line("benchmarks.pretraining_inputs", argv),
        "num_blocks": args.num_blocks, "num_examples": args.num_examples, "window": args.window,
        "batch_size": args.batch_size, "num_candidates": NUM_CANDIDATES,
        "lengths": {"query": f.query_length, "block": f.block_length, "reader": f.reader_length},
        "synthetic": f"blocks as benchmarks.block_store writes them; examples of {QUERY_TOKENS} random wordpieces "
                     "with 1-3 masked, from a random block; candidate ids drawn at random",
        "examples": {
            "baseline": {"seconds": round(list_seconds, 2), "examples": list_count,
                         "examples_per_second": round(list_count / list_seconds), "peak_heap_bytes": list_peak},
            "stream": {"seconds": round(stream_seconds, 2), "examples": stream_count,
                       "examples_per_second": round(stream_count / stream_seconds), "peak_heap_bytes": stream_peak},
        },
        "batches": {name: {"batches_per_second": round(r, 2), **common.latency_ms(seconds[name])}
                    for name, r in rate.items()},
        "ratios": {"stream_heap_vs_list": common.ratio(stream_peak, list_peak),
                   "stream_speed_vs_list": common.ratio(list_seconds, stream_seconds, 2),
                   "gathered_batches_vs_baseline": common.ratio(rate["gathered"], rate["baseline"], 2)},
        "machine": machine,
    }
    print(f"batches: {rate['baseline']:.1f}/s per example and block, {rate['gathered']:.1f}/s gathered "
          f"({results['ratios']['gathered_batches_vs_baseline']}x)", flush=True)
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
    sys.exit(0)

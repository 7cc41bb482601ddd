"""The compact block store against the in-memory one it replaced: `python -m benchmarks.block_store`.

    python -m benchmarks.block_store [--num_blocks 100000] [--workdir runs/bench/block_store]

Writes N synthetic blocks of the real shapes (a 10-wordpiece title and a 270-wordpiece
body, 288 with [CLS] and two [SEP]: whole words drawn at random from the bundled BERT
vocabulary, so every text re-tokenizes to its ids) as a block directory (TFRecord shards
and a manifest, as beam_pipelines.chunk_corpus writes them), then measures, in one run:

  baseline  the BlockStore before the compact store: every block's title and body ids as
            Python lists in dicts, its strings in dicts, and its body tokens' character
            offsets as int64 arrays, read from the shards and re-tokenized on every open
            (re-implemented here, as it was, for the comparison)
  compact   realm_tf.corpus.block_store.BlockStore: built once from the shards
            (artifacts.block_arrays), then memory-mapped on every open

For each: the seconds to open the directory (the compact store's first open builds it;
later opens map it), and the bytes it holds per token once every block's tokens have been
read: for the baseline, its Python heap per token by tracemalloc over a second, traced
pass on the first --traced_blocks blocks (tracing slows allocation, so the timed pass is
not traced; the cost per token does not depend on N); for the compact store, the resident
pages of its maps (/proc/self/smaps). What is synthetic: the text (random words),
not its shapes or the code paths.
"""

import argparse
import functools
import os
import pathlib
import shutil
import sys
import time
import tracemalloc
from typing import Dict, List, Optional, Sequence

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "block_store.json"
TITLE_TOKENS, BODY_TOKENS = 10, 270


def write_synthetic_blocks(blocks_dir: pathlib.Path, num_blocks: int, seed: int = 0, shards: int = 4,
                           body_tokens: int = BODY_TOKENS) -> int:
    """N synthetic blocks as a block directory; returns the number of body tokens."""
    names = write_synthetic_manifest(blocks_dir, num_blocks, shards, body_tokens)
    for shard, name in enumerate(names):
        write_synthetic_shard(blocks_dir / name, shard, shards, num_blocks, seed, body_tokens)
    return num_blocks * body_tokens


def synthetic_body_tokens(blocks_dir: str) -> int:
    """The body wordpieces of each block of a synthetic block directory, as its manifest says."""
    from realm_tf.artifacts.manifests import BlocksManifest

    return int(BlocksManifest.read(blocks_dir).stats["synthetic_body_tokens"])


def write_synthetic_manifest(blocks_dir: pathlib.Path, num_blocks: int, shards: int,
                             body_tokens: int = BODY_TOKENS) -> List[str]:
    """The manifest of a directory of `num_blocks` synthetic blocks of `body_tokens` body
    wordpieces in `shards` shards (which `write_synthetic_shard` writes, in any order; the
    manifest's stats say how long the bodies are); returns the shards' file names."""
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.features import BUNDLED_VOCAB_PATH, Vocabulary

    vocabulary = Vocabulary.from_file(BUNDLED_VOCAB_PATH)
    blocks_dir.mkdir(parents=True)
    names = [f"blocks-{s:05d}-of-{shards:05d}.tfrecord" for s in range(shards)]
    BlocksManifest(inputs=["synthetic"], num_documents=num_blocks, num_blocks=num_blocks, num_dead_letters=0,
                   dead_letters_by_kind={}, on_bad_record="fail", block_length=288, max_title_tokens=TITLE_TOKENS,
                   sentence_splitter="none", vocabulary=dict(path=str(vocabulary.path), size=vocabulary.size,
                                                             sha256=vocabulary.sha256, lower_case=True),
                   stats={"synthetic_body_tokens": body_tokens}, block_shards=names, dead_letter_shards=[], created_by="benchmarks.block_store"
                   ).write(str(blocks_dir))
    return names


@functools.lru_cache(maxsize=1)
def _words():
    """(ids, texts): the bundled vocabulary's whole lower-case ASCII words, so that any text
    of them re-tokenizes to its ids."""
    from realm_tf.features import BUNDLED_VOCAB_PATH

    words = [(i, w) for i, w in enumerate(pathlib.Path(BUNDLED_VOCAB_PATH).read_text(encoding="utf-8").splitlines())
             if w.isalpha() and w.isascii() and w.islower() and len(w) > 1]
    return np.array([i for i, _ in words]), np.array([w for _, w in words], object)


def write_synthetic_shard(path: pathlib.Path, shard: int, shards: int, num_blocks: int, seed: int = 0,
                          body_tokens: int = BODY_TOKENS) -> None:
    """Shard `shard` of `shards` of N synthetic blocks: blocks shard, shard + shards, ...,
    drawn from a generator of (seed, shard), so a shard written again is the same."""
    import tensorflow as tf

    from realm_tf.corpus.block_records import BlockRecord, block_id_for

    ids, texts = _words()
    rng = np.random.default_rng([seed, shard])
    with tf.io.TFRecordWriter(str(path)) as writer:
        for n in range(shard, num_blocks, shards):
            title, body = rng.integers(0, len(ids), TITLE_TOKENS), rng.integers(0, len(ids), body_tokens)
            doc_id = f"synthetic_{n}"
            writer.write(BlockRecord(block_id_for(doc_id, 0), doc_id, 0, " ".join(texts[title]),
                                     " ".join(texts[body]), ids[title].tolist(), ids[body].tolist(),
                                     [0]).serialize())


def baseline_store(blocks_dir: str, featurizer, limit: int = -1) -> Dict[str, dict]:
    """The in-memory BlockStore this project had before the compact one: dicts by block id
    (of the first `limit` records; -1: all)."""
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.corpus.block_records import read_block_dataset

    manifest = BlocksManifest.read(blocks_dir)
    store = {name: {} for name in ("titles", "bodies", "doc_ids", "title_texts", "texts", "begins", "ends")}
    for record in read_block_dataset(manifest.block_paths(blocks_dir)).take(limit).as_numpy_iterator():
        block_id = int(record["block_id"])
        store["titles"][block_id] = record["title_token_ids"].tolist()
        store["bodies"][block_id] = record["body_token_ids"].tolist()
        store["doc_ids"][block_id] = record["doc_id"].decode("utf-8")
        store["title_texts"][block_id] = record["title"].decode("utf-8")
        store["texts"][block_id] = record["text"].decode("utf-8")
    ids = list(store["texts"])
    for start in range(0, len(ids), 512):
        batch = ids[start:start + 512]
        for block_id, (_, begins, ends) in zip(batch, featurizer.tokenize_with_char_offsets(
                [store["texts"][i] for i in batch])):
            store["begins"][block_id], store["ends"][block_id] = begins, ends
    return store


def mapped_resident_bytes(directory: str) -> int:
    """Resident bytes of this process's mappings of files under `directory` (/proc/self/smaps)."""
    total, inside = 0, False
    prefix = os.path.realpath(directory) + os.sep
    with open("/proc/self/smaps", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # A mapping's header line.
                inside = len(fields) >= 6 and fields[-1].startswith(prefix)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.block_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_blocks", type=int, default=100_000, help="synthetic blocks (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=4,
                        help="block shards, so pieces of the compact store (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/block_store"))
    parser.add_argument("--traced_blocks", type=int, default=5000,
                        help="blocks of the baseline's traced pass, for its bytes a token (default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"num_blocks": 1, "shards": 1, "traced_blocks": 1})

    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.features import Featurizer

    machine = common.machine_info()
    shutil.rmtree(args.workdir, ignore_errors=True)
    blocks_dir = args.workdir / "blocks"
    started = time.perf_counter()
    tokens = write_synthetic_blocks(blocks_dir, args.num_blocks, shards=args.shards)
    print(f"{args.num_blocks} synthetic blocks written in {time.perf_counter() - started:.0f}s", flush=True)
    featurizer = Featurizer(load_config("base").features)
    # Both sides re-tokenize with it: its first calls (graph set-up, the per-character
    # views it caches) are paid here, not by whichever side goes first.
    featurizer.tokenize_with_char_offsets(["warm up the tokenizer"] * 8)

    started = time.perf_counter()
    old = baseline_store(str(blocks_dir), featurizer)
    baseline_open = time.perf_counter() - started
    checksum = sum(sum(old[part][i]) for part in ("titles", "bodies") for i in old[part])
    del old
    traced = min(args.traced_blocks, args.num_blocks)
    tracemalloc.start()
    old = baseline_store(str(blocks_dir), featurizer, limit=traced)
    baseline_per_token = tracemalloc.get_traced_memory()[0] / (traced * BODY_TOKENS)
    tracemalloc.stop()
    del old
    baseline_bytes = baseline_per_token * tokens
    print(f"baseline: opened in {baseline_open:.1f}s, {baseline_per_token:.1f} bytes a token", flush=True)

    started = time.perf_counter()
    BlockStore(str(blocks_dir), featurizer)
    build = time.perf_counter() - started
    started = time.perf_counter()
    store = BlockStore(str(blocks_dir), featurizer)
    reopen = time.perf_counter() - started
    compact = str(blocks_dir / "compact")
    # Every block's tokens read, as a trainer reading all of them would; the offsets are read
    # only for the blocks answered from, so they are measured apart.
    token_sum = sum(int(store.arrays.tokens(part, row).sum()) for part in ("title", "body")
                    for row in range(args.num_blocks))
    tokens_resident = mapped_resident_bytes(compact)
    for row in range(args.num_blocks):
        store.arrays.char_offsets("begins", row).sum()
        store.arrays.char_offsets("ends", row).sum()
    offsets_resident = mapped_resident_bytes(compact) - tokens_resident
    if token_sum != checksum:
        raise RuntimeError("the compact store's token ids differ from the baseline's")
    sizes = store.arrays.file_bytes()
    results = {
        "benchmark": "block_store",
        "command": common.command_line("benchmarks.block_store", argv),
        "num_blocks": args.num_blocks,
        "shards": args.shards,
        "body_tokens": tokens,
        "synthetic": "random whole words of the bundled BERT vocabulary; shapes (10 + 270 wordpieces a block) real",
        "baseline": {"open_seconds": round(baseline_open, 2), "bytes_per_token": round(baseline_per_token, 2),
                     "traced_blocks": traced, "heap_bytes": int(baseline_bytes)},
        "compact": {"build_seconds": round(build, 2), "open_seconds": round(reopen, 4),
                    "token_bytes_per_token_resident": round(tokens_resident / tokens, 2),
                    "offset_bytes_per_token_resident": round(offsets_resident / tokens, 2),
                    "on_disk_bytes": int(sum(sizes.values()))},
        "ratios": {"open_speedup": common.ratio(baseline_open, reopen, 1),
                   "memory_reduction": common.ratio(baseline_bytes, tokens_resident + offsets_resident, 1)},
        "machine": machine,
    }
    print(f"compact: built in {build:.1f}s, opened in {reopen * 1000:.1f} ms, "
          f"{results['compact']['token_bytes_per_token_resident']} bytes a token resident for the ids "
          f"(+{results['compact']['offset_bytes_per_token_resident']} once every offset is read)", flush=True)
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
    sys.exit(0)

"""How the index, block store and QA export grow with the corpus: `python -m benchmarks.scale`.

    python -m benchmarks.scale [--sizes 100000,1000000,13353718] [--queries 200]
        [--sweep_leaves 100,200] [--reorder_dtype bfloat16] [--blocks_max 1000000]
        [--streamed_blocks_max 13353718] [--shard_blocks 100000] [--body_tokens 270]
        [--stages store_streamed,store_read]
        [--qa_retrieval exact,scann] [--qa_questions 50] [--workdir runs/bench/scale] [--keep] [--resume]

For each N, synthetic 128-d block embeddings of the real shape (REALM's `block_emb` is
[13353718, 128] float32; these are clustered around round(sqrt(N)) random centres, with
queries near random blocks, as benchmarks.retrieval_latency draws them) are written to
an .npy file in chunks, and then each stage runs in a process of its own, so that its
wall time and peak resident memory (ru_maxrss: mapped file pages it touched included)
are its alone:

  build    realm_tf.retrieval.index_build.publish_index_version over the memory-mapped
           embeddings, with the base config's index settings (--reorder_dtype sets
           index.reorder_dtype, the copy ScaNN re-scores from): checks, checksums, the
           ScaNN build and the atomic publication of the version, as embed_and_index and
           import-index do it.
  verify   IndexVersion.load with verification: every checksum recomputed, every byte read.
  serve    IndexVersion.load without re-hashing and its ScaNN searcher (the load's time
           and peak memory are recorded apart), then one query per call through it
           (p50/p99 over --queries) and recall@10 against exact search (numpy over the
           memory-mapped embeddings, in chunks) on the first 100 queries; with
           --sweep_leaves, the same again searching other numbers of leaves.

With blocks (N at most --blocks_max, 1M by default), N synthetic blocks of the real shapes
(benchmarks.block_store's: 288 wordpieces of random whole words) are written first as a
block directory, the index's rows get their block ids, and five more stages run:

  store       realm_tf.corpus.block_store.BlockStore opened with a featurizer: the compact
              store built from the TFRecord shards as the first reader of a directory
              chunked without it does, a piece a shard, by a process a CPU (build_workers;
              chunk_corpus's workers build the same pieces, a shard each, every text
              tokenized again for its character offsets), then its bytes on disk; the
              worker processes' peak RSS apart.
  store_read  the store opened again and every token id of every piece read (every page
              of the ids mapped, as a trainer drawing from all N does): the resident
              bytes of its maps a body token (/proc/self/smaps).
  batches     the store opened again (memory-mapped), then 40 pre-training batches of 32
              synthetic examples x 8 candidates (the null document and 7 blocks drawn from
              all N) assembled by realm_tf.tasks.pretrain.pack_pretraining_batch with the
              base config's lengths: batches/s.
  qa_export   a fine-tuning model_dir of the tiny config (random weights: neither the
              size nor the speed of serving depends on them) with 288-wordpiece blocks
              and 128-d embeddings, then realm_tf.export.qa_export.export_qa_model over the
              blocks and the index, once per retrieval kind (--qa_retrieval): seconds and
              bytes on disk.
  qa_serve    each export loaded in a fresh process as TF Serving would (the SavedModel
              alone), then one question per call: load seconds, resident memory after the
              load and at the end, p50/p99 over --qa_questions one-question calls. A
              two-part kind (two_part_exact, two_part_scann: `--parts two`) loads its
              retriever, its reader and the store's lookup in that one process
              (realm_tf.serving.two_part.TwoPartPredictor): all they hold together.

Sizes above --blocks_max and up to --streamed_blocks_max (Wikipedia's 13.35M, whose
shards, about 40 GB, and store, about 52 GB, do not fit this machine's disk together)
get the store, store_read and batches stages, with the store built streamed:

  store_streamed  the manifest written first, then by build_workers spawned processes,
              shard by shard (--shard_blocks blocks each): the synthetic shard written,
              its piece built into the store's partial build folder by
              realm_tf.corpus.block_store.write_shard_piece (as the first reader's build
              does), the shard deleted; then BlockStore opened, which finds every piece
              built and publishes the store. Each finished piece is logged to
              store_pieces.jsonl in the size's folder, so a run cut short and started
              again with --resume builds only the pieces missing, and the figures count
              every attempt's pieces and wall time.

and, after the index stages, the qa_export and qa_serve stages of the two-part kinds
among --qa_retrieval (a single export holds every text: about 24 GiB here). With the
full 270-wordpiece bodies the store, the index and the exports do not fit this machine's
disk together at 13.35M; --body_tokens makes the synthetic bodies shorter (the manifest's
stats record it), which changes what the store holds, not what the retriever (the index)
or the reader (the model; every block packed to the reader's length) holds.

--stages runs only the stages named; --resume keeps each size's folder (embeddings,
manifest, built pieces) instead of starting it afresh.

Each stage also records the resident memory of its process once TensorFlow and ScaNN
are imported, before it starts (about 0.65 GiB here), which its peak includes.

benchmarks.pretraining_inputs measures batch assembly against the per-example code it
replaced, at one size; here it is the gathered path alone, against N.
"""

import argparse
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from benchmarks import common
from benchmarks.block_store import (BODY_TOKENS, synthetic_body_tokens, write_synthetic_blocks,
                                    write_synthetic_manifest)
from benchmarks.retrieval_latency import clustered_embeddings, recall_at_k
from realm_tf.configs.experiment import REORDER_DTYPES

RESULTS = common.RESULTS_DIR / "scale.json"
DIM, K, RECALL_QUERIES = 128, 10, 100
CHUNK_ROWS = 1 << 18
REALM_BLOCKS = 13_353_718
BLOCKS_MAX = 1_000_000
SHARD_BLOCKS = 100_000  # A streamed size's blocks a shard: about 0.3 GB of TFRecords, 0.4 GB of store.
STAGES = ("store", "store_streamed", "store_read", "batches", "build", "verify", "serve", "qa_export", "qa_serve")
# The QA exports made and served: a single export of each retrieval, or a two-part
# deployment (its retriever and reader, the texts looked up from the store between them).
RETRIEVAL_KINDS = ("exact", "scann", "two_part_exact", "two_part_scann")
TWO_PART = "two_part_"
# The tiny model over blocks of the synthetic ones' length, embedding as the index does.
MODEL_OVERRIDES = ("features.block_length=288", f"retriever.projection_size={DIM}")
# Pre-training batches assembled at each N: examples x candidates, the base config's lengths.
BATCH_SIZE, BATCHES = 32, 40
QUESTIONS = ("when was nikola tesla born?", "who won super bowl 50?", "what is the capital of france?",
             "which river flows through cairo?")


def write_embeddings(directory: pathlib.Path, num_blocks: int, num_queries: int, seed: int = 0) -> None:
    """embeddings.npy float32 [N, 128] (written chunk by chunk) and queries.npy [Q, 128]."""
    directory.mkdir(parents=True, exist_ok=True)
    blocks = np.lib.format.open_memmap(directory / "embeddings.npy", "w+", np.float32, (num_blocks, DIM))
    _, queries = clustered_embeddings(num_blocks, num_queries, max(1, round(math.sqrt(num_blocks))), seed, out=blocks)
    blocks.flush()
    np.save(directory / "queries.npy", queries.astype(np.float32))
    del blocks


def exact_top_k(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """int64 [Q, k] rows of the best inner products, best first, read chunk by chunk."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(embeddings), CHUNK_ROWS):
        scores = queries @ np.asarray(embeddings[start:start + CHUNK_ROWS]).T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_scores, best_rows = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_rows, keep, 1)
    return best_rows


def _timed_search(searcher, queries: np.ndarray, exact: np.ndarray, **search_options) -> Dict:
    """One query per call: p50/p99 over every query and recall@10 against `exact` on the first ones."""
    searcher.search(queries[0], final_num_neighbors=K, **search_options)  # Warm-up.
    seconds, found = [], []
    for query in queries:
        begin = time.perf_counter()
        rows, _ = searcher.search(query, final_num_neighbors=K, **search_options)
        seconds.append(time.perf_counter() - begin)
        found.append(np.asarray(rows, np.int64))
    return {"one_query": common.latency_ms(seconds), "recall_at_10": recall_at_k(np.stack(found[:len(exact)]), exact)}


def run_stage(stage: str, workdir: str, num_queries: str, sweep_leaves: str = "", reorder_dtype: str = "") -> None:
    """One stage in this process; prints its figures as one JSON line."""
    import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before scann imports TensorFlow)
    from realm_tf.artifacts.index_version import IndexVersion, latest_version
    from realm_tf.configs import load_config
    from realm_tf.retrieval.index_build import publish_index_version

    work = pathlib.Path(workdir)
    figures: Dict = {"rss_after_imports_bytes": common.rss_bytes()}
    started = time.perf_counter()
    if stage == "build":
        embeddings = np.load(work / "embeddings.npy", mmap_mode="r")
        config = load_config("base", [f"index.reorder_dtype={reorder_dtype}"] if reorder_dtype else []).index
        path = publish_index_version(str(work / "index"), embeddings, _block_ids(work, len(embeddings)), config,
                                     {"step": 0, "synthetic": True})
        figures["build"] = IndexVersion.load(path, verify=False).build
    elif stage == "verify":
        IndexVersion.load(latest_version(str(work / "index")), verify=True)
    elif stage == "serve":
        version = IndexVersion.load(latest_version(str(work / "index")), verify=False)
        searcher = version.searcher
        figures["load_seconds"] = round(time.perf_counter() - started, 2)
        figures["peak_rss_after_load_bytes"] = common.peak_rss_bytes()
        queries = np.load(work / "queries.npy")[:int(num_queries)]
        exact = exact_top_k(version.embeddings, queries[:RECALL_QUERIES], K)
        figures.update(_timed_search(searcher, queries, exact))
        figures["recall_queries"] = len(exact)
        if version.build["method"] == "tree_ah":
            # Capped at the tree's leaves: one list serves every N.
            sweep = sorted({min(leaves, version.build["num_leaves"]) for leaves in common.int_list(sweep_leaves)})
            figures["sweep"] = [{"leaves_to_search": leaves, **_timed_search(searcher, queries, exact,
                                                                              leaves_to_search=leaves)}
                                for leaves in sweep]
    elif stage == "store":
        from realm_tf.artifacts.manifests import BlocksManifest
        from realm_tf.corpus.block_store import BlockStore, build_workers

        manifest = BlocksManifest.read(str(work / "blocks"))
        figures["build_workers"] = build_workers(manifest.num_blocks, len(manifest.block_shards))
        store = BlockStore(str(work / "blocks"), _featurizer())
        # Worker processes (build_workers > 1) are this stage's children, their peak apart.
        figures["workers_peak_rss_bytes"] = common.children_peak_rss_bytes()
        figures["bytes_on_disk"] = sum(store.arrays.file_bytes().values())
        figures["body_tokens"] = int(store.arrays.info.num_body_tokens)
    elif stage == "store_streamed":
        figures.update(_build_streamed_store(work))
    elif stage == "store_read":
        from benchmarks.block_store import mapped_resident_bytes
        from realm_tf.artifacts.block_arrays import compact_dir
        from realm_tf.corpus.block_store import BlockStore

        arrays = BlockStore(str(work / "blocks")).arrays
        tokens, largest = {"title": 0, "body": 0}, 0
        for part in tokens:  # Every id of every piece read (every page), as a trainer over all blocks would.
            for piece in range(len(arrays.info.pieces)):
                values, _ = arrays.piece_tokens(part, piece)
                tokens[part] += len(values)
                largest = max(largest, int(values.max(initial=0)))
        figures["tokens"], figures["largest_token_id"] = tokens, largest
        figures["resident_bytes"] = mapped_resident_bytes(compact_dir(str(work / "blocks")))
        figures["resident_bytes_per_body_token"] = round(figures["resident_bytes"] / tokens["body"], 3)
    elif stage == "batches":
        import tensorflow as tf

        from benchmarks.pretraining_inputs import random_candidates, write_synthetic_examples
        from realm_tf.corpus.block_store import BlockStore
        from realm_tf.corpus.pretraining_examples import parse_pretraining_columns
        from realm_tf.features import Featurizer
        from realm_tf.tasks.example_stream import take_columns
        from realm_tf.tasks.pretrain import pack_pretraining_batch

        config = load_config("base")
        blocks = BlockStore(str(work / "blocks"))
        figures["store_open_seconds"] = round(time.perf_counter() - started, 3)
        max_masks, count = config.pretrain.max_masked_tokens, BATCH_SIZE * (BATCHES + 2)
        paths = write_synthetic_examples(work / "examples", count, blocks.arrays.block_ids, max_masks)
        columns = parse_pretraining_columns(np.array(list(tf.data.TFRecordDataset(paths).as_numpy_iterator()),
                                                     object))
        featurizer = Featurizer(config.features)
        rng = np.random.default_rng(1)
        seconds = []
        for i in range(BATCHES + 2):  # The first two warm up.
            rows = np.arange(i * BATCH_SIZE, (i + 1) * BATCH_SIZE)
            # Candidates drawn from all N: pages anywhere in the store.
            ids = random_candidates(rng, blocks.arrays.block_ids, BATCH_SIZE)
            begin = time.perf_counter()
            pack_pretraining_batch(featurizer, blocks, take_columns(columns, rows), lambda query, sources: ids,
                                   max_masks)
            seconds.append(time.perf_counter() - begin)
        figures["batches_per_second"] = round(BATCHES / sum(seconds[2:]), 2)
        figures["batch"] = common.latency_ms(seconds[2:])
    elif stage.startswith("qa_export:"):
        from realm_tf.export.qa_export import export_qa_model, export_two_parts

        kind = stage.split(":", 1)[1]
        model_dir = _random_model_dir(work)
        started = time.perf_counter()  # The export alone, not the model_dir set up for it.
        export_dir = work / f"qa_{kind}"
        if kind.startswith(TWO_PART):
            export_two_parts(str(model_dir), str(export_dir / "retriever"), str(export_dir / "reader"),
                             retrieval=kind[len(TWO_PART):])
        else:
            export_qa_model(str(model_dir), str(export_dir), retrieval=kind)
        figures["bytes_on_disk"] = sum(p.stat().st_size for p in export_dir.rglob("*") if p.is_file())
    elif stage.startswith("qa_serve:"):
        import tensorflow as tf

        from realm_tf.artifacts.qa_export import load_qa_export

        kind = stage.split(":", 1)[1]
        export_dir = work / f"qa_{kind}"
        if kind.startswith(TWO_PART):
            from realm_tf.serving.two_part import TwoPartPredictor

            # Both parts and the block lookup in one process: what the two servers and the
            # lookup hold together.
            two_parts = TwoPartPredictor(str(export_dir / "retriever"), str(export_dir / "reader"))
            answer = lambda questions: two_parts.outputs(questions.numpy().tolist())  # noqa: E731
        else:
            answer = load_qa_export(str(export_dir))[1].signatures["serving_default"]
        figures["load_seconds"] = round(time.perf_counter() - started, 2)
        figures["rss_after_load_bytes"] = common.rss_bytes()
        answer(questions=tf.constant(QUESTIONS[:1]))  # Warm-up.
        seconds = []
        for i in range(int(num_queries)):
            begin = time.perf_counter()
            answer(questions=tf.constant([QUESTIONS[i % len(QUESTIONS)]]))
            seconds.append(time.perf_counter() - begin)
        figures["one_question"] = common.latency_ms(seconds)
        figures["rss_at_end_bytes"] = common.rss_bytes()
    else:
        raise ValueError(f"unknown stage {stage!r}")
    common.report_stage(figures, started)


STORE_PIECES_LOG = "store_pieces.jsonl"


def _build_streamed_store(work: pathlib.Path) -> Dict:
    """The compact store of `work/blocks`, whose manifest is written and whose shards are
    not: each shard is written, its piece built into the store's partial build folder (as
    realm_tf.corpus.block_store builds it, by build_workers spawned processes), then
    deleted; the store is then opened, which finds every piece built and publishes it.
    Pieces left by an earlier attempt are kept; each piece finished is logged to
    `work/STORE_PIECES_LOG` (its attempt, seconds and finish time)."""
    import concurrent.futures
    import json
    import multiprocessing

    from realm_tf.artifacts.block_arrays import (PIECE_INFO_NAME, PieceInfo, blocks_manifest_sha256, compact_dir,
                                                 partial_dir, piece_name, read_block_arrays_info)
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.corpus.block_store import BlockStore, build_workers

    blocks = str(work / "blocks")
    manifest = BlocksManifest.read(blocks)
    digest = blocks_manifest_sha256(blocks)
    partial = partial_dir(compact_dir(blocks), digest)
    published = read_block_arrays_info(compact_dir(blocks))
    # A store an earlier attempt published (its pieces moved out of the partial folder) has no piece missing.
    if published is not None and published.blocks_manifest_sha256 == digest:
        todo = []
    else:
        os.makedirs(partial, exist_ok=True)
        todo = [shard for shard, name in enumerate(manifest.block_shards)
                if not os.path.exists(os.path.join(partial, piece_name(name), PIECE_INFO_NAME))]
    workers = build_workers(manifest.num_blocks, len(todo))
    attempt = time.time()
    log = work / STORE_PIECES_LOG
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_start_stream_worker) as pool:
        futures = [pool.submit(_stream_piece, blocks, shard, len(manifest.block_shards), manifest.num_blocks,
                               partial) for shard in todo]
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), unit=" pieces",
                           desc="streamed store", disable=len(futures) < 2):
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"attempt": attempt, **future.result(), "finished_at": time.time()}) + "\n")
    workers_peak = common.children_peak_rss_bytes()
    started = time.perf_counter()
    store = BlockStore(blocks, _featurizer())
    pieces = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    attempts = sorted({p["attempt"] for p in pieces})
    return {"streamed": True, "shards": len(manifest.block_shards), "build_workers": workers,
            "workers_peak_rss_bytes": workers_peak, "publish_seconds": round(time.perf_counter() - started, 2),
            "pieces_built_now": len(todo), "pieces_kept": len(manifest.block_shards) - len(todo),
            "attempts": [{"pieces": sum(p["attempt"] == a for p in pieces),
                          "wall_seconds": round(max(p["finished_at"] for p in pieces if p["attempt"] == a) - a, 1)}
                         for a in attempts],
            "write_shard_seconds": round(sum(p["write_seconds"] for p in pieces), 1),
            "build_piece_seconds": round(sum(p["build_seconds"] for p in pieces), 1),
            "bytes_on_disk": sum(store.arrays.file_bytes().values()),
            "body_tokens": int(store.arrays.info.num_body_tokens),
            "char_offsets_dtypes": sorted({PieceInfo.read(os.path.join(compact_dir(blocks), name)).char_offsets_dtype
                                           for name in store.arrays.info.pieces})}


_stream_featurizer = None  # A streaming worker's one Featurizer.


def _start_stream_worker() -> None:
    global _stream_featurizer
    _stream_featurizer = _featurizer()


def _stream_piece(blocks_dir: str, shard: int, shards: int, num_blocks: int, partial: str) -> Dict:
    """In a worker: writes synthetic shard `shard`, builds its piece into `partial`, deletes
    the shard; returns the seconds of each."""
    from benchmarks.block_store import write_synthetic_shard
    from realm_tf.artifacts.block_arrays import piece_name
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.corpus.block_store import write_shard_piece

    path = BlocksManifest.read(blocks_dir).block_paths(blocks_dir)[shard]
    started = time.perf_counter()
    write_synthetic_shard(pathlib.Path(path), shard, shards, num_blocks, body_tokens=synthetic_body_tokens(blocks_dir))
    written = time.perf_counter()
    write_shard_piece(path, os.path.join(partial, piece_name(path)), _stream_featurizer)
    os.remove(path)
    return {"piece": piece_name(path), "write_seconds": round(written - started, 2),
            "build_seconds": round(time.perf_counter() - written, 2)}


def _model_config():
    from realm_tf.configs import load_config

    return load_config("tiny", MODEL_OVERRIDES)


def _featurizer():
    from realm_tf.features import Featurizer

    return Featurizer(_model_config().features)


def _block_ids(work: pathlib.Path, num_rows: int) -> np.ndarray:
    """int64 [N], the block of each embedding row: the synthetic blocks' ids in record order
    where `work` has blocks (their compact store built), else 0..N-1."""
    if not (work / "blocks").exists():
        return np.arange(num_rows, dtype=np.int64)
    from realm_tf.artifacts.block_arrays import BlockArrays, compact_dir

    ids = np.array(BlockArrays(compact_dir(str(work / "blocks"))).block_ids, np.int64)
    if len(ids) != num_rows:
        raise RuntimeError(f"{work}: {len(ids)} blocks for {num_rows} embeddings")
    return ids


def _random_model_dir(work: pathlib.Path) -> pathlib.Path:
    """A fine-tuning model_dir of `_model_config()` with random weights over `work`'s blocks
    and index, as the export reads one; made once."""
    import tensorflow as tf

    from realm_tf.artifacts.index_version import latest_version
    from realm_tf.artifacts.model_dir import ModelDir, RunInfo
    from realm_tf.configs import save_config
    from realm_tf.features import Featurizer
    from realm_tf.tasks.finetune import build_open_qa_model

    layout = ModelDir(str(work / "model"))
    if layout.latest_checkpoint() is None:
        config = _model_config()
        model = build_open_qa_model(config, Featurizer(config.features))
        tf.train.CheckpointManager(tf.train.Checkpoint(model=model), layout.checkpoints_dir, max_to_keep=1).save(0)
        save_config(config, layout.config_path)
        layout.write_run_info(RunInfo(config=layout.config_path, blocks_dir=str(work / "blocks"),
                                      index_version=latest_version(str(work / "index"))))
    return pathlib.Path(layout.path)


def _kinds(text: str) -> List[str]:
    kinds = [kind for kind in text.split(",") if kind]
    unknown = sorted(set(kinds) - set(RETRIEVAL_KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"retrieval kinds must be among {list(RETRIEVAL_KINDS)}, got {text!r}")
    return kinds


def _stage_names(text: str) -> List[str]:
    try:
        return common.parse_names(text, STAGES, "stage")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _sizes(text: str) -> List[int]:
    sizes = common.int_list(text)
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"block counts must be positive, got {text!r}")
    return sizes


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=_sizes(f"100000,1000000,{REALM_BLOCKS}"),
                        help="block counts N, comma-separated (default: 100k, 1M and REALM's 13,353,718)")
    parser.add_argument("--queries", type=int, default=200, help="one-query calls timed (default: %(default)s)")
    parser.add_argument("--sweep_leaves", type=common.int_list, default=[], metavar="L[,L]",
                        help="also search each tree index with these numbers of leaves (ScaNN's leaves_to_search at "
                             "search time, no rebuild), timed and scored as above (default: none)")
    parser.add_argument("--reorder_dtype", choices=REORDER_DTYPES, default=None,
                        help="index.reorder_dtype of the index builds (default: the base config's)")
    parser.add_argument("--blocks_max", type=int, default=BLOCKS_MAX,
                        help="sizes up to this also get synthetic blocks, the block store and the QA exports "
                             "(default: %(default)s)")
    parser.add_argument("--streamed_blocks_max", type=int, default=0,
                        help="sizes above --blocks_max and up to this get synthetic blocks, the block store, its read "
                             "and the batches too (no QA exports), the blocks streamed: each shard written, its piece "
                             "built, the shard deleted, so the disk holds the store and a shard a worker at a time, "
                             "not every shard as well (default: none)")
    parser.add_argument("--shard_blocks", type=int, default=SHARD_BLOCKS,
                        help="synthetic blocks a shard of a streamed size (default: %(default)s)")
    parser.add_argument("--stages", type=_stage_names, default=list(STAGES), metavar="STAGE[,STAGE]",
                        help=f"run only these of {','.join(STAGES)} (default: all)")
    parser.add_argument("--resume", action="store_true",
                        help="keep what an earlier run with the same sizes left in --workdir: its embeddings, and a "
                             "streamed store's manifest and finished pieces (the pieces are not built again)")
    parser.add_argument("--qa_retrieval", type=_kinds, default=list(RETRIEVAL_KINDS), metavar="KIND[,KIND]",
                        help=f"the QA exports made and served, among {','.join(RETRIEVAL_KINDS)} (two_part: a "
                             "retriever and a reader, the texts looked up from the store) (default: %(default)s)")
    parser.add_argument("--body_tokens", type=int, default=BODY_TOKENS,
                        help="body wordpieces of each synthetic block (default: %(default)s, 288 with the title and "
                             "the special tokens); fewer make a store small enough to sit on a disk beside the index "
                             "and the exports at Wikipedia's N: what a two-part deployment's servers hold does not "
                             "depend on the texts' length")
    parser.add_argument("--qa_questions", type=int, default=50,
                        help="one-question calls timed on each QA export (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/scale"))
    parser.add_argument("--keep", action="store_true", help="keep each size's files (default: delete when done)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"queries": 1, "qa_questions": 1, "blocks_max": 0, "shard_blocks": 1,
                                         "streamed_blocks_max": 0, "body_tokens": 1})
    if min(args.sweep_leaves, default=1) < 1:
        parser.error(f"--sweep_leaves must be positive, got {args.sweep_leaves}")

    index_config = "base" + (f" with index.reorder_dtype={args.reorder_dtype}" if args.reorder_dtype else "")
    results = {"benchmark": "scale", "command": common.command_line("benchmarks.scale", argv),
               "synthetic": "clustered float32 128-d embeddings (round(sqrt(N)) centres), queries near random blocks",
               "index_config": index_config,
               "sizes": [], "machine": common.machine_info()}
    for num_blocks in args.sizes:
        work = args.workdir / f"n{num_blocks}"
        if not args.resume:
            shutil.rmtree(work, ignore_errors=True)
        size: Dict = {"num_blocks": num_blocks, "embeddings_bytes": num_blocks * DIM * 4}
        results["sizes"].append(size)
        index_stages = {"build", "verify", "serve"} & set(args.stages)
        if index_stages and not (work / "queries.npy").exists():  # The last file it writes.
            started = time.perf_counter()
            write_embeddings(work, num_blocks, args.queries)
            size["synthetic_write_seconds"] = round(time.perf_counter() - started, 1)
        stages = ["build", "verify", "serve"]
        if num_blocks <= args.blocks_max:
            started = time.perf_counter()
            size["body_tokens"] = write_synthetic_blocks(work / "blocks", num_blocks, body_tokens=args.body_tokens)
            size["synthetic_blocks_write_seconds"] = round(time.perf_counter() - started, 1)
            stages = ["store", "store_read", "batches", *stages,
                      *(f"qa_{part}:{kind}" for kind in args.qa_retrieval for part in ("export", "serve"))]
        elif num_blocks <= args.streamed_blocks_max:
            if not (work / "blocks").exists():
                write_synthetic_manifest(work / "blocks", num_blocks, math.ceil(num_blocks / args.shard_blocks),
                                         args.body_tokens)
            size["body_tokens"] = num_blocks * synthetic_body_tokens(str(work / "blocks"))
            # A single QA export holds every text, so only the two-part ones at these sizes.
            stages = ["store_streamed", "store_read", "batches", *stages,
                      *(f"qa_{part}:{kind}" for kind in args.qa_retrieval if kind.startswith(TWO_PART)
                        for part in ("export", "serve"))]
        for stage in stages:
            if stage.split(":")[0] not in args.stages:
                continue
            count = args.qa_questions if stage.startswith("qa_serve") else args.queries
            size[stage] = common.stage_in_child("benchmarks.scale", stage, work, count,
                                                ",".join(map(str, args.sweep_leaves)), args.reorder_dtype or "")
            print(f"N={num_blocks:,} {stage}: {size[stage]['seconds']} s, peak RSS "
                  f"{size[stage]['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
            common.write_results(args.output, results)  # After every stage: a long run keeps what it measured.
        if (work / "index").exists():
            size["index_bytes_on_disk"] = sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file())
        common.write_results(args.output, results)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

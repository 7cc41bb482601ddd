"""Top-k retrieval over a million blocks: the ScaNN layer of the QA export against exact matmul + top_k.

    python -m benchmarks.retrieval_latency [--num_blocks 1000000] [--queries 200] [--batch_size 64]

Draws `--num_blocks` synthetic 128-d block embeddings around cluster centres (as topics
cluster real ones) and queries near some of them, then searches them in one run, each
searcher a `tf.function` over the same float32 embeddings:

  exact    `tf.math.top_k(tf.linalg.matmul(queries, embeddings, transpose_b=True), k)`,
           the exact QA export's retrieval;
  scann    tensorflow-recommenders' `ScaNN` layer as the ScaNN QA export builds it
           (`realm_tf.export.qa_export`), with the parameters an index version of that
           many blocks gets (`realm_tf.retrieval.index_version.scann_parameters`): at 1M
           blocks a spherical tree of 1,000 leaves, 100 searched, AH scoring, and exact
           re-scoring of the best `index.reorder_num_neighbors` (100);
  scann_reorder_<n>  the same but re-scoring `--also_reorder` candidates (default 1,000;
           0 leaves it out): AH scores of nearby blocks are too close to rank them at
           this size, and re-scoring more of them is what recall needs.

It reports the latency of one query per call (p50 and p99 after a warm-up; the searchers
take turns query by query, so that load from other work on the machine falls on all
alike), the throughput of `--batch_size` queries per call, each ScaNN layer's recall@k of
the exact top k over every query of both measurements, and the time to build each layer.
Latencies are wall times of the call as a Python server makes it (the `tf.function` call
and fetching the [b, k] result). Writes benchmarks/results/retrieval_latency.json.

At the default size it needs about 6.5 GB of memory (the embeddings, each layer's copy for
re-scoring and its codes, a batch's [b, N] exact scores) and some 2 minutes on 2 cores,
most of it building ScaNN; below `index.exact_below` (20,000) blocks ScaNN is brute force,
as in an index version, and the re-scoring variant is left out.
"""

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "retrieval_latency.json"
DIM = 128
# Rows drawn at a time: float64 noise for all 1M x 128 at once would need 1 GB more.
CHUNK_ROWS = 100_000


def clustered_embeddings(num_blocks: int, num_queries: int, num_clusters: int, seed: int):
    """Blocks around `num_clusters` random centres, and queries near random blocks.

    Returns:
      blocks float32 [num_blocks, DIM] (centre + N(0, 0.5^2) per dimension) and queries
      float32 [num_queries, DIM] (a block + N(0, 0.3^2)), as in tests/test_searcher.py.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_clusters, DIM), dtype=np.float32)
    blocks = np.empty((num_blocks, DIM), np.float32)
    for start in range(0, num_blocks, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, num_blocks - start)
        blocks[start:start + rows] = centres[rng.integers(0, num_clusters, rows)]
        blocks[start:start + rows] += 0.5 * rng.standard_normal((rows, DIM), dtype=np.float32)
    queries = blocks[rng.integers(0, num_blocks, num_queries)] + 0.3 * rng.standard_normal(
        (num_queries, DIM), dtype=np.float32)
    return blocks, queries


def _milliseconds(seconds) -> dict:
    """p50, p99 and mean in ms of wall times in seconds."""
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_blocks", type=int, default=1_000_000)
    parser.add_argument("--num_clusters", type=int, default=256)
    parser.add_argument("--k", type=int, default=10, help="blocks per query (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="one-query calls timed (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=64, help="queries per batched call (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=8, help="batched calls timed (default: %(default)s)")
    parser.add_argument("--config", default="base", help="the config whose index section sizes ScaNN")
    parser.add_argument("--also_reorder", type=int, default=1000,
                        help="also measure a ScaNN layer built alike but re-scoring this many candidates exactly; "
                             "0: not (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    for name in ("num_blocks", "num_clusters", "k", "queries", "warmup", "batch_size", "batches", "also_reorder"):
        least = 0 if name in ("warmup", "also_reorder") else 1
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}, got {getattr(args, name)}")
    if args.k > args.num_blocks:
        parser.error(f"--k must be at most --num_blocks, {args.num_blocks}")

    # Other work on a shared machine slows every searcher: the load before starting says how much there was.
    load_average = [round(load, 2) for load in os.getloadavg()]
    import tensorflow as tf

    from realm_tf.configs import load_config
    from realm_tf.export.qa_export import _scann_layer
    from realm_tf.retrieval.index_version import scann_parameters

    started = time.perf_counter()
    total_queries = args.warmup + args.queries + args.batch_size * (args.batches + 1)
    blocks, queries = clustered_embeddings(args.num_blocks, total_queries, args.num_clusters, args.seed)
    print(f"{args.num_blocks:,} blocks drawn in {time.perf_counter() - started:.1f}s", flush=True)

    params = scann_parameters(args.num_blocks, load_config(args.config).index)
    variants = {"scann": params}
    if args.also_reorder and params["method"] == "tree_ah":
        variants[f"scann_reorder_{args.also_reorder}"] = dict(params, reorder_num_neighbors=args.also_reorder)
    spec = [tf.TensorSpec([None, DIM], tf.float32)]
    searchers, builds = {}, {}
    for name, build in variants.items():
        started = time.perf_counter()
        layer = _scann_layer(blocks, build, args.k)
        builds[name] = {"build": build, "build_seconds": round(time.perf_counter() - started, 1)}
        print(f"{name}: {build['method']} built in {builds[name]['build_seconds']}s", flush=True)
        searchers[name] = tf.function(lambda q, layer=layer: layer(q, k=args.k)[1], input_signature=spec)
    table = tf.Variable(blocks, trainable=False)
    del blocks  # The layers and the variable hold their own copies.
    searchers["exact"] = tf.function(
        lambda q: tf.math.top_k(tf.linalg.matmul(q, table, transpose_b=True), args.k).indices, input_signature=spec)

    found = {name: [] for name in searchers}
    names = list(searchers)

    def timed_in_turn(turn, batch, seconds):
        """Searches `batch` with every searcher, first one rotating with `turn` so that none
        always runs on caches another warmed; appends the wall times to `seconds` when given."""
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            begin = time.perf_counter()
            found[name].append(searchers[name](tf.constant(batch)).numpy())
            if seconds is not None:
                seconds[name].append(time.perf_counter() - begin)

    latencies = {name: [] for name in searchers}
    for i in range(args.warmup + args.queries):
        timed_in_turn(i, queries[i:i + 1], latencies if i >= args.warmup else None)
    batched = queries[args.warmup + args.queries:]
    batch_seconds = {name: [] for name in searchers}
    for b in range(args.batches + 1):  # Batch 0 warms up the batched shapes.
        timed_in_turn(b, batched[b * args.batch_size:(b + 1) * args.batch_size], batch_seconds if b else None)

    exact_rows = np.concatenate(found["exact"])
    results_by_searcher = {}
    for name in searchers:
        one_query = _milliseconds(latencies[name])
        seconds_per_batch = float(np.median(batch_seconds[name]))
        entry = {**builds.get(name, {}), "one_query": one_query,
                 "batched": {"median_seconds_per_batch": round(seconds_per_batch, 4),
                             "queries_per_second": round(args.batch_size / seconds_per_batch, 1)}}
        if name != "exact":
            rows = np.concatenate(found[name])
            entry[f"recall_at_{args.k}"] = round(float(np.mean(
                [len(set(r) & set(e)) / args.k for r, e in zip(rows, exact_rows)])), 4)
        results_by_searcher[name] = entry
    exact = results_by_searcher["exact"]
    for name in variants:
        entry = results_by_searcher[name]
        entry["speedup_over_exact"] = {
            "one_query_p50": round(exact["one_query"]["p50_ms"] / entry["one_query"]["p50_ms"], 1),
            "one_query_p99": round(exact["one_query"]["p99_ms"] / entry["one_query"]["p99_ms"], 1),
            "batched": round(entry["batched"]["queries_per_second"] / exact["batched"]["queries_per_second"], 1),
        }
    results = {
        "benchmark": "retrieval_latency",
        "num_blocks": args.num_blocks,
        "dim": DIM,
        "num_clusters": args.num_clusters,
        "k": args.k,
        "seed": args.seed,
        "one_query": {"queries": args.queries, "warmup": args.warmup},
        "batched": {"batch_size": args.batch_size, "batches": args.batches},
        "recall_queries": len(exact_rows),
        "machine": {"cpus": os.cpu_count(), "load_average_1_5_15_min_at_start": load_average,
                    "platform": platform.platform(), "tensorflow": tf.__version__},
        "searchers": results_by_searcher,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results_by_searcher.items():
        recall = entry.get(f"recall_at_{args.k}")
        print(f"{name:<20} one query p50 {entry['one_query']['p50_ms']:8.2f} ms  "
              f"p99 {entry['one_query']['p99_ms']:8.2f} ms   "
              f"batch of {args.batch_size}: {entry['batched']['queries_per_second']:9.1f} queries/s"
              + ("" if recall is None else f"   recall@{args.k} {recall:.4f}"))
    return results


if __name__ == "__main__":
    main()

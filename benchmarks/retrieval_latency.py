"""Top-k retrieval over a million blocks: the ScaNN layer of the QA export against exact matmul + top_k.

    python -m benchmarks.retrieval_latency [--num_blocks 1000000] [--queries 200] [--batch_size 64]
        [--sweep_reorder 100,300,1000,3000] [--sweep_leaves 50,100,200] [--sweep_queries 100]

Draws `--num_blocks` synthetic 128-d block embeddings around cluster centres (as topics
cluster real ones) and queries near some of them, then searches them in one run, each
searcher a `tf.function` over the same float32 embeddings:

  exact    `tf.math.top_k(tf.linalg.matmul(queries, embeddings, transpose_b=True), k)`,
           the exact QA export's retrieval;
  scann    tensorflow-recommenders' `ScaNN` layer as the ScaNN QA export uses it
           (`realm_tf.export.scann_retrieval.RescoredScann`), with the parameters an index
           version of that many blocks gets (`realm_tf.artifacts.index_version.scann_parameters`):
           at 1M blocks a spherical tree of 1,000 leaves, 100 searched, AH scoring, and the
           best `index.reorder_num_neighbors` (1,000) re-scored exactly from the float32 table;
  scann_reorder_<n>  the same but re-scoring `--also_reorder` candidates (default 100,
           the index config's value until this benchmark showed it too few; 0 leaves it
           out): AH scores of nearby blocks are too close to rank them at this size, and
           re-scoring more of them is what recall needs.

It reports the latency of one query per call (p50 and p99 after a warm-up; the searchers
take turns query by query, so that load from other work on the machine falls on all
alike), the throughput of `--batch_size` queries per call, each ScaNN layer's recall@k of
the exact top k over every query of both measurements, and the time to build each layer.
Latencies are wall times of the call as a Python server makes it (the `tf.function` call
and fetching the [b, k] result).

The recall/throughput curve ("sweep"): the `scann` layer's own searcher, built once, is
searched with other settings at search time (ScaNN's `search_batched(q, final_num_neighbors,
leaves_to_search)`, its candidates re-scored as the layer's), for every pair of `--sweep_reorder`
(how many AH candidates are re-scored exactly) and `--sweep_leaves` (tree leaves searched; default
half, once and twice the index config's). Every point and exact take turns again, on the
first `--sweep_queries` one-query calls and on the same batches; each point records
recall@k against exact, batched queries/s and one-query p50/p99, with its speed-up over
the exact point measured in those turns.

Writes benchmarks/results/retrieval_latency.json. At the default size it needs about
4.6 GB of memory (peak RSS 4.63 GB on 2026-12-06: the embeddings, each layer's codes, a
batch's [b, N] exact scores; 6.5 GB while each layer kept its own copy to re-score from)
and some 2.5 minutes on 2 quiet cores, most of it building ScaNN; below `index.exact_below`
(20,000) blocks ScaNN is brute force, as in an index version, and the re-scoring variant
and the sweep are left out.
"""

import argparse
import math
import pathlib
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "retrieval_latency.json"
DIM = 128
# Rows drawn at a time: float64 noise for all 1M x 128 at once would need 1 GB more.
CHUNK_ROWS = 100_000


def clustered_embeddings(num_blocks: int, num_queries: int, num_clusters: int, seed: int,
                         out: Optional[np.ndarray] = None):
    """Blocks around `num_clusters` random centres, and queries near random blocks.

    `out`, float32 [num_blocks, DIM] (a memory-mapped file, say), receives the blocks chunk
    by chunk instead of an array allocated here.

    Returns:
      blocks float32 [num_blocks, DIM] (centre + N(0, 0.5^2) per dimension) and queries
      float32 [num_queries, DIM] (a block + N(0, 0.3^2)), as in tests/test_searcher.py.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_clusters, DIM), dtype=np.float32)
    blocks = np.empty((num_blocks, DIM), np.float32) if out is None else out
    for start in range(0, num_blocks, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, num_blocks - start)
        blocks[start:start + rows] = centres[rng.integers(0, num_clusters, rows)]
        blocks[start:start + rows] += 0.5 * rng.standard_normal((rows, DIM), dtype=np.float32)
    queries = blocks[rng.integers(0, num_blocks, num_queries)] + 0.3 * rng.standard_normal(
        (num_queries, DIM), dtype=np.float32)
    return blocks, queries


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact row's ids among the found row's: int [Q, k] x int [Q, k] -> float in [0, 1]."""
    k = exact.shape[1]
    return round(float(np.mean([len(set(f.tolist()) & set(e.tolist())) / k for f, e in zip(found, exact)])), 4)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_blocks", type=int, default=1_000_000)
    parser.add_argument("--num_clusters", type=int, default=256)
    parser.add_argument("--k", type=int, default=10, help="blocks per query (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="one-query calls timed (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=64, help="queries per batched call (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=8, help="batched calls timed (default: %(default)s)")
    parser.add_argument("--config", default="base", help="the config whose index section sizes ScaNN")
    parser.add_argument("--also_reorder", type=int, default=100,
                        help="also measure a ScaNN layer built alike but re-scoring this many candidates exactly; "
                             "0: not (default: %(default)s)")
    parser.add_argument("--sweep_reorder", type=common.int_list, default=[100, 300, 1000, 3000],
                        help="re-scored candidates of the sweep's points, comma-separated; empty: no sweep "
                             "(default: 100,300,1000,3000)")
    parser.add_argument("--sweep_leaves", type=common.int_list, default=[],
                        help="leaves searched by the sweep's points, comma-separated (default: half, once and "
                             "twice the index config's num_leaves_to_search)")
    parser.add_argument("--sweep_queries", type=int, default=100,
                        help="one-query calls timed per sweep point (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"num_blocks": 1, "num_clusters": 1, "k": 1, "queries": 1, "warmup": 0,
                                         "batch_size": 1, "batches": 1, "also_reorder": 0, "sweep_queries": 1})
    if args.k > args.num_blocks:
        parser.error(f"--k must be at most --num_blocks, {args.num_blocks}")
    if any(n < args.k for n in args.sweep_reorder):
        parser.error(f"--sweep_reorder values must be at least --k ({args.k}), got {args.sweep_reorder}")
    if any(n < 1 for n in args.sweep_leaves):
        parser.error(f"--sweep_leaves values must be positive, got {args.sweep_leaves}")
    args.sweep_queries = min(args.sweep_queries, args.queries)

    # Other work on a shared machine slows every searcher: the load says how much there was.
    machine = common.machine_info()
    import tensorflow as tf

    from realm_tf.configs import load_config
    from realm_tf.export.scann_retrieval import RescoredScann
    from realm_tf.retrieval.index_build import scann_parameters

    started = time.perf_counter()
    total_queries = args.warmup + args.queries + args.batch_size * (args.batches + 1)
    blocks, queries = clustered_embeddings(args.num_blocks, total_queries, args.num_clusters, args.seed)
    print(f"{args.num_blocks:,} blocks drawn in {time.perf_counter() - started:.1f}s", flush=True)

    params = scann_parameters(args.num_blocks, load_config(args.config).index)
    variants = {"scann": params}
    if args.also_reorder and params["method"] == "tree_ah":
        variants[f"scann_reorder_{args.also_reorder}"] = dict(params, reorder_num_neighbors=args.also_reorder)
    spec = [tf.TensorSpec([None, DIM], tf.float32)]
    table = tf.Variable(blocks, trainable=False)
    del blocks  # The variable holds its own copy, and the layers re-score from it.
    searchers, builds, layers = {}, {}, {}
    for name, build in variants.items():
        started = time.perf_counter()
        layers[name] = layer = RescoredScann(table, build, shared_name=f"benchmark/{name}")
        builds[name] = {"build": build, "build_seconds": round(time.perf_counter() - started, 1)}
        print(f"{name}: {build['method']} built in {builds[name]['build_seconds']}s", flush=True)
        searchers[name] = tf.function(lambda q, layer=layer: layer(q, args.k)[1], input_signature=spec)
    searchers["exact"] = tf.function(
        lambda q: tf.math.top_k(tf.linalg.matmul(q, table, transpose_b=True), args.k).indices, input_signature=spec)
    calls = {name: (lambda batch, search=search: search(tf.constant(batch)).numpy()) for name, search in searchers.items()}

    one_query_inputs = [queries[i:i + 1] for i in range(args.warmup + args.queries)]
    batched = queries[args.warmup + args.queries:]
    batch_inputs = [batched[b * args.batch_size:(b + 1) * args.batch_size] for b in range(args.batches + 1)]
    print(f"timing {len(calls)} searchers in turns: {len(one_query_inputs)} one-query calls, "
          f"{len(batch_inputs)} batches of {args.batch_size}", flush=True)
    latencies, found = common.timed_in_turns(calls, one_query_inputs, warmup=args.warmup)
    # Batch 0 warms up the batched shapes.
    batch_seconds, found_batched = common.timed_in_turns(calls, batch_inputs, warmup=1)

    exact_rows = np.concatenate(found["exact"] + found_batched["exact"])
    results_by_searcher = {}
    for name in searchers:
        seconds_per_batch = float(np.median(batch_seconds[name]))
        entry = {**builds.get(name, {}), "one_query": common.latency_ms(latencies[name]),
                 "batched": {"median_seconds_per_batch": round(seconds_per_batch, 4),
                             "queries_per_second": round(args.batch_size / seconds_per_batch, 1)}}
        if name != "exact":
            entry[f"recall_at_{args.k}"] = recall_at_k(np.concatenate(found[name] + found_batched[name]), exact_rows)
        results_by_searcher[name] = entry
    exact = results_by_searcher["exact"]
    for name in variants:
        entry = results_by_searcher[name]
        entry["speedup_over_exact"] = {
            "one_query_p50": round(exact["one_query"]["p50_ms"] / entry["one_query"]["p50_ms"], 1),
            "one_query_p99": round(exact["one_query"]["p99_ms"] / entry["one_query"]["p99_ms"], 1),
            "batched": round(entry["batched"]["queries_per_second"] / exact["batched"]["queries_per_second"], 1),
        }

    sweep = None
    if params["method"] == "tree_ah" and args.sweep_reorder:
        sweep = _sweep(args, params, layers["scann"], table, calls["exact"], one_query_inputs, batch_inputs,
                       found["exact"], found_batched["exact"])
    results = {
        "benchmark": "retrieval_latency",
        "command": common.command_line("benchmarks.retrieval_latency", argv),
        "num_blocks": args.num_blocks,
        "dim": DIM,
        "num_clusters": args.num_clusters,
        "k": args.k,
        "seed": args.seed,
        "one_query": {"queries": args.queries, "warmup": args.warmup},
        "batched": {"batch_size": args.batch_size, "batches": args.batches},
        "recall_queries": len(exact_rows),
        "machine": machine,
        "searchers": results_by_searcher,
        "sweep": sweep,
    }
    common.write_results(args.output, results)
    for name, entry in results_by_searcher.items():
        recall = entry.get(f"recall_at_{args.k}")
        print(f"{name:<20} one query p50 {entry['one_query']['p50_ms']:8.2f} ms  "
              f"p99 {entry['one_query']['p99_ms']:8.2f} ms   "
              f"batch of {args.batch_size}: {entry['batched']['queries_per_second']:9.1f} queries/s"
              + ("" if recall is None else f"   recall@{args.k} {recall:.4f}"))
    for point in (sweep or {}).get("points", []):
        print(f"sweep reorder {point['reorder_num_neighbors']:>5} leaves {point['leaves_to_search']:>5}: "
              f"recall@{args.k} {point[f'recall_at_{args.k}']:.4f}  {point['queries_per_second']:9.1f} queries/s  "
              f"one query p50 {point['one_query']['p50_ms']:.2f} ms")
    return results


def _sweep(args, params: Dict, layer, table, exact_call, one_query_inputs: List[np.ndarray],
           batch_inputs: List[np.ndarray], exact_one: List[np.ndarray], exact_batched: List[np.ndarray]) -> Dict:
    """Recall@k, batched queries/s and one-query latency of the `scann` layer's searcher at
    other search-time settings, every point and exact taking turns (see the module docstring).

    Args:
      params: the layer's build parameters (`scann_parameters`).
      layer: the `scann` `RescoredScann`; its layer's searcher is reused, not rebuilt.
      table: the embeddings variable the candidates are re-scored from.
      exact_call: the exact searcher, float32 [b, DIM] -> int32 [b, k] (numpy).
      one_query_inputs, batch_inputs: the main measurement's inputs, float32 [1 | batch, DIM] each.
      exact_one, exact_batched: exact's results on them, int32 [1 | batch, k] each.
    """
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops

    from realm_tf.export.scann_retrieval import rescore_candidates

    leaves = args.sweep_leaves or sorted({max(1, math.ceil(params["num_leaves_to_search"] / 2)),
                                          params["num_leaves_to_search"], 2 * params["num_leaves_to_search"]})
    leaves = sorted({min(n, params["num_leaves"]) for n in leaves})
    # tensorflow-recommenders 0.7.7 (pinned) keeps the built searcher in `_serialized_searcher`;
    # its search op takes the candidates wanted and the leaves to search as inputs.
    searcher = scann_ops.searcher_from_module(layer.layer._serialized_searcher)

    def search(q, reorder, to_search):
        found = searcher.search_batched(q, final_num_neighbors=reorder, leaves_to_search=to_search)
        return rescore_candidates(table, q, found.distances, found.indices, args.k)[1]

    search = tf.function(
        search,
        input_signature=[tf.TensorSpec([None, DIM], tf.float32), tf.TensorSpec([], tf.int32),
                         tf.TensorSpec([], tf.int32)])
    points = [(reorder, n) for reorder in args.sweep_reorder for n in leaves]
    calls = {"exact": exact_call}
    for reorder, n in points:
        calls[f"reorder_{reorder}_leaves_{n}"] = (
            lambda batch, reorder=reorder, n=n: search(tf.constant(batch), tf.constant(reorder), tf.constant(n)).numpy())
    warmup = min(args.warmup, 5)
    chosen = list(range(args.warmup - warmup, args.warmup + args.sweep_queries))
    print(f"sweep: {len(points)} ScaNN settings and exact in turns, {args.sweep_queries} one-query calls and "
          f"{len(batch_inputs)} batches each", flush=True)
    one_seconds, one_found = common.timed_in_turns(calls, [one_query_inputs[i] for i in chosen], warmup=warmup)
    batch_seconds, batch_found = common.timed_in_turns(calls, batch_inputs, warmup=1)
    exact_rows = np.concatenate([exact_one[i] for i in chosen] + exact_batched)

    def figures(name):
        qps = args.batch_size / float(np.median(batch_seconds[name]))
        return common.latency_ms(one_seconds[name]), round(qps, 1)

    exact_latency, exact_qps = figures("exact")
    result_points = []
    for reorder, n in points:
        name = f"reorder_{reorder}_leaves_{n}"
        latency, qps = figures(name)
        result_points.append({
            "reorder_num_neighbors": reorder, "leaves_to_search": n,
            "index_config": reorder == params["reorder_num_neighbors"] and n == params["num_leaves_to_search"],
            f"recall_at_{args.k}": recall_at_k(np.concatenate(one_found[name] + batch_found[name]), exact_rows),
            "queries_per_second": qps, "one_query": latency,
            "speedup_over_exact": {"one_query_p50": common.ratio(exact_latency["p50_ms"], latency["p50_ms"], 1),
                                   "batched": common.ratio(qps, exact_qps, 1)},
        })
    return {
        "searcher": "the scann layer's, built once; settings changed at search time",
        "num_leaves": params["num_leaves"],
        "one_query_calls": args.sweep_queries, "batches": len(batch_inputs) - 1, "batch_size": args.batch_size,
        "recall_queries": len(exact_rows),
        "exact": {f"recall_at_{args.k}": 1.0, "queries_per_second": exact_qps, "one_query": exact_latency},
        "points": result_points,
    }


if __name__ == "__main__":
    main()

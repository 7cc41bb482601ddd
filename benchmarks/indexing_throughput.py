"""Blocks/s of the embed-and-index pipeline against a plain in-process loop, same blocks, same export.

    python -m benchmarks.indexing_throughput [--config tiny] [--workdir runs/bench_indexing]

Chunks the embedded corpus, exports an (untrained) embedder of the config's size, then
embeds every block three ways in one run: a plain loop calling the export (the
baseline), the Beam pipeline on the DirectRunner in-memory, and multi-processing with
two workers. The pipeline timings are wall times of the whole run as a user sees it
(start-up, reading, embedding, writing shards, building the index). Writes
benchmarks/results/indexing_throughput.json.
"""

import argparse
import pathlib
import time

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "indexing_throughput.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/indexing"))
    parser.add_argument("--num_docs", type=int, default=0, help="first documents of the corpus (0: all)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"batch_size": 1, "num_docs": 0})

    from beam_pipelines import embed_and_index
    from realm_tf.configs import load_config
    from realm_tf.retrieval.embedder_export import EmbedderExport

    machine = common.machine_info()
    paths = common.prepare_pipeline(args.workdir / "pipeline", num_docs=args.num_docs, config=args.config)
    blocks_dir, export_dir = paths["blocks_dir"], paths["embedder_export"]
    export = EmbedderExport.load(export_dir)
    embed_and_index.embed_in_process(blocks_dir, export, args.batch_size)  # Warm-up: traces the signature.
    started = time.perf_counter()
    embed_and_index.embed_in_process(blocks_dir, export, args.batch_size)
    loop_seconds = time.perf_counter() - started

    runs = {"plain_loop": loop_seconds}
    for name, options in (("beam_in_memory", ["--direct_running_mode=in_memory"]),
                          ("beam_multi_processing", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])):
        started = time.perf_counter()
        embed_and_index.embed_and_index(blocks_dir, export_dir, str(args.workdir / name), load_config(args.config),
                                        args.batch_size, beam_args=options)
        runs[name] = time.perf_counter() - started

    n = paths["num_blocks"]
    results = {
        "benchmark": "indexing_throughput",
        "command": common.command_line("benchmarks.indexing_throughput", argv),
        "config": args.config,
        "num_blocks": n,
        "batch_size": args.batch_size,
        "machine": machine,
        "runs": {name: {"seconds": round(s, 2), "blocks_per_second": round(n / s, 1),
                        "ratio_to_plain_loop": common.ratio(loop_seconds, s)} for name, s in runs.items()},
    }
    for name, run in results["runs"].items():
        print(f"{name:<24}{run['seconds']:>8.1f}s {run['blocks_per_second']:>8.1f} blocks/s  x{run['ratio_to_plain_loop']:.2f}")
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()

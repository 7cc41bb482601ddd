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
import json
import os
import pathlib
import platform
import shutil
import time

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "indexing_throughput.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench_indexing"))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)

    from beam_pipelines import chunk_corpus, embed_and_index
    from realm_tf.configs import load_config
    from realm_tf.export.embedder_export import EmbedderExport, export_embedder
    from realm_tf.features import Featurizer
    from realm_tf.modeling import Retriever
    from realm_tf.quickstart import DEFAULT_CORPUS

    shutil.rmtree(args.workdir, ignore_errors=True)
    blocks_dir = str(args.workdir / "blocks")
    manifest = chunk_corpus.run([f"--input={DEFAULT_CORPUS}", f"--output_dir={blocks_dir}", f"--config={args.config}"])
    config = load_config(args.config)
    featurizer = Featurizer(config.features)
    retriever = Retriever(config.retriever)
    retriever.embed_blocks(featurizer.block_features([""], [""]))
    export_dir = str(args.workdir / "embedder")
    export_embedder(retriever, featurizer, export_dir, step=0)

    export = EmbedderExport.load(export_dir)
    embed_and_index.embed_in_process(blocks_dir, export, args.batch_size)  # Warm-up: traces the signature.
    started = time.perf_counter()
    embed_and_index.embed_in_process(blocks_dir, export, args.batch_size)
    loop_seconds = time.perf_counter() - started

    runs = {"plain_loop": loop_seconds}
    for name, options in (("beam_in_memory", ["--direct_running_mode=in_memory"]),
                          ("beam_multi_processing", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])):
        started = time.perf_counter()
        embed_and_index.run([f"--blocks_dir={blocks_dir}", f"--embedder_export={export_dir}",
                             f"--index_root={args.workdir / name}", f"--config={args.config}",
                             f"--batch_size={args.batch_size}", *options])
        runs[name] = time.perf_counter() - started

    n = manifest.num_blocks
    results = {
        "benchmark": "indexing_throughput",
        "config": args.config,
        "num_blocks": n,
        "batch_size": args.batch_size,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": {name: {"seconds": round(s, 2), "blocks_per_second": round(n / s, 1),
                        "ratio_to_plain_loop": round(loop_seconds / s, 3)} for name, s in runs.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    for name, run in results["runs"].items():
        print(f"{name:<24}{run['seconds']:>8.1f}s {run['blocks_per_second']:>8.1f} blocks/s  x{run['ratio_to_plain_loop']:.2f}")
    return results


if __name__ == "__main__":
    main()

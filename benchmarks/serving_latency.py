"""Latency and throughput of the QA exports (exact, ScaNN and hybrid retrieval), with the Python predictor as a reference.

    python -m benchmarks.serving_latency [--calls 50] [--warmup 10] [--batch_size 16] [--batches 8]
        [--num_docs 0] [--exact_below 1000] [--no_predictor] [--workdir runs/bench/serving]

Builds what is served from the project's own commands: the embedded corpus chunked and
embedded into an index version (`benchmarks.common.prepare_pipeline`, an untrained tiny
embedder), a tiny open-QA model fine-tuned for `--finetune_steps` steps over it
(`python -m realm_tf.train --task=finetune`; speed does not depend on quality), and its
three QA exports (`python -m realm_tf.export --retrieval exact|scann|hybrid`; the hybrid one
adds BM25 over WordPiece ids and the fusion to the exact one, its lexical index built from
the blocks). With `--exact_below`
below the number of blocks, the index version, and so the ScaNN export, use a ScaNN tree
(as a large corpus would) rather than brute force.

TF Serving's binary is not installed here: each SavedModel is loaded in this process with
`tf.saved_model.load` (`import scann` first, for the ScaNN ops) and called through its
`serving_default` signature, as a Python server would; a TF Serving in front adds its RPC
and batching on top. The in-process `QaPredictor` (realm_tf.inference.predictor, host-side
retrieval over the same index with exact search) is timed beside them as a reference.

The systems take turns call by call (`benchmarks.common.timed_in_turns`), so that load
from other work falls on all alike: `--calls` calls of one question each (after `--warmup`
untimed ones; questions from qa_dev), then `--batches` calls of `--batch_size` questions.
Reported: p50/p99 of one question per call, questions/s at the batch, each against the
exact export (the baseline: stock TF Serving serves it), the time to load each export and
its size, and how often each system's answer equals the exact export's. Writes
benchmarks/results/serving_latency.json.
"""

import argparse
import pathlib
import shutil
import time
from typing import Dict, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "serving_latency.json"
SERVER_NOTE = ("TF Serving's binary (tensorflow_model_server) is not installed here: each SavedModel is loaded in the "
               "benchmark process with tf.saved_model.load and called through its serving_default signature")


def _directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare_model(args) -> Dict:
    """The fine-tuned model_dir and its three exports, built under `args.workdir` (or reused).

    Returns:
      {"model_dir", "exports": {"exact": dir, "scann": dir, "hybrid": dir}, "num_blocks"}.
    """
    from realm_tf.configs import load_config
    from realm_tf.export.qa_export import export_qa_model
    from realm_tf.training.runs import train_finetune

    overrides = [f"index.exact_below={args.exact_below}"] if args.exact_below else []
    if args.blocks_dir:
        from realm_tf.artifacts.manifests import BlocksManifest

        paths = {"blocks_dir": args.blocks_dir, "index_root": args.index_root,
                 "num_blocks": BlocksManifest.read(args.blocks_dir).num_blocks}
    else:
        paths = common.prepare_pipeline(args.workdir / "pipeline", args.num_docs, args.config, overrides)
    model_dir = args.workdir / "finetune"
    shutil.rmtree(model_dir, ignore_errors=True)
    started = time.perf_counter()
    config = load_config(args.config, [*overrides, f"finetune.training.train_steps={args.finetune_steps}",
                                       "finetune.training.batch_size=2", "finetune.training.warmup_steps=0"])
    train_finetune(config, paths["blocks_dir"], str(model_dir), str(args.qa_train), paths["index_root"],
                   progress=False)
    print(f"fine-tuned {args.finetune_steps} step(s) in {time.perf_counter() - started:.0f}s", flush=True)
    exports = {}
    for kind in ("exact", "scann", "hybrid"):
        exports[kind] = args.workdir / "exports" / kind
        shutil.rmtree(exports[kind], ignore_errors=True)
        started = time.perf_counter()
        export_qa_model(str(model_dir), str(exports[kind]), retrieval=kind, reader_batch_size=args.batch_size)
        print(f"{kind} export written in {time.perf_counter() - started:.0f}s", flush=True)
    return {"model_dir": str(model_dir), "exports": exports, "num_blocks": paths["num_blocks"]}


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="one-question calls timed (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed one-question calls first (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=16, help="questions per batched call (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=8, help="batched calls timed (default: %(default)s)")
    parser.add_argument("--no_predictor", action="store_true", help="leave out the in-process QaPredictor reference")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--num_docs", type=int, default=0,
                        help="documents of the embedded corpus to chunk; 0: all (default: %(default)s)")
    parser.add_argument("--exact_below", type=int, default=1000,
                        help="index.exact_below of the index version: below this many blocks ScaNN is brute force "
                             "(default: %(default)s; 0 keeps the config's)")
    parser.add_argument("--finetune_steps", type=int, default=2, help="fine-tuning steps (default: %(default)s)")
    parser.add_argument("--blocks_dir", help="use these blocks instead of preparing them (with --index_root)")
    parser.add_argument("--index_root", help="an index of --blocks_dir")
    parser.add_argument("--qa_train", type=pathlib.Path, default=common.QA_DIR / "qa_train.jsonl")
    parser.add_argument("--questions", type=pathlib.Path, default=common.QA_DIR / "qa_dev.jsonl",
                        help="squad_open JSONL whose questions are asked (default: qa_dev)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/serving"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"calls": 1, "warmup": 0, "batch_size": 1, "batches": 1, "num_docs": 0,
                                         "exact_below": 0, "finetune_steps": 1})
    if bool(args.blocks_dir) != bool(args.index_root):
        parser.error("--blocks_dir and --index_root go together")
    if not args.qa_train.is_file():
        parser.error(f"--qa_train {args.qa_train}: no such file")
    questions = common.read_questions(parser, args.questions)
    needed = args.warmup + args.calls + args.batch_size * (args.batches + 1)
    if len(questions) < needed:
        questions = questions * (needed // len(questions) + 1)  # Repeats: caching plays no part here.

    machine = common.machine_info()
    import scann  # noqa: F401  (registers the ScaNN ops the ScaNN export needs, before loading it)
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the TF Text ops of every export)

    from realm_tf.artifacts.qa_export import QaExportInfo

    built = prepare_model(args)
    signatures, exports = {}, {}
    for kind, path in built["exports"].items():
        started = time.perf_counter()
        signatures[kind] = tf.saved_model.load(str(path)).signatures["serving_default"]
        exports[kind] = {"path": str(path), "load_seconds": round(time.perf_counter() - started, 2),
                         "megabytes": round(_directory_bytes(path) / 1e6, 1)}
        info = QaExportInfo.read(str(path))
        exports[kind]["retrieval"] = info.retrieval
        exports[kind]["scann_build"] = info.scann_build

    def export_call(signature):
        return lambda batch: [a.decode("utf-8") for a in signature(questions=tf.constant(batch))["answer"].numpy()]

    calls = {kind: export_call(signature) for kind, signature in signatures.items()}
    if not args.no_predictor:
        from realm_tf.inference.open_qa_evaluation import load_predictor

        predictor, _ = load_predictor(built["model_dir"], method="exact")
        calls["predictor"] = lambda batch: [p.answer for p in predictor.predict(batch, batch_size=len(batch))]

    one = [[q] for q in questions[:args.warmup + args.calls]]
    rest = questions[args.warmup + args.calls:]
    batches = [rest[b * args.batch_size:(b + 1) * args.batch_size] for b in range(args.batches + 1)]
    print(f"timing {', '.join(calls)} in turns: {len(one)} one-question calls, {len(batches)} batches of "
          f"{args.batch_size}", flush=True)
    one_seconds, one_answers = common.timed_in_turns(calls, one, warmup=args.warmup)
    batch_seconds, batch_answers = common.timed_in_turns(calls, batches, warmup=1)  # Batch 0 warms up.

    systems = {}
    for name in calls:
        qps = args.batch_size / float(np.median(batch_seconds[name]))
        answers = sum(one_answers[name], []) + sum(batch_answers[name], [])
        reference = sum(one_answers["exact"], []) + sum(batch_answers["exact"], [])
        systems[name] = {
            "one_question": common.latency_ms(one_seconds[name]),
            "batched": {"batch_size": args.batch_size, "median_seconds_per_batch":
                        round(float(np.median(batch_seconds[name])), 4), "questions_per_second": round(qps, 2)},
            "same_answer_as_exact": round(float(np.mean([a == b for a, b in zip(answers, reference)])), 4),
        }
    exact = systems["exact"]
    for name, entry in systems.items():
        entry["ratio_to_exact"] = {
            # Latency: exact / system (above 1: faster than exact); throughput: system / exact.
            "one_question_p50_speedup": common.ratio(exact["one_question"]["p50_ms"], entry["one_question"]["p50_ms"]),
            "one_question_p99_speedup": common.ratio(exact["one_question"]["p99_ms"], entry["one_question"]["p99_ms"]),
            "questions_per_second": common.ratio(entry["batched"]["questions_per_second"],
                                                 exact["batched"]["questions_per_second"]),
        }
    for kind, info in exports.items():
        systems[kind]["export"] = info
    if "predictor" in systems:
        systems["predictor"]["what"] = ("realm_tf.inference.QaPredictor in this process: host-side exact search "
                                        "over the same index, the reader in a tf.function")
    results = {
        "benchmark": "serving_latency",
        "command": common.command_line("benchmarks.serving_latency", argv),
        "server": SERVER_NOTE,
        "baseline": "exact",
        "config": args.config,
        "num_blocks": built["num_blocks"],
        "finetune_steps": args.finetune_steps,
        "one_question": {"calls": args.calls, "warmup": args.warmup},
        "batched": {"batch_size": args.batch_size, "batches": args.batches},
        "machine": machine,
        "systems": systems,
    }
    common.write_results(args.output, results)
    for name, entry in systems.items():
        print(f"{name:<10} one question p50 {entry['one_question']['p50_ms']:8.1f} ms  p99 "
              f"{entry['one_question']['p99_ms']:8.1f} ms   batch of {args.batch_size}: "
              f"{entry['batched']['questions_per_second']:7.1f} questions/s  "
              f"(x{entry['ratio_to_exact']['questions_per_second']:.2f} exact)", flush=True)
    return results


if __name__ == "__main__":
    main()

"""Trains a realm-tf task: `python -m realm_tf.train --task=ict --config=tiny --blocks_dir=... --model_dir=...`.

Tasks:
  ict    Inverse Cloze Task warm start of the retriever (realm_tf.tasks.ict). At the end
         it reports recall@k on held-out sentences and exports the embedder to
         <model_dir>/embedder/<step>/ for the embed-and-index pipeline.

Training resumes from the newest checkpoint in --model_dir; TensorBoard summaries go
to <model_dir>/train and <model_dir>/eval.
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.configs import ConfigError, load_config
from realm_tf.corpus.manifest import ManifestError
from realm_tf.features import VocabularyError
from realm_tf.training.strategies import STRATEGIES

TASKS = ("ict",)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, required=True, help="what to train")
    parser.add_argument("--config", default="tiny", help="config name in configs/ or a YAML path (default: %(default)s)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. ict.training.train_steps=100 (repeatable)")
    parser.add_argument("--blocks_dir", required=True, help="output of beam_pipelines.chunk_corpus")
    parser.add_argument("--model_dir", required=True, help="checkpoints, summaries and exports go here")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy: tpu, mirrored (GPUs, or CPUs with --cpu_devices), or default")
    parser.add_argument("--tpu", default="", help="TPU name or address for --strategy=tpu")
    parser.add_argument("--cpu_devices", type=int, default=0,
                        help="with --strategy=mirrored and no GPU: mirror over this many logical CPUs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialization and the input pipeline (default: %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (for logs)")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Trains, evaluates and exports; returns {"step", "train": metrics, "eval": metrics, "export": path}."""
    args = build_arg_parser().parse_args(argv)
    config = load_config(args.config, args.override)

    from realm_tf.export.embedder_export import export_embedder
    from realm_tf.tasks.ict import IctTask
    from realm_tf.training.strategies import build_strategy
    from realm_tf.training.trainer import Trainer

    strategy = build_strategy(args.strategy, tpu=args.tpu, cpu_devices=args.cpu_devices)
    import tf_keras

    # Seeds the weight initialization (Python, NumPy and TF), so runs are repeatable.
    tf_keras.utils.set_random_seed(args.seed)
    task = IctTask(config, args.blocks_dir)
    trainer = Trainer(task, config.ict.training, args.model_dir, strategy=strategy, seed=args.seed)
    train_metrics = trainer.train(progress=not args.no_progress)
    eval_metrics = task.evaluate(trainer.model)
    _write_eval(args.model_dir, trainer.step, eval_metrics)
    export_dir = os.path.join(args.model_dir, "embedder", str(trainer.step))
    if not os.path.exists(export_dir):
        export_embedder(trainer.model, task.featurizer, export_dir, step=trainer.step)
    return {"step": trainer.step, "train": train_metrics, "eval": eval_metrics, "export": export_dir}


def _write_eval(model_dir: str, step: int, metrics: Dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
    with writer.as_default():
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=step)
    writer.flush()
    with open(os.path.join(model_dir, "eval.json"), "w", encoding="utf-8") as f:
        json.dump({"step": step, **metrics}, f, indent=2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = run(argv)
    except (ConfigError, ManifestError, VocabularyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recalls = ", ".join(f"{k} {v:.3f}" for k, v in result["eval"].items() if k.startswith("recall"))
    print(f"step {result['step']}: held-out {recalls} ({result['eval']['num_queries']} queries)")
    print(f"embedder exported to {result['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

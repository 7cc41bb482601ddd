"""Trains a realm-tf task: `python -m realm_tf.train --task=ict --config=tiny --blocks_dir=... --model_dir=...`.

Tasks:
  ict       Inverse Cloze Task warm start of the retriever (realm_tf.tasks.ict). At the end
            it reports recall@k on held-out sentences and exports the embedder to
            <model_dir>/embedder/<step>/ for the embed-and-index pipeline.
  pretrain  REALM pre-training (realm_tf.tasks.pretrain) on masked sentences from
            beam_pipelines.make_pretraining_examples, retrieving from the newest index
            version under --index_root. It exports the embedder every
            pretrain.refresh_every_steps steps; a refresher (beam_pipelines.refresh,
            started here with --refresh_in_background) publishes new index versions,
            which training swaps in as they appear. --init_from takes the retriever from
            an ICT model_dir on a fresh start.
  finetune  open-domain QA (realm_tf.tasks.finetune) on --qa_train, reading the top
            finetune.top_k blocks of a fixed index version (--index: a version, or a root
            whose newest version is taken and kept). The query tower and the reader train;
            --init_from takes them from a pretrain (or ICT) model_dir on a fresh start.
            With --eval_qa, the end reports exact match, F1 and recall@k on those
            questions (as python -m realm_tf.evaluate does).

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
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.configs import ConfigError, load_config
from realm_tf.training.strategies import STRATEGIES

TASKS = ("ict", "pretrain", "finetune")


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
    parser.add_argument("--examples_dir", help="pretrain: output of beam_pipelines.make_pretraining_examples")
    parser.add_argument("--index_root", help="pretrain: index versions to retrieve from (and refresh into)")
    parser.add_argument("--init_from", help="pretrain: an ICT --model_dir whose retriever starts training; "
                        "finetune: a pretrain (or ICT) --model_dir whose query tower and reader start it")
    parser.add_argument("--qa_train", help="finetune: training questions with answers (squad_open, NQ-open, ...)")
    parser.add_argument("--qa_format", default="auto", help="finetune: format of --qa_train and --eval_qa (default: auto)")
    parser.add_argument("--index", help="finetune: the fixed index, a version or a root (its newest version)")
    parser.add_argument("--eval_qa", help="finetune: questions to evaluate on at the end")
    parser.add_argument("--refresh_in_background", action="store_true",
                        help="pretrain: run beam_pipelines.refresh beside training (log: <model_dir>/refresh.log)")
    parser.add_argument("--skip_heldout_eval", action="store_true",
                        help="ict: skip the held-out recall at the end (it embeds every block once)")
    parser.add_argument("--jit_compile", action="store_true", help="compile the step's forward and backward with XLA")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialization and the input pipeline (default: %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar (for logs)")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Trains (and evaluates and exports); returns what happened, e.g. {"step", "train", "export", ...}."""
    args = build_arg_parser().parse_args(argv)
    config = load_config(args.config, args.override)

    from realm_tf.training.strategies import build_strategy

    strategy = build_strategy(args.strategy, tpu=args.tpu, cpu_devices=args.cpu_devices)
    import tf_keras

    # Seeds the weight initialization (Python, NumPy and TF), so runs are repeatable.
    tf_keras.utils.set_random_seed(args.seed)
    runs = {"ict": _run_ict, "pretrain": _run_pretrain, "finetune": _run_finetune}
    return {"task": args.task, **runs[args.task](args, config, strategy)}


def _build_trainer(task, training, args, config, strategy, init_from_parts=()):
    """The task's `Trainer`; a run that starts fresh (no checkpoint in `--model_dir`) first
    loads the pretrained checkpoints `retriever.init_checkpoint` and `reader.init_checkpoint`
    name, but for the `init_from_parts` that `--init_from` restores afterwards."""
    from realm_tf.checkpoints.initialize import initialize_from_checkpoints
    from realm_tf.training.trainer import Trainer

    trainer = Trainer(task, training, args.model_dir, strategy=strategy, seed=args.seed, jit_compile=args.jit_compile)
    if not trainer.restored_from:
        initialize_from_checkpoints(trainer.model, config, skip=init_from_parts)
    return trainer


def _run_ict(args, config, strategy) -> Dict:
    from realm_tf.export.embedder_export import export_embedder
    from realm_tf.tasks.ict import IctTask

    task = IctTask(config, args.blocks_dir)
    trainer = _build_trainer(task, config.ict.training, args, config, strategy)
    train_metrics = trainer.train(progress=not args.no_progress)
    eval_metrics = {}
    if not args.skip_heldout_eval:
        eval_metrics = task.evaluate(trainer.model)
        _write_eval(args.model_dir, trainer.step, eval_metrics)
    export_dir = os.path.join(args.model_dir, "embedder", str(trainer.step))
    if not os.path.exists(export_dir):
        export_embedder(trainer.model, task.featurizer, export_dir, step=trainer.step)
    return {"step": trainer.step, "train": train_metrics, "eval": eval_metrics, "export": export_dir}


def _run_pretrain(args, config, strategy) -> Dict:
    from realm_tf.tasks.pretrain import PretrainTask

    for flag in ("examples_dir", "index_root"):
        if not getattr(args, flag):
            raise ConfigError(f"--task=pretrain needs --{flag}")
    task = PretrainTask(config, args.examples_dir, args.blocks_dir, args.index_root, args.model_dir)
    refresher = None
    try:
        trainer = _build_trainer(task, config.pretrain.training, args, config, strategy,
                                 init_from_parts=("retriever",) if args.init_from else ())
        if args.init_from and not trainer.restored_from:
            logging.info("retriever restored from %s", task.restore_retriever(trainer.model, args.init_from))
        if args.refresh_in_background:
            from beam_pipelines.refresh import start_background_refresher

            refresher = start_background_refresher(
                args.model_dir, args.blocks_dir, args.index_root, args.config, args.override,
                os.path.join(args.model_dir, "refresh.log"))
        train_metrics = trainer.train(progress=not args.no_progress)
        export = task.export_embedder(trainer.model, trainer.step)
    finally:
        task.finish()
        if refresher is not None:
            _wait_for(refresher)
    return {"step": trainer.step, "train": train_metrics, "export": export,
            "index_versions_used": task.index_versions_used,
            "steps_per_second": getattr(trainer, "steps_per_second", 0.0)}


def _run_finetune(args, config, strategy) -> Dict:
    from realm_tf.configs import save_config
    from realm_tf.evaluate import RUN_INFO, read_run_info
    from realm_tf.retrieval.index_version import resolve_version
    from realm_tf.tasks.finetune import FinetuneTask, initial_weight_parts, restore_initial_weights

    for flag in ("qa_train", "index"):
        if not getattr(args, flag):
            raise ConfigError(f"--task=finetune needs --{flag}")
    os.makedirs(args.model_dir, exist_ok=True)
    if os.path.exists(os.path.join(args.model_dir, RUN_INFO)):  # Resuming: keep the index it started with.
        index_version = read_run_info(args.model_dir)["index_version"]
    else:
        index_version = resolve_version(args.index)
    task = FinetuneTask(config, args.qa_train, args.blocks_dir, index_version, qa_format=args.qa_format)
    init_from_parts = initial_weight_parts(args.init_from)[1] if args.init_from else ()
    trainer = _build_trainer(task, config.finetune.training, args, config, strategy, init_from_parts)
    if not trainer.restored_from:
        config_path = os.path.join(args.model_dir, "config.yaml")
        save_config(config, config_path)
        with open(os.path.join(args.model_dir, RUN_INFO), "w", encoding="utf-8") as f:
            json.dump({"config": os.path.abspath(config_path), "blocks_dir": os.path.abspath(args.blocks_dir),
                       "index_version": os.path.abspath(index_version)}, f, indent=2)
        if args.init_from:
            logging.info("%s restored from %s", " and ".join(init_from_parts),
                         restore_initial_weights(trainer.model, args.init_from))
    train_metrics = trainer.train(progress=not args.no_progress)
    result = {"step": trainer.step, "train": train_metrics, "index_version": index_version,
              "steps_per_second": getattr(trainer, "steps_per_second", 0.0)}
    if args.eval_qa:
        from realm_tf import evaluate

        result["eval"] = evaluate.run([f"--model_dir={args.model_dir}", f"--qa={args.eval_qa}",
                                       f"--format={args.qa_format}", *(["--no_progress"] if args.no_progress else [])])
        _write_eval(args.model_dir, trainer.step, result["eval"])
    return result


def _wait_for(process, timeout: float = 600.0) -> None:
    """The refresher indexes the last export and exits after TRAINING_DONE; don't wait forever."""
    import subprocess

    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logging.warning("the background refresher did not finish within %.0fs; stopping it", timeout)
        process.kill()


def _write_eval(model_dir: str, step: int, metrics: Dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
    with writer.as_default():
        for name, value in metrics.items():
            if isinstance(value, (int, float)):  # Not the paths some evaluations report.
                tf.summary.scalar(name, value, step=step)
    writer.flush()
    with open(os.path.join(model_dir, "eval.json"), "w", encoding="utf-8") as f:
        json.dump({"step": step, **metrics}, f, indent=2)


def format_result(result: Dict) -> str:
    """What `run` returned, as the lines the command line prints."""
    lines = []
    if result["task"] == "finetune":
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["train"].items())
        lines.append(f"step {result['step']}: {metrics} ({result['steps_per_second']:.2f} steps/s)")
        lines.append(f"index (fixed): {result['index_version']}")
        if "eval" in result:
            from realm_tf.evaluate import format_metrics

            lines.append(f"eval: {format_metrics(result['eval'])}")
    elif result["task"] == "ict" and not result["eval"]:
        lines.append(f"step {result['step']}: held-out evaluation skipped")
    elif "eval" in result:
        recalls = ", ".join(f"{k} {v:.3f}" for k, v in result["eval"].items() if k.startswith("recall"))
        lines.append(f"step {result['step']}: held-out {recalls} ({result['eval']['num_queries']} queries)")
    else:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["train"].items())
        lines.append(f"step {result['step']}: {metrics} ({result['steps_per_second']:.2f} steps/s)")
        lines.append(f"retrieved from {len(result['index_versions_used'])} index version(s): "
                     + ", ".join(os.path.basename(p) for p in result["index_versions_used"]))
    if result.get("export"):
        lines.append(f"embedder exported to {result['export']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return run_command(run, format_result, argv)


if __name__ == "__main__":
    sys.exit(main())

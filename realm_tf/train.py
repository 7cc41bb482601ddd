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
import logging
import os
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.artifacts.model_dir import ModelDir
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
    from realm_tf.training import runs
    from realm_tf.training.strategies import build_strategy

    args = build_arg_parser().parse_args(argv)
    config = load_config(args.config, args.override)
    needed = {"pretrain": ("examples_dir", "index_root"), "finetune": ("qa_train", "index")}.get(args.task, ())
    for flag in needed:
        if not getattr(args, flag):
            raise ConfigError(f"--task={args.task} needs --{flag}")
    common = {"strategy": build_strategy(args.strategy, tpu=args.tpu, cpu_devices=args.cpu_devices),
              "seed": args.seed, "jit_compile": args.jit_compile, "progress": not args.no_progress}
    if args.task == "ict":
        result = runs.train_ict(config, args.blocks_dir, args.model_dir, heldout_eval=not args.skip_heldout_eval,
                                **common)
    elif args.task == "pretrain":
        result = runs.train_pretrain(config, args.blocks_dir, args.model_dir, args.examples_dir, args.index_root,
                                     init_from=args.init_from, start_refresher=_refresher_of(args), **common)
    else:
        result = runs.train_finetune(config, args.blocks_dir, args.model_dir, args.qa_train, args.index,
                                     qa_format=args.qa_format, init_from=args.init_from, eval_qa=args.eval_qa,
                                     **common)
    return {"task": args.task, **result}


def _refresher_of(args):
    """--refresh_in_background: how to start beam_pipelines.refresh beside training (log:
    <model_dir>/refresh.log); None without it."""
    if not args.refresh_in_background:
        return None
    from beam_pipelines.refresh import start_background_refresher

    return lambda: start_background_refresher(args.model_dir, args.blocks_dir, args.index_root, args.config,
                                              args.override, ModelDir(args.model_dir).refresh_log)


def format_result(result: Dict) -> str:
    """What `run` returned, as the lines the command line prints."""
    lines = []
    if result["task"] == "finetune":
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["train"].items())
        lines.append(f"step {result['step']}: {metrics} ({result['steps_per_second']:.2f} steps/s)")
        lines.append(f"index (fixed): {result['index_version']}")
        if "eval" in result:
            from realm_tf.inference.open_qa_evaluation import format_metrics

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

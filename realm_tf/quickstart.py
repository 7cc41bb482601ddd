"""The end-to-end job on the embedded corpus: `python -m realm_tf.quickstart`.

Runs each stage of the REALM data flow with the minilm config (all-MiniLM-L6-v2's
pretrained weights in both towers and the reader) and prints where its outputs are;
`--config tiny` runs the same stages from random weights in a small model (the tests'
path). Stages:

  fetch     the pretrained weights the config names, pinned and digest-checked
            (python -m realm_tf.checkpoints fetch; a verified copy is reused offline)
  chunk     the embedded SQuAD-open corpus -> blocks (beam_pipelines.chunk_corpus)
  ict       Inverse Cloze Task warm start of the retriever -> embedder export (realm_tf.train;
            zero steps in minilm: the imported towers as they are)
  index     embed every block, build and publish a ScaNN index version (beam_pipelines.embed_and_index)
  examples  sentences with a salient span masked (beam_pipelines.make_pretraining_examples)
  pretrain  REALM pre-training from the ICT retriever, the index refreshed in the
            background as it trains (realm_tf.train --task=pretrain, beam_pipelines.refresh)
  retrieval recall@{1,5,20} on the qa_dev questions of the newest index, dense and BM25
            (realm_tf.evaluate_retrieval)
  finetune  open-QA fine-tuning on qa_train over that index, kept fixed, from the
            pre-trained query tower and reader (realm_tf.train --task=finetune)
  export    the fine-tuned model, its blocks and index as one SavedModel that answers
            questions, with exact retrieval (stock TF Serving ops) in TF Serving's layout
            under <workdir>/saved_models (python -m realm_tf.export)
  evaluate  exact match, F1 and recall@k on qa_dev (--eval_questions of them, a fixed
            sample; 0 for all 1,352) of that SavedModel, through its signature, and the
            no-retrieval baseline (null document only) beside them (realm_tf.evaluate);
            predictions with evidence go to predictions.jsonl
  answer    loads that SavedModel, answers --question with it and shows the evidence

The summary ends with the command that opens a page to ask the export questions
(python -m realm_tf.serving.demo).

Beam stages run on the DirectRunner.
"""

import argparse
import pathlib
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, run_command

ASSETS_DIR = pathlib.Path(__file__).resolve().parent / "assets"
QA_DIR = ASSETS_DIR / "squad_open"
DEFAULT_CORPUS = QA_DIR / "corpus.jsonl"
SAMPLE_QUESTION = "When was Nikola Tesla born?"


def _overrides(args) -> List[str]:
    return [f"--override={override}" for override in args.override]


def _fetch_stage(args) -> List[str]:
    from realm_tf.checkpoints.fetch import fetch_weights, is_pinned_name
    from realm_tf.configs import load_config

    config = load_config(args.config, args.override)
    names = sorted({path for path in (config.retriever.init_checkpoint, config.reader.init_checkpoint)
                    if path and is_pinned_name(path)})
    if not names:
        return [f"config {args.config} names no registered pretrained weights: nothing to fetch"]
    return [f"{name}: verified in {fetch_weights(name)}" for name in names]


def _chunk_stage(args) -> List[str]:
    from beam_pipelines import chunk_corpus

    blocks_dir = args.workdir / "blocks"
    manifest = chunk_corpus.run(
        [
            f"--input={args.corpus}",
            f"--output_dir={blocks_dir}",
            f"--config={args.config}",
            "--overwrite",
            "--runner=DirectRunner",
            *_overrides(args),
        ]
    )
    return chunk_corpus.summarize(manifest, str(blocks_dir)).splitlines()


def _ict_stage(args) -> List[str]:
    from realm_tf import train

    result = train.run([
        "--task=ict", f"--config={args.config}", f"--blocks_dir={args.workdir / 'blocks'}",
        f"--model_dir={args.workdir / 'ict'}", "--skip_heldout_eval", *_overrides(args),
    ])
    args.embedder_export = result["export"]
    # The held-out recall would embed every block once more; the retrieval stage measures
    # recall on qa_dev from the index instead.
    trained = (f"loss {result['train']['loss']:.3f}" if "loss" in result["train"]
               else "no training steps: the pretrained towers as imported")
    return [f"step {result['step']}: {trained}", f"embedder exported to {result['export']}"]


def _index_stage(args) -> List[str]:
    from beam_pipelines import embed_and_index

    version = embed_and_index.run([
        f"--blocks_dir={args.workdir / 'blocks'}", f"--embedder_export={args.embedder_export}",
        f"--index_root={args.workdir / 'index'}", f"--config={args.config}", "--runner=DirectRunner",
        *_overrides(args),
    ])
    return embed_and_index.summarize(version).splitlines()


def _examples_stage(args) -> List[str]:
    from beam_pipelines import make_pretraining_examples

    examples_dir = args.workdir / "examples"
    manifest = make_pretraining_examples.run([
        f"--blocks_dir={args.workdir / 'blocks'}", f"--output_dir={examples_dir}", f"--config={args.config}",
        "--overwrite", "--runner=DirectRunner", *_overrides(args),
    ])
    return make_pretraining_examples.summarize(manifest, str(examples_dir)).splitlines()


def _pretrain_stage(args) -> List[str]:
    from realm_tf import train

    result = train.run([
        "--task=pretrain", f"--config={args.config}", f"--blocks_dir={args.workdir / 'blocks'}",
        f"--examples_dir={args.workdir / 'examples'}", f"--index_root={args.workdir / 'index'}",
        f"--model_dir={args.workdir / 'pretrain'}", f"--init_from={args.workdir / 'ict'}", "--refresh_in_background",
        *_overrides(args),
    ])
    metrics = result["train"]
    return [
        f"step {result['step']} ({result['steps_per_second']:.2f} steps/s): loss {metrics.get('loss', float('nan')):.3f}, "
        f"masked-LM accuracy {metrics.get('mlm_accuracy', float('nan')):.3f}, "
        f"retrieval utility {metrics.get('retrieval_utility', float('nan')):.4f}, "
        f"index staleness {metrics.get('index_staleness', float('nan')):.0f} steps",
        f"retrieved from {len(result['index_versions_used'])} index version(s) as the refresher published them",
        f"TensorBoard: {args.workdir / 'pretrain'}; refresher log: {args.workdir / 'pretrain' / 'refresh.log'}",
    ]


def _retrieval_stage(args) -> List[str]:
    from realm_tf import evaluate_retrieval

    results = evaluate_retrieval.run([
        f"--qa={QA_DIR / 'qa_dev.jsonl'}", f"--blocks_dir={args.workdir / 'blocks'}",
        f"--index={args.workdir / 'index'}", f"--output={args.workdir / 'retrieval_recall.json'}",
    ])
    return evaluate_retrieval.format_table(results).splitlines()


def _finetune_stage(args) -> List[str]:
    return finetune(args, init_from=args.workdir / "pretrain", index=args.workdir / "index",
                    model_dir=args.workdir / "finetune")


def finetune(args, init_from: pathlib.Path, index: pathlib.Path, model_dir: pathlib.Path) -> List[str]:
    """Open-QA fine-tuning on qa_train over `index` (a version, or a root's newest), kept
    fixed, starting from the pretrain (or ICT) model_dir `init_from`; the finetune stage
    starts from pre-training, benchmarks.quality also from ICT alone."""
    from realm_tf import train

    result = train.run([
        "--task=finetune", f"--config={args.config}", f"--blocks_dir={args.workdir / 'blocks'}",
        f"--index={index}", f"--qa_train={QA_DIR / 'qa_train.jsonl'}",
        # XLA: measured 5.7 s a step against 8.7 s uncompiled (minilm, batch 8 over 5 blocks).
        f"--model_dir={model_dir}", f"--init_from={init_from}", "--jit_compile", *_overrides(args),
    ])
    metrics = result["train"]
    return [
        f"step {result['step']} ({result['steps_per_second']:.2f} steps/s): loss {metrics.get('loss', float('nan')):.3f}, "
        f"answer in the retriever's beam {metrics.get('answer_in_beam', float('nan')):.3f}, "
        f"in the blocks read {metrics.get('answer_in_candidates', float('nan')):.3f}, "
        f"best span correct {metrics.get('span_accuracy', float('nan')):.3f} (last batch)",
        f"fixed index: {result['index_version']}",
    ]


def _evaluate_stage(args) -> List[str]:
    from realm_tf import evaluate

    questions = [f"--qa={QA_DIR / 'qa_dev.jsonl'}",
                 *([f"--sample={args.eval_questions}"] if args.eval_questions else [])]
    # What is served is what is scored: the export, through its signature.
    metrics = evaluate.run([f"--saved_model={args.export_dir}", *questions,
                            f"--output={args.workdir / 'predictions.jsonl'}",
                            f"--metrics_output={args.workdir / 'qa_dev_metrics.json'}"])
    baseline = evaluate.run([f"--model_dir={args.workdir / 'finetune'}", *questions, "--retrieval=null",
                             "--no_progress"])
    return [
        f"the exported SavedModel: {evaluate.format_metrics(metrics)}",
        f"no retrieval:       exact_match {baseline['exact_match']:.3f}, f1 {baseline['f1']:.3f} "
        "(the null document holds no span to extract)",
        f"predictions with evidence: {args.workdir / 'predictions.jsonl'}",
    ]


def _export_stage(args) -> List[str]:
    from realm_tf.export import __main__ as export

    args.export_dir = export.run([f"--model_dir={args.workdir / 'finetune'}", "--retrieval=exact",
                                  f"--output_root={args.workdir / 'saved_models'}", "--model_name=realm_qa"])
    return [f"SavedModel: {args.export_dir}",
            f"TF Serving model config: {args.workdir / 'saved_models' / 'models.config'}"]


def _answer_stage(args) -> List[str]:
    from realm_tf.serving.client import format_answers
    from realm_tf.serving.demo import SavedModelAnswerer

    return format_answers(SavedModelAnswerer(args.export_dir).answer([args.question]), snippet_chars=100).splitlines()


STAGES: List[Tuple[str, str, Callable]] = [
    ("fetch", "fetch the pretrained weights the config names, digest-checked", _fetch_stage),
    ("chunk", "chunk the corpus into blocks (Beam)", _chunk_stage),
    ("ict", "warm-start the retriever with the Inverse Cloze Task", _ict_stage),
    ("index", "embed the blocks and publish a ScaNN index version (Beam)", _index_stage),
    ("examples", "mask a salient span in every sentence (Beam)", _examples_stage),
    ("pretrain", "REALM pre-training, the index refreshed in the background", _pretrain_stage),
    ("retrieval", "retrieval recall on qa_dev of the newest index, dense and BM25", _retrieval_stage),
    ("finetune", "open-QA fine-tuning on qa_train, the index fixed", _finetune_stage),
    ("export", "export a SavedModel that answers questions, in TF Serving's layout", _export_stage),
    ("evaluate", "exact match and recall on qa_dev of the SavedModel, with the no-retrieval baseline",
     _evaluate_stage),
    ("answer", "answer a sample question with the SavedModel and show its evidence", _answer_stage),
]


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m realm_tf.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/quickstart"),
                        help="where every stage writes its outputs (default: %(default)s)")
    parser.add_argument("--config", default="minilm",
                        help="config name or YAML path (default: %(default)s, from pretrained weights; "
                        "tiny: a small model from random weights)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every stage, e.g. pretrain.training.train_steps=50 (repeatable)")
    parser.add_argument("--corpus", type=pathlib.Path, default=DEFAULT_CORPUS,
                        help="documents as JSONL with id, title, text (default: the embedded SQuAD-open corpus)")
    parser.add_argument("--eval_questions", type=int, default=300,
                        help="qa_dev questions the evaluate stage answers, a fixed sample; 0: all 1,352 "
                        "(default: %(default)s)")
    parser.add_argument("--question", default=SAMPLE_QUESTION, help="the question the last stage answers "
                        "(default: %(default)r, from qa_dev)")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> str:
    """Runs every stage, printing progress; returns the summary."""
    args = build_arg_parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = []
    for number, (name, title, stage) in enumerate(STAGES, start=1):
        print(f"[{number}/{len(STAGES)}] {name}: {title} ...", flush=True)
        stage_started = time.monotonic()
        lines = stage(args)
        seconds = time.monotonic() - stage_started
        print(f"[{number}/{len(STAGES)}] {name}: done in {seconds:.1f}s", flush=True)
        report.append((name, seconds, lines))
    summary = ["\nSummary"]
    for name, seconds, lines in report:
        summary.append(f"- {name} ({seconds:.1f}s)")
        summary.extend(f"    {line}" for line in lines)
    summary.append(f"Total {time.monotonic() - started:.1f}s; outputs under {args.workdir.resolve()}")
    from realm_tf.serving.demo import DEFAULT_PORT

    summary.append(f"Ask it questions in a browser: python -m realm_tf.serving.demo --saved_model {args.export_dir}, "
                   f"then open http://127.0.0.1:{DEFAULT_PORT}/")
    return "\n".join(summary)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, lambda summary: summary, argv)


if __name__ == "__main__":
    sys.exit(main())

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
  examples  sentences with a salient span masked (beam_pipelines.make_pretraining_examples);
            in minilm the spans come from spaCy's NER where the ner extra is installed
            (pretrain.salient_span_detector: spacy), else from the rules, and it says so
  pretrain  REALM pre-training from the ICT retriever, the index refreshed in the
            background as it trains (realm_tf.train --task=pretrain, beam_pipelines.refresh)
  retrieval recall@{1,5,20} on the qa_dev questions of the newest index: dense, BM25, the
            in-graph lexical retriever and the hybrid of the two (realm_tf.evaluate_retrieval)
  finetune  open-QA fine-tuning on qa_train over that index, kept fixed, from the
            pre-trained query tower and reader (realm_tf.train --task=finetune); in minilm
            its beam is the hybrid ranking (finetune.retrieval), in tiny the dense one
  export    the fine-tuned model, its blocks and index as one SavedModel that answers
            questions, retrieving as fine-tuning did (hybrid: exact dense plus in-graph
            BM25; else exact dense), with stock TF Serving ops, in TF Serving's layout
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
import collections
import dataclasses
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
SPAN_DETECTOR = "pretrain.salient_span_detector"


@dataclasses.dataclass
class Workspace:
    """What the stages share: where each writes, the experiment config, and what one stage
    hands the next (the ICT embedder export, the QA export).

    Attributes:
      workdir: every stage's outputs go under it (blocks/, ict/, index/, examples/, ...).
      config_name, overrides: the config as named on the command line; `config` is it loaded.
        The background refresher, a process of its own, loads it again from these.
      corpus: documents as JSONL with id, title, text.
      eval_questions: qa_dev questions the evaluate stage answers, a fixed sample; 0: all.
      question: what the answer stage asks.
    """

    workdir: pathlib.Path
    config_name: str = "minilm"
    overrides: Sequence[str] = ()
    corpus: pathlib.Path = DEFAULT_CORPUS
    eval_questions: int = 300
    question: str = SAMPLE_QUESTION
    embedder_export: Optional[str] = None
    export_dir: Optional[str] = None

    def __post_init__(self):
        from realm_tf.configs import load_config

        self.workdir = pathlib.Path(self.workdir)
        self.config = load_config(self.config_name, self.overrides)

    def path(self, name: str) -> str:
        return str(self.workdir / name)


def _fetch_stage(ws: Workspace) -> List[str]:
    from realm_tf.checkpoints.fetch import fetch_weights, is_pinned_name

    names = sorted({path for path in (ws.config.retriever.init_checkpoint, ws.config.reader.init_checkpoint)
                    if path and is_pinned_name(path)})
    if not names:
        return [f"config {ws.config_name} names no registered pretrained weights: nothing to fetch"]
    return [f"{name}: verified in {fetch_weights(name)}" for name in names]


def _chunk_stage(ws: Workspace) -> List[str]:
    from beam_pipelines import chunk_corpus

    manifest = chunk_corpus.chunk_corpus([str(ws.corpus)], ws.path("blocks"), ws.config, overwrite=True)
    return chunk_corpus.summarize(manifest, ws.path("blocks")).splitlines()


def _ict_stage(ws: Workspace) -> List[str]:
    from realm_tf.training.runs import train_ict

    # The held-out recall would embed every block once more; the retrieval stage measures
    # recall on qa_dev from the index instead.
    result = train_ict(ws.config, ws.path("blocks"), ws.path("ict"), heldout_eval=False)
    ws.embedder_export = result["export"]
    trained = (f"loss {result['train']['loss']:.3f}" if "loss" in result["train"]
               else "no training steps: the pretrained towers as imported")
    return [f"step {result['step']}: {trained}", f"embedder exported to {result['export']}"]


def _index_stage(ws: Workspace) -> List[str]:
    from beam_pipelines import embed_and_index

    version = embed_and_index.embed_and_index(ws.path("blocks"), ws.embedder_export, ws.path("index"), ws.config)
    return embed_and_index.summarize(version).splitlines()


def _examples_stage(ws: Workspace) -> List[str]:
    from beam_pipelines import make_pretraining_examples
    from realm_tf.configs import load_config
    from realm_tf.features.spacy_spans import SpanModelError, check_installed

    config, notes = ws.config, []
    chosen = any(o.split("=", 1)[0].strip() == SPAN_DETECTOR for o in ws.overrides)
    if config.pretrain.salient_span_detector == "spacy" and not chosen:
        # The config's tagger where the ner extra is installed; said, not silent, where it is not
        # (an explicit --override asking for it still fails with the install command).
        try:
            check_installed()
        except SpanModelError as e:
            config = load_config(ws.config_name, [*ws.overrides, f"{SPAN_DETECTOR}=dates_and_entities"])
            notes = [f"note: {e}; masking with the rule-based detector (dates_and_entities) instead"]
    manifest = make_pretraining_examples.make_pretraining_examples(ws.path("blocks"), ws.path("examples"), config,
                                                                   overwrite=True)
    return notes + make_pretraining_examples.summarize(manifest, ws.path("examples")).splitlines()


def _pretrain_stage(ws: Workspace) -> List[str]:
    from beam_pipelines.refresh import start_background_refresher
    from realm_tf.artifacts.model_dir import ModelDir
    from realm_tf.training.runs import train_pretrain

    model_dir = ModelDir(ws.path("pretrain"))
    result = train_pretrain(
        ws.config, ws.path("blocks"), model_dir.path, ws.path("examples"), ws.path("index"), init_from=ws.path("ict"),
        start_refresher=lambda: start_background_refresher(model_dir.path, ws.path("blocks"), ws.path("index"),
                                                           ws.config_name, ws.overrides, model_dir.refresh_log))
    return [
        _trained(result, "masked-LM accuracy {mlm_accuracy:.3f}, retrieval utility {retrieval_utility:.4f}, "
                         "index staleness {index_staleness:.0f} steps"),
        f"retrieved from {len(result['index_versions_used'])} index version(s) as the refresher published them",
        f"TensorBoard: {model_dir.path}; refresher log: {model_dir.refresh_log}",
    ]


def _trained(result: dict, metrics_format: str) -> str:
    """The line that sums up a training run of `train_pretrain`/`train_finetune`: its last
    batch's loss and the metrics `metrics_format` names, or that it had nothing left to do."""
    metrics = result["train"]
    if not metrics:  # Resumed at its last step (a stage run again after its ledger missed the end).
        return f"step {result['step']}: already trained that far (its last checkpoint); no step run"
    return (f"step {result['step']} ({result['steps_per_second']:.2f} steps/s): loss {metrics['loss']:.3f}, "
            + metrics_format.format_map(collections.defaultdict(lambda: float("nan"), metrics)) + " (last batch)")


def _retrieval_stage(ws: Workspace) -> List[str]:
    from realm_tf.evaluation.retrieval_recall import evaluate_retrieval_recall, format_recall_table

    results = evaluate_retrieval_recall(str(QA_DIR / "qa_dev.jsonl"), ws.path("blocks"), ws.path("index"),
                                        output=ws.path("retrieval_recall.json"), retrieval="hybrid",
                                        hybrid=ws.config.index.hybrid)
    return format_recall_table(results).splitlines()


def _finetune_stage(ws: Workspace) -> List[str]:
    return finetune(ws, init_from=ws.path("pretrain"), index=ws.path("index"), model_dir=ws.path("finetune"))


def finetune(ws: Workspace, init_from: str, index: str, model_dir: str) -> List[str]:
    """Open-QA fine-tuning on qa_train over `index` (a version, or a root's newest), kept
    fixed, starting from the pretrain (or ICT) model_dir `init_from`; the finetune stage
    starts from pre-training, benchmarks.quality also from ICT alone."""
    from realm_tf.training.runs import train_finetune

    # XLA: measured 5.7 s a step against 8.7 s uncompiled (minilm, batch 8 over 5 blocks).
    result = train_finetune(ws.config, ws.path("blocks"), str(model_dir), str(QA_DIR / "qa_train.jsonl"), str(index),
                            init_from=str(init_from), jit_compile=True)
    return [
        _trained(result, "answer in the retriever's beam {answer_in_beam:.3f}, in the blocks read "
                         "{answer_in_candidates:.3f}, best span correct {span_accuracy:.3f}"),
        f"fixed index: {result['index_version']}",
    ]


def _evaluate_stage(ws: Workspace) -> List[str]:
    from realm_tf.inference.open_qa_evaluation import (evaluate_model_dir, evaluate_saved_model, format_metrics,
                                                       read_questions)

    questions = read_questions(str(QA_DIR / "qa_dev.jsonl"), sample=ws.eval_questions or None)
    # What is served is what is scored: the export, through its signature.
    served = evaluate_saved_model(ws.export_dir, questions)
    served.write_predictions(ws.path("predictions.jsonl"))
    served.write_metrics(ws.path("qa_dev_metrics.json"))
    baseline = evaluate_model_dir(ws.path("finetune"), questions, retrieval="null", progress=False).metrics
    return [
        f"the exported SavedModel: {format_metrics(served.metrics)}",
        f"no retrieval:       exact_match {baseline['exact_match']:.3f}, f1 {baseline['f1']:.3f} "
        "(the null document holds no span to extract)",
        f"predictions with evidence: {ws.path('predictions.jsonl')}",
    ]


def _export_stage(ws: Workspace) -> List[str]:
    from realm_tf.artifacts.serving_root import MODELS_CONFIG
    from realm_tf.export.qa_export import export_for_serving

    # The export retrieves as fine-tuning did: the reader is read over the blocks it learnt from.
    retrieval = "hybrid" if ws.config.finetune.retrieval == "hybrid" else "exact"
    ws.export_dir = export_for_serving(ws.path("finetune"), output_root=ws.path("saved_models"),
                                       model_name="realm_qa", retrieval=retrieval)
    return [f"SavedModel: {ws.export_dir}",
            f"TF Serving model config: {ws.workdir / 'saved_models' / MODELS_CONFIG}"]


def _answer_stage(ws: Workspace) -> List[str]:
    from realm_tf.serving.client import format_answers
    from realm_tf.serving.demo import SavedModelAnswerer

    return format_answers(SavedModelAnswerer(ws.export_dir).answer([ws.question]), snippet_chars=100).splitlines()


STAGES: List[Tuple[str, str, Callable]] = [
    ("fetch", "fetch the pretrained weights the config names, digest-checked", _fetch_stage),
    ("chunk", "chunk the corpus into blocks (Beam)", _chunk_stage),
    ("ict", "warm-start the retriever with the Inverse Cloze Task", _ict_stage),
    ("index", "embed the blocks and publish a ScaNN index version (Beam)", _index_stage),
    ("examples", "mask a salient span in every sentence (Beam)", _examples_stage),
    ("pretrain", "REALM pre-training, the index refreshed in the background", _pretrain_stage),
    ("retrieval", "retrieval recall on qa_dev of the newest index: dense, BM25, lexical and hybrid",
     _retrieval_stage),
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


def run_stages(ws: Workspace) -> str:
    """Runs every stage, printing progress; returns the summary."""
    ws.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = []
    for number, (name, title, stage) in enumerate(STAGES, start=1):
        print(f"[{number}/{len(STAGES)}] {name}: {title} ...", flush=True)
        stage_started = time.monotonic()
        lines = stage(ws)
        seconds = time.monotonic() - stage_started
        print(f"[{number}/{len(STAGES)}] {name}: done in {seconds:.1f}s", flush=True)
        report.append((name, seconds, lines))
    summary = ["\nSummary"]
    for name, seconds, lines in report:
        summary.append(f"- {name} ({seconds:.1f}s)")
        summary.extend(f"    {line}" for line in lines)
    summary.append(f"Total {time.monotonic() - started:.1f}s; outputs under {ws.workdir.resolve()}")
    from realm_tf.serving.demo import DEFAULT_PORT

    summary.append(f"Ask it questions in a browser: python -m realm_tf.serving.demo --saved_model {ws.export_dir}, "
                   f"then open http://127.0.0.1:{DEFAULT_PORT}/")
    return "\n".join(summary)


def workspace_of(argv: Optional[Sequence[str]] = None) -> Workspace:
    """The `Workspace` the command line describes (a bad config or override fails here)."""
    args = build_arg_parser().parse_args(argv)
    return Workspace(args.workdir, args.config, args.override, args.corpus, args.eval_questions, args.question)


def run(argv: Optional[Sequence[str]] = None) -> str:
    """The command line: every stage, in the workspace its flags describe; returns the summary."""
    return run_stages(workspace_of(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, lambda summary: summary, argv)


if __name__ == "__main__":
    sys.exit(main())

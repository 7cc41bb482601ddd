"""Evaluates a fine-tuned open-QA model: `python -m realm_tf.evaluate --model_dir=... --qa=...`.

    python -m realm_tf.evaluate --model_dir runs/quickstart/finetune \\
        --qa realm_tf/assets/squad_open/qa_dev.jsonl --output runs/quickstart/predictions.jsonl
    python -m realm_tf.evaluate --saved_model runs/quickstart/saved_models/realm_qa/1 \\
        --qa realm_tf/assets/squad_open/qa_dev.jsonl

Answers every question (retrieve the top-k blocks of the fixed index, read them, take
the best span) and reports exact match (the paper's normalization), F1 and retrieval
recall@k. The QA file may be squad_open or NQ-open JSONL, WebQuestions JSON or
CuratedTrec TSV (regular-expression answers); see realm_tf.evaluation.qa_data.

The config, the blocks and the index default to those the model was fine-tuned with
(<model_dir>/open_qa.json). --retrieval=bm25 reads the best BM25 matches of the
question's words among the blocks instead (realm_tf.retrieval.bm25_retrieval; every
block read weighs the same): the lexical baseline with the same reader.
--retrieval=null reads the null document only: the no-retrieval baseline.
--evidence_depth=20 retrieves 20 blocks per question and keeps them as evidence, so
recall@20 is reported while the reader still reads --top_k.

--saved_model evaluates a QA export (`python -m realm_tf.export`) instead of a model_dir:
the questions go through its signature as TF Serving would send them (serving_default,
or answer_with_options with --top_k / --max_answer_length), so the figures are those of
what is served. Its retrieval is the export's own (exact or ScaNN); the blocks directory
(default: the export's) only names each evidence block's passage, for recall@k.

The predictions file holds one JSON object per question: id, question, answers,
prediction, score, exact_match, f1 and the top blocks (block_id, doc_id, title, text,
retrieval_probability), best first.
"""

import argparse
import dataclasses
import json
import os
import random
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, positive_int, run_command

RUN_INFO = "open_qa.json"
RETRIEVALS = ("index", "bm25", "null")
RECALL_KS = (1, 5, 20)


def build_arg_parser() -> argparse.ArgumentParser:
    from realm_tf.evaluation.qa_data import FORMATS

    parser = argparse.ArgumentParser(prog="python -m realm_tf.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model_dir", help="a --task=finetune model_dir")
    model.add_argument("--saved_model", help="a QA export (python -m realm_tf.export), evaluated through its signature")
    parser.add_argument("--qa", required=True, help="questions with answers")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="format of --qa (default: by suffix and content)")
    parser.add_argument("--blocks_dir", help="chunked corpus (default: the one fine-tuning used)")
    parser.add_argument("--index", help="index version or root (default: the version fine-tuning used)")
    parser.add_argument("--retrieval", choices=RETRIEVALS, default="index",
                        help="index: top-k blocks of the index; bm25: top-k blocks by BM25 over the blocks' words; "
                        "null: the null document only (baseline)")
    parser.add_argument("--method", choices=("scann", "exact"), help="index search method (default: scann)")
    parser.add_argument("--top_k", type=positive_int, help="blocks read per question (default: finetune.top_k)")
    parser.add_argument("--evidence_depth", type=positive_int,
                        help="blocks retrieved and kept as evidence per question, for recall@k up to it; the "
                        "reader reads the first --top_k (default: --top_k)")
    parser.add_argument("--max_answer_length", type=positive_int,
                        help="longest answer in wordpieces (default: reader.max_span_length)")
    parser.add_argument("--limit", type=positive_int, help="evaluate the first N questions only")
    parser.add_argument("--sample", type=positive_int,
                        help="evaluate N questions drawn at random (seed 0, kept in file order) instead of all")
    parser.add_argument("--batch_size", type=positive_int, default=32, help="questions per batch (default: %(default)s)")
    parser.add_argument("--output", help="write the predictions here (JSONL)")
    parser.add_argument("--metrics_output", help="write the metrics here (JSON)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return add_verbose_flag(parser)


def read_run_info(model_dir: str) -> Dict[str, str]:
    """{"config", "blocks_dir", "index_version"} of a fine-tuning run."""
    from realm_tf.corpus.manifest import ManifestError

    path = os.path.join(model_dir, RUN_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing; is {model_dir!r} a --task=finetune model_dir?") from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON: {e}") from e


def load_predictor(model_dir: str, blocks_dir: Optional[str] = None, index: Optional[str] = None,
                   retrieval: str = "index", method: Optional[str] = None, top_k: Optional[int] = None,
                   max_answer_length: Optional[int] = None, evidence_depth: Optional[int] = None):
    """The `QaPredictor` of a fine-tuned model_dir, and the checkpoint it restored.

    `retrieval` is "index" (the fixed index, searched by `method`, "scann" by default),
    "bm25" or "null"; `index` and `method` apply to "index" only.
    """
    from realm_tf.configs import ConfigError, load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.features import Featurizer
    from realm_tf.inference.predictor import QaPredictor
    from realm_tf.retrieval.bm25_retrieval import Bm25Retrieval
    from realm_tf.retrieval.fixed_index import FixedIndex, NullRetrieval
    from realm_tf.tasks.finetune import build_open_qa_model, restore_finetuned

    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    if retrieval != "index" and (index or method):
        raise ConfigError(f"an index and its search method apply to --retrieval=index, not {retrieval}")
    info = read_run_info(model_dir)
    config = load_config(info["config"])
    top_k = top_k or config.finetune.top_k
    if evidence_depth is not None and evidence_depth < top_k:
        raise ConfigError(f"evidence_depth ({evidence_depth}) must be at least top_k ({top_k}): the blocks read are "
                          "part of the evidence")
    featurizer = Featurizer(config.features)
    model = build_open_qa_model(config, featurizer)
    checkpoint = restore_finetuned(model, model_dir)
    blocks_dir = blocks_dir or info["blocks_dir"]
    blocks = BlockStore(blocks_dir, featurizer)
    if retrieval == "null":
        searcher = NullRetrieval(config.retriever.projection_size)
    elif retrieval == "bm25":
        searcher = Bm25Retrieval(blocks, config.retriever.projection_size, name=blocks_dir)
    else:
        searcher = FixedIndex(index or info["index_version"], method=method or "scann")
    predictor = QaPredictor(model, featurizer, searcher, blocks, top_k, max_answer_length, evidence_depth)
    return predictor, checkpoint


def _saved_model_predictor(args):
    """The `SavedModelPredictor` of --saved_model; options that only a model_dir has are refused."""
    from realm_tf.configs import ConfigError
    from realm_tf.inference.saved_model_predictor import SavedModelPredictor

    given = [f"--{name}" for name in ("index", "method", "evidence_depth") if getattr(args, name) is not None]
    given += ["--retrieval"] if args.retrieval != "index" else []
    if given:
        raise ConfigError(f"{', '.join(given)}: not with --saved_model, which retrieves as the export was made "
                          "(export again to change it)")
    return SavedModelPredictor(args.saved_model, args.blocks_dir, args.top_k, args.max_answer_length)


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Evaluates; returns the metrics ({"exact_match", "f1", "recall@k", ..., "num_questions"})."""
    from realm_tf.evaluation.open_qa_metrics import score_prediction, score_predictions
    from realm_tf.evaluation.qa_data import read_qa

    args = build_arg_parser().parse_args(argv)
    examples = read_qa(args.qa, args.format)[:args.limit]
    if args.sample and args.sample < len(examples):
        # QA files come grouped by article: the first N would be one topic, a sample is all.
        keep = sorted(random.Random(0).sample(range(len(examples)), args.sample))
        examples = [examples[i] for i in keep]
    if args.saved_model:
        predictor = _saved_model_predictor(args)
        checkpoint = predictor.metadata["checkpoint"]
        retrieval = f"{args.saved_model} ({predictor.metadata['retrieval']} retrieval in the SavedModel)"
    else:
        predictor, checkpoint = load_predictor(args.model_dir, args.blocks_dir, args.index, args.retrieval,
                                               args.method, args.top_k, args.max_answer_length, args.evidence_depth)
        retrieval = predictor.retrieval.path
    predictions = predictor.predict([e.question for e in examples], batch_size=args.batch_size,
                                    progress=not args.no_progress)
    depth = max(predictor.top_k, args.evidence_depth or 0)
    ks = [k for k in RECALL_KS if k <= depth] or [depth]
    metrics = {**score_predictions(examples, predictions, ks), "retrieval": retrieval,
               "checkpoint": checkpoint, "top_k": predictor.top_k, "evidence_depth": depth}
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            for example, prediction in zip(examples, predictions):
                record = {"id": example.id, "question": example.question, "answers": list(example.answers),
                          "prediction": prediction.answer, "score": prediction.score,
                          **score_prediction(example, prediction),
                          "evidence": [dataclasses.asdict(e) for e in prediction.evidence]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    if args.metrics_output:
        with open(args.metrics_output, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def format_metrics(metrics: Dict) -> str:
    figures = ", ".join(f"{name} {metrics[name]:.3f}" for name in metrics
                        if name in ("exact_match", "f1") or name.startswith("recall@"))
    return f"{figures} ({metrics['num_questions']} questions; retrieval: {metrics['retrieval']})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, format_metrics, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Evaluates a fine-tuned open-QA model: `python -m realm_tf.evaluate --model_dir=... --qa=...`.

    python -m realm_tf.evaluate --model_dir runs/quickstart/finetune \\
        --qa realm_tf/assets/squad_open/qa_dev.jsonl --output runs/quickstart/predictions.jsonl

Answers every question (retrieve the top-k blocks of the fixed index, read them, take
the best span) and reports exact match (the paper's normalization), F1 and retrieval
recall@k. The QA file may be squad_open or NQ-open JSONL, WebQuestions JSON or
CuratedTrec TSV (regular-expression answers); see realm_tf.evaluation.qa_data.

The config, the blocks and the index default to those the model was fine-tuned with
(<model_dir>/open_qa.json). --retrieval=null reads the null document only: the
no-retrieval baseline.

The predictions file holds one JSON object per question: id, question, answers,
prediction, score, exact_match, f1 and the top blocks (block_id, doc_id, title, text,
probability), best first.
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

RUN_INFO = "open_qa.json"


def build_arg_parser() -> argparse.ArgumentParser:
    from realm_tf.evaluation.qa_data import FORMATS

    parser = argparse.ArgumentParser(prog="python -m realm_tf.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="a --task=finetune model_dir")
    parser.add_argument("--qa", required=True, help="questions with answers")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="format of --qa (default: by suffix and content)")
    parser.add_argument("--blocks_dir", help="chunked corpus (default: the one fine-tuning used)")
    parser.add_argument("--index", help="index version or root (default: the version fine-tuning used)")
    parser.add_argument("--retrieval", choices=("index", "null"), default="index",
                        help="index: top-k blocks of the index; null: the null document only (baseline)")
    parser.add_argument("--method", choices=("scann", "exact"), default="scann", help="index search method")
    parser.add_argument("--top_k", type=int, help="blocks read per question (default: finetune.top_k)")
    parser.add_argument("--max_answer_length", type=int, help="longest answer in wordpieces (default: reader.max_span_length)")
    parser.add_argument("--limit", type=int, help="evaluate the first N questions only")
    parser.add_argument("--batch_size", type=int, default=32, help="questions per batch (default: %(default)s)")
    parser.add_argument("--output", help="write the predictions here (JSONL)")
    parser.add_argument("--metrics_output", help="write the metrics here (JSON)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


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
                   retrieval: str = "index", method: str = "scann", top_k: Optional[int] = None,
                   max_answer_length: Optional[int] = None):
    """The `QaPredictor` of a fine-tuned model_dir, and the checkpoint it restored."""
    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.features import Featurizer
    from realm_tf.inference.predictor import QaPredictor
    from realm_tf.retrieval.fixed_index import FixedIndex, NullRetrieval
    from realm_tf.tasks.finetune import build_open_qa_model, restore_finetuned

    info = read_run_info(model_dir)
    config = load_config(info["config"])
    featurizer = Featurizer(config.features)
    model = build_open_qa_model(config, featurizer)
    checkpoint = restore_finetuned(model, model_dir)
    blocks = BlockStore(blocks_dir or info["blocks_dir"], featurizer)
    if retrieval == "null":
        searcher = NullRetrieval(config.retriever.projection_size)
    else:
        searcher = FixedIndex(index or info["index_version"], method=method)
    predictor = QaPredictor(model, featurizer, searcher, blocks, top_k or config.finetune.top_k, max_answer_length)
    return predictor, checkpoint


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Evaluates; returns the metrics ({"exact_match", "f1", "recall@k", ..., "num_questions"})."""
    from realm_tf.evaluation.open_qa_metrics import score_prediction, score_predictions
    from realm_tf.evaluation.qa_data import read_qa

    args = build_arg_parser().parse_args(argv)
    examples = read_qa(args.qa, args.format)[:args.limit]
    predictor, checkpoint = load_predictor(args.model_dir, args.blocks_dir, args.index, args.retrieval, args.method,
                                           args.top_k, args.max_answer_length)
    predictions = predictor.predict([e.question for e in examples], batch_size=args.batch_size,
                                    progress=not args.no_progress)
    ks = [k for k in (1, 5, 20) if k <= predictor.top_k] or [predictor.top_k]
    metrics = {**score_predictions(examples, predictions, ks), "retrieval": predictor.retrieval.path,
               "checkpoint": checkpoint, "top_k": predictor.top_k}
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
    from realm_tf.configs import ConfigError
    from realm_tf.corpus.manifest import ManifestError
    from realm_tf.evaluation.qa_data import QaDataError
    from realm_tf.retrieval.index_version import IndexVersionError

    from realm_tf.cli import run_command

    return run_command(run, format_metrics,
                       (QaDataError, ManifestError, IndexVersionError, ConfigError, FileNotFoundError), argv)


if __name__ == "__main__":
    sys.exit(main())

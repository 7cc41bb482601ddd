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
(the run info it wrote into the model_dir). --retrieval=bm25 reads the best BM25 matches of the
question's words among the blocks instead (realm_tf.retrieval.bm25_retrieval; every
block read weighs the same): the lexical baseline with the same reader.
--retrieval=hybrid reads the best blocks of the dense and the lexical ranking fused
(realm_tf.retrieval.hybrid_retrieval: BM25 over WordPiece ids, the index version's own
lexical index or one built from the blocks, fused as the config's index.hybrid says);
the reader weighs them by its own retrieval scores, as it does the index's.
--retrieval=lexical reads the lexical ranking alone, weighed the same way.
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
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, positive_int, run_command
from realm_tf.inference.open_qa_evaluation import RETRIEVALS, format_metrics


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
                        "lexical: the index's lexical ranking (BM25 over WordPiece ids) alone; "
                        "hybrid: the index's dense and lexical rankings fused (index.hybrid of the run's config); "
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


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    """Evaluates; returns the metrics ({"exact_match", "f1", "recall@k", ..., "num_questions"})."""
    from realm_tf.configs import ConfigError
    from realm_tf.inference.open_qa_evaluation import evaluate_model_dir, evaluate_saved_model, read_questions

    args = build_arg_parser().parse_args(argv)
    examples = read_questions(args.qa, args.format, args.limit, args.sample)
    progress = not args.no_progress
    if args.saved_model:
        given = [f"--{name}" for name in ("index", "method", "evidence_depth") if getattr(args, name) is not None]
        given += ["--retrieval"] if args.retrieval != "index" else []
        if given:
            raise ConfigError(f"{', '.join(given)}: not with --saved_model, which retrieves as the export was made "
                              "(export again to change it)")
        evaluation = evaluate_saved_model(args.saved_model, examples, args.blocks_dir, args.top_k,
                                          args.max_answer_length, args.batch_size, progress)
    else:
        evaluation = evaluate_model_dir(args.model_dir, examples, args.blocks_dir, args.index, args.retrieval,
                                        args.method, args.top_k, args.max_answer_length, args.evidence_depth,
                                        args.batch_size, progress)
    if args.output:
        evaluation.write_predictions(args.output)
    if args.metrics_output:
        evaluation.write_metrics(args.metrics_output)
    return evaluation.metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, format_metrics, argv)


if __name__ == "__main__":
    sys.exit(main())

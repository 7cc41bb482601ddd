"""Retrieval recall on QA with gold passages: `python -m realm_tf.evaluate_retrieval`.

    python -m realm_tf.evaluate_retrieval --qa realm_tf/assets/squad_open/qa_dev.jsonl \\
        --blocks_dir runs/quickstart/blocks --index runs/quickstart/index

Reports recall@{1,5,20} of the dense retriever (the index version's embedder export
embeds the questions; the Searcher retrieves) and, side by side, of BM25 (bm25s) over the
same blocks. --retrieval hybrid adds the in-graph lexical retriever (BM25 over WordPiece
ids: the index version's lexical index, or one built from the blocks) and the fusion of
it with the dense one (index.hybrid of --config), and how often the lexical ranking
agrees with bm25s's.
"""

import argparse
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.evaluation.retrieval_recall import evaluate_retrieval_recall, format_recall_table


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.evaluate_retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", required=True, help="JSONL of questions with gold_passage_id (squad_open format)")
    parser.add_argument("--blocks_dir", required=True, help="the chunked corpus the index was built from")
    parser.add_argument("--index", required=True, help="an index version, or an index root (its latest version)")
    parser.add_argument("--embedder_export", default=None,
                        help="query embedder (default: the export the index version was built with)")
    parser.add_argument("--method", choices=("scann", "exact"), default="scann", help="dense search method")
    parser.add_argument("--retrieval", choices=("dense", "hybrid"), default="dense",
                        help="dense: the dense retriever (and BM25 beside it); hybrid: also the in-graph lexical "
                        "retriever and its fusion with the dense one, as index.hybrid sets")
    parser.add_argument("--config", default="base",
                        help="config whose index.hybrid fuses (default: %(default)s); with --override KEY=VALUE")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="e.g. index.hybrid.fusion=interpolation (repeatable)")
    parser.add_argument("--block_weight", type=float, default=None,
                        help="for a version with sentence vectors: the weight w of a block's own score against its "
                        "best sentence's, in [0, 1] (default: the weight the version was built with)")
    parser.add_argument("--no_bm25", action="store_true", help="skip the BM25 baseline")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """`evaluate_retrieval_recall`'s figures."""
    from realm_tf.configs import load_config

    args = build_arg_parser().parse_args(argv)
    hybrid = load_config(args.config, args.override).index.hybrid
    return evaluate_retrieval_recall(args.qa, args.blocks_dir, args.index, args.embedder_export, args.method,
                                     bm25=not args.no_bm25, output=args.output, retrieval=args.retrieval,
                                     hybrid=hybrid, block_weight=args.block_weight)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, format_recall_table, argv)


if __name__ == "__main__":
    sys.exit(main())

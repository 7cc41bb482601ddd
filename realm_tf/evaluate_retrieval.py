"""Retrieval recall on QA with gold passages: `python -m realm_tf.evaluate_retrieval`.

    python -m realm_tf.evaluate_retrieval --qa realm_tf/assets/squad_open/qa_dev.jsonl \\
        --blocks_dir runs/quickstart/blocks --index runs/quickstart/index

Reports recall@{1,5,20} of the dense retriever (the index version's embedder export
embeds the questions; the Searcher retrieves) and, side by side, of BM25 over the same
blocks.
"""

import argparse
import json
import sys
from typing import Dict, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, run_command

KS = (1, 5, 20)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.evaluate_retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", required=True, help="JSONL of questions with gold_passage_id (squad_open format)")
    parser.add_argument("--blocks_dir", required=True, help="the chunked corpus the index was built from")
    parser.add_argument("--index", required=True, help="an index version, or an index root (its latest version)")
    parser.add_argument("--embedder_export", default=None,
                        help="query embedder (default: the export the index version was built with)")
    parser.add_argument("--method", choices=("scann", "exact"), default="scann", help="dense search method")
    parser.add_argument("--no_bm25", action="store_true", help="skip the BM25 baseline")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """{"dense": {"recall@k": ...}, "bm25": {...}, "num_questions": Q}."""
    import tensorflow as tf

    from realm_tf.corpus.block_records import BlockRecord
    from realm_tf.corpus.manifest import BlocksManifest
    from realm_tf.evaluation.qa_data import QaDataError, read_qa
    from realm_tf.evaluation.retrieval_recall import Bm25Retriever, recall_at_k
    from realm_tf.export.embedder_export import EmbedderExport
    from realm_tf.retrieval.searcher import Searcher

    args = build_arg_parser().parse_args(argv)
    examples = read_qa(args.qa, "squad_open")
    for example in examples:
        # Recall here is "the gold passage is among the top k"; a question without one cannot be scored.
        if example.gold_passage_id is None:
            raise QaDataError(f"{args.qa}:{example.line}: missing field 'gold_passage_id' (retrieval "
                              "recall needs every question's gold passage)")
    manifest = BlocksManifest.read(args.blocks_dir)
    blocks = [BlockRecord.from_bytes(raw) for raw in
              tf.data.TFRecordDataset(manifest.block_paths(args.blocks_dir)).as_numpy_iterator()]
    doc_of = {b.block_id: b.doc_id for b in blocks}
    searcher = Searcher.from_directory(args.index, method=args.method)
    export = EmbedderExport.load(args.embedder_export or searcher.index.manifest["metadata"]["embedder_export"])
    questions = [e.question for e in examples]
    gold = [e.gold_passage_id for e in examples]

    def as_docs(block_ids):
        return [[doc_of.get(int(i)) for i in row] for row in block_ids]

    dense_ids, _ = searcher.search(export.embed_query_texts(questions), k=max(KS))
    results = {"num_questions": len(examples), "dense": recall_at_k(as_docs(dense_ids), gold, KS)}
    if not args.no_bm25:
        results["bm25"] = recall_at_k(as_docs(Bm25Retriever(blocks).search(questions, max(KS))), gold, KS)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


def format_table(results: Dict) -> str:
    lines = [f"{'retriever':<10}" + "".join(f"{f'recall@{k}':>11}" for k in KS)]
    for name in ("bm25", "dense"):
        if name in results:
            lines.append(f"{name:<10}" + "".join(f"{results[name][f'recall@{k}']:>11.3f}" for k in KS))
    lines.append(f"({results['num_questions']} questions)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())

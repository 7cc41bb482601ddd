"""Dense, lexical and hybrid retrieval on qa_dev, and the fusion's tuning: `python -m benchmarks.hybrid_retrieval`.

    python -m benchmarks.hybrid_retrieval --blocks_dir runs/quickstart/blocks --index runs/quickstart/index

On an index version (the quickstart's: MiniLM towers) and its blocks, in one run:

  recall    recall@{1,5,20} on the questions (qa_dev: the only questions tuned on) of
            bm25s, the in-graph lexical retriever (BM25 over WordPiece ids,
            realm_tf.retrieval.lexical_index), dense (exact search) and every fusion of
            the sweep (reciprocal rank fusion at several constants, score interpolation
            at several dense weights), each from the same two top-`candidates` lists;
  best      the fusion of highest recall@5 (then recall@20), the one to record as
            index.hybrid's defaults;
  agreement how often the lexical ranking's first block and top 20 are bm25s's;
  speed     seconds to rank every question with bm25s on the host against the lexical
            retriever's TF ops, as a ratio, measured in turns;
  memory    the lexical index's bytes per block.
"""

import argparse
import dataclasses
import pathlib
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

DEFAULT_QA = pathlib.Path(realm_tf.__file__).parent / "assets" / "squad_open" / "qa_dev.jsonl"
RRF_CONSTANTS = (10.0, 30.0, 60.0, 100.0)
DENSE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hybrid_retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks_dir", required=True, help="the chunked corpus the index was built from")
    parser.add_argument("--index", required=True, help="an index version, or an index root (its newest)")
    parser.add_argument("--qa", default=str(DEFAULT_QA), help="squad_open questions (default: qa_dev)")
    parser.add_argument("--candidates", type=int, default=100, help="blocks taken from each retriever")
    parser.add_argument("--turns", type=int, default=3,
                        help="timed turns of each ranker, after one untimed (default: %(default)s)")
    parser.add_argument("--output", default="benchmarks/results/hybrid_retrieval.json")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    import tensorflow as tf

    from realm_tf.artifacts.index_version import IndexVersion, resolve_version
    from realm_tf.configs import HybridConfig
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.evaluation.qa_data import read_qa
    from realm_tf.evaluation.retrieval_recall import KS, ranking_agreement, recall_at_k
    from realm_tf.retrieval.bm25_retrieval import Bm25Retriever
    from realm_tf.retrieval.embedder_export import EmbedderExport
    from realm_tf.retrieval.hybrid_retrieval import HybridRetrieval

    args = build_arg_parser().parse_args(argv)
    examples = read_qa(args.qa, "squad_open")
    questions = [e.question for e in examples]
    gold = [e.gold_passage_id for e in examples]
    version = IndexVersion.load(resolve_version(args.index), verify=False)
    export = EmbedderExport.load(version.embedder_export)
    store = BlockStore(args.blocks_dir, export.featurizer)
    hybrid = HybridRetrieval(version.path, export.featurizer, HybridConfig(candidates=args.candidates), "exact",
                             store)

    def recall(block_ids) -> Dict[str, float]:
        return recall_at_k([[store.doc_ids[int(i)] for i in row] for row in block_ids], gold, KS)

    query_embeddings = export.embed_query_texts(questions)
    bm25 = Bm25Retriever.from_block_store(store)
    rankers = {"bm25s": lambda _: bm25.search(questions, max(KS)),
               "lexical": lambda _: hybrid.lexical.search(export.featurizer.tokenize(tf.constant(questions)),
                                                          max(KS))[0].numpy()}
    seconds, outputs = common.timed_in_turns(rankers, [None] * (args.turns + 1), warmup=1)
    bm25_ids, lexical_ids = outputs["bm25s"][0], outputs["lexical"][0]
    dense_ids, _ = hybrid.dense.search(query_embeddings, max(KS))

    fusions: List[Dict] = []
    for fusion in ([HybridConfig(fusion="rrf", rrf_constant=c) for c in RRF_CONSTANTS]
                   + [HybridConfig(fusion="interpolation", dense_weight=w) for w in DENSE_WEIGHTS]):
        hybrid.config = dataclasses.replace(fusion, candidates=args.candidates)
        figures = recall(hybrid.rank(query_embeddings, questions, max(KS)).ids)
        fusions.append({"fusion": fusion.fusion, "rrf_constant": fusion.rrf_constant,
                        "dense_weight": fusion.dense_weight, **figures})
    best = max(fusions, key=lambda f: (f["recall@5"], f["recall@20"]))
    lexical_index = hybrid.lexical_index
    results = {
        "command": common.command_line("benchmarks.hybrid_retrieval", argv),
        "machine": common.machine_info(),
        "index_version": hybrid.version.path,
        "lexical_index": "the version's" if hybrid.version.lexical_dir else "built from the blocks",
        "num_questions": len(questions),
        "num_blocks": hybrid.version.num_blocks,
        "candidates": hybrid.candidates,
        "recall": {"bm25s": recall(bm25_ids), "lexical": recall(lexical_ids), "dense": recall(dense_ids)},
        "fusions": fusions,
        "best": best,
        "lexical_vs_bm25s": ranking_agreement(lexical_ids, bm25_ids, max(KS)),
        "speed": {"bm25s_seconds": round(float(np.median(seconds["bm25s"])), 6),
                  "lexical_seconds": round(float(np.median(seconds["lexical"])), 6),
                  "lexical_speedup_over_bm25s": common.ratio(np.median(seconds["bm25s"]),
                                                             np.median(seconds["lexical"]))},
        "memory": {"lexical_bytes": lexical_index.nbytes, "postings": lexical_index.num_postings,
                   "bytes_per_block": round(lexical_index.nbytes / lexical_index.num_blocks, 1)},
    }
    common.write_results(pathlib.Path(args.output), results)
    for name, figures in results["recall"].items():
        print(f"{name:<24}" + "".join(f"{figures[f'recall@{k}']:>9.3f}" for k in KS))
    for f in fusions:
        label = f"rrf c={f['rrf_constant']:g}" if f["fusion"] == "rrf" else f"interpolation w={f['dense_weight']:g}"
        print(f"{label:<24}" + "".join(f"{f[f'recall@{k}']:>9.3f}" for k in KS))
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)

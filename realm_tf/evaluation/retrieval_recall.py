"""Recall@k of retrieval against gold passages, for the dense retriever and the BM25 baseline.

A question counts as recalled at k when one of its top-k blocks comes from its gold
passage (the block's `doc_id` equals `gold_passage_id`). `evaluate_retrieval_recall` is
what `python -m realm_tf.evaluate_retrieval` runs.
"""

import json
from typing import Dict, Optional, Sequence

import numpy as np

KS = (1, 5, 20)


def recall_at_k(retrieved_doc_ids: Sequence[Sequence[str]], gold_doc_ids: Sequence[str],
                ks: Sequence[int]) -> Dict[str, float]:
    """{"recall@k": fraction of questions whose gold document is among their first k retrieved}."""
    if len(retrieved_doc_ids) != len(gold_doc_ids) or not gold_doc_ids:
        raise ValueError(f"{len(retrieved_doc_ids)} retrieval lists for {len(gold_doc_ids)} questions")
    return {
        f"recall@{k}": float(np.mean([gold in retrieved[:k] for retrieved, gold in zip(retrieved_doc_ids, gold_doc_ids)]))
        for k in ks
    }


def evaluate_retrieval_recall(qa_path: str, blocks_dir: str, index: str, embedder_export: Optional[str] = None,
                              method: str = "scann", bm25: bool = True, output: Optional[str] = None) -> Dict:
    """Recall@{1,5,20} on squad_open questions of the dense retriever (`embedder_export`,
    by default the one the index version was built with, embeds the questions; the
    `Searcher` of `index`, a version or a root's newest, retrieves) and, with `bm25`, of
    BM25 over the same blocks. Writes the figures as JSON to `output` if given.

    Returns:
      {"dense": {"recall@k": ...}, "bm25": {...}, "num_questions": Q}.
    """
    import tensorflow as tf

    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.corpus.block_records import BlockRecord
    from realm_tf.evaluation.qa_data import QaDataError, read_qa
    from realm_tf.retrieval.bm25_retrieval import Bm25Retriever
    from realm_tf.retrieval.embedder_export import EmbedderExport
    from realm_tf.retrieval.searcher import Searcher

    examples = read_qa(qa_path, "squad_open")
    for example in examples:
        # Recall here is "the gold passage is among the top k"; a question without one cannot be scored.
        if example.gold_passage_id is None:
            raise QaDataError(f"{qa_path}:{example.line}: missing field 'gold_passage_id' (retrieval "
                              "recall needs every question's gold passage)")
    manifest = BlocksManifest.read(blocks_dir)
    blocks = [BlockRecord.from_bytes(raw) for raw in
              tf.data.TFRecordDataset(manifest.block_paths(blocks_dir)).as_numpy_iterator()]
    doc_of = {b.block_id: b.doc_id for b in blocks}
    searcher = Searcher.from_directory(index, method=method)
    export = EmbedderExport.load(embedder_export or searcher.index.embedder_export)
    questions = [e.question for e in examples]
    gold = [e.gold_passage_id for e in examples]

    def as_docs(block_ids):
        return [[doc_of.get(int(i)) for i in row] for row in block_ids]

    dense_ids, _ = searcher.search(export.embed_query_texts(questions), k=max(KS))
    results = {"num_questions": len(examples), "dense": recall_at_k(as_docs(dense_ids), gold, KS)}
    if bm25:
        results["bm25"] = recall_at_k(as_docs(Bm25Retriever(blocks).search(questions, max(KS))), gold, KS)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


def format_recall_table(results: Dict) -> str:
    """`evaluate_retrieval_recall`'s figures as a table, one row per retriever."""
    lines = [f"{'retriever':<10}" + "".join(f"{f'recall@{k}':>11}" for k in KS)]
    for name in ("bm25", "dense"):
        if name in results:
            lines.append(f"{name:<10}" + "".join(f"{results[name][f'recall@{k}']:>11.3f}" for k in KS))
    lines.append(f"({results['num_questions']} questions)")
    return "\n".join(lines)

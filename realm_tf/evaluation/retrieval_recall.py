"""Recall@k of retrieval against gold passages: dense, BM25 (bm25s), in-graph lexical and hybrid.

A question counts as recalled at k when one of its top-k blocks comes from its gold
passage (the block's `doc_id` equals `gold_passage_id`). `evaluate_retrieval_recall` is
what `python -m realm_tf.evaluate_retrieval` runs.
"""

import json
from typing import Dict, Optional, Sequence

import numpy as np

KS = (1, 5, 20)
RETRIEVALS = ("dense", "hybrid")


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
                              method: str = "scann", bm25: bool = True, output: Optional[str] = None,
                              retrieval: str = "dense", hybrid=None, block_weight: Optional[float] = None) -> Dict:
    """Recall@{1,5,20} on squad_open questions of the dense retriever (`embedder_export`,
    by default the one the index version was built with, embeds the questions; the
    `FixedIndex` of `index`, a version or a root's newest, retrieves, with its sentence
    vectors if it has them, weighed by `block_weight` if given) and, with `bm25`, of
    BM25 (bm25s) over the same blocks. With `retrieval` "hybrid", also of the in-graph
    lexical retriever (the version's lexical index, or one built from the blocks) and of
    the fusion of the two that `hybrid` (a `HybridConfig`, default its defaults) sets,
    and how often the lexical ranking agrees with bm25s's. Writes the figures as JSON to
    `output` if given.

    Returns:
      {"dense": {"recall@k": ...}, "bm25": {...}, "lexical": {...}, "hybrid": {...},
       "lexical_vs_bm25s": {"top1_agreement", "overlap@20"}, "num_questions": Q}.
    """
    import tensorflow as tf

    from realm_tf.configs import HybridConfig
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.evaluation.qa_data import QaDataError, read_qa
    from realm_tf.retrieval.bm25_retrieval import Bm25Retriever
    from realm_tf.retrieval.embedder_export import EmbedderExport
    from realm_tf.retrieval.hybrid_retrieval import HybridRetrieval
    from realm_tf.retrieval.fixed_index import FixedIndex

    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    examples = read_qa(qa_path, "squad_open")
    for example in examples:
        # Recall here is "the gold passage is among the top k"; a question without one cannot be scored.
        if example.gold_passage_id is None:
            raise QaDataError(f"{qa_path}:{example.line}: missing field 'gold_passage_id' (retrieval "
                              "recall needs every question's gold passage)")
    dense = FixedIndex(index, method=method, verify=True, block_weight=block_weight)
    export = EmbedderExport.load(embedder_export or dense.version.embedder_export)
    store = BlockStore(blocks_dir, export.featurizer)
    questions = [e.question for e in examples]
    gold = [e.gold_passage_id for e in examples]

    def as_docs(block_ids):
        return [[store.doc_ids[int(i)] for i in row] for row in block_ids]

    query_embeddings = export.embed_query_texts(questions)
    dense_ids, _ = dense.search(query_embeddings, max(KS))
    results = {"num_questions": len(examples), "dense": recall_at_k(as_docs(dense_ids), gold, KS)}
    bm25_ids = None
    if bm25:
        bm25_ids = Bm25Retriever.from_block_store(store).search(questions, max(KS))
        results["bm25"] = recall_at_k(as_docs(bm25_ids), gold, KS)
    if retrieval == "hybrid":
        hybrid = hybrid or HybridConfig()
        fused = HybridRetrieval(dense.path, export.featurizer, hybrid, method, store)
        lexical_ids, _ = fused.lexical.search(export.featurizer.tokenize(tf.constant(questions)), max(KS))
        lexical_ids = lexical_ids.numpy()
        results["lexical"] = recall_at_k(as_docs(lexical_ids), gold, KS)
        results["hybrid"] = recall_at_k(as_docs(fused.rank(query_embeddings, questions, max(KS)).ids), gold, KS)
        results["hybrid_config"] = {"fusion": hybrid.fusion, "dense_weight": hybrid.dense_weight,
                                    "rrf_constant": hybrid.rrf_constant, "candidates": fused.candidates}
        if bm25_ids is not None:
            results["lexical_vs_bm25s"] = ranking_agreement(lexical_ids, bm25_ids, max(KS))
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


def ranking_agreement(ids_a: np.ndarray, ids_b: np.ndarray, k: int) -> Dict[str, float]:
    """How two rankings of the same questions (int [Q, >= k] each) agree: the share of
    questions with the same first block, and the mean share of their top k they share."""
    ids_a, ids_b = np.asarray(ids_a)[:, :k], np.asarray(ids_b)[:, :k]
    return {"top1_agreement": float(np.mean(ids_a[:, 0] == ids_b[:, 0])),
            f"overlap@{k}": float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ids_a, ids_b)]))}


def format_recall_table(results: Dict) -> str:
    """`evaluate_retrieval_recall`'s figures as a table, one row per retriever."""
    lines = [f"{'retriever':<10}" + "".join(f"{f'recall@{k}':>11}" for k in KS)]
    for name in ("bm25", "lexical", "dense", "hybrid"):
        if name in results:
            lines.append(f"{name:<10}" + "".join(f"{results[name][f'recall@{k}']:>11.3f}" for k in KS))
    if "hybrid_config" in results:
        c = results["hybrid_config"]
        lines.append(f"hybrid: {c['fusion']} fusion (dense weight {c['dense_weight']}, rrf constant "
                     f"{c['rrf_constant']}) of each retriever's top {c['candidates']}")
    if "lexical_vs_bm25s" in results:
        agreement = results["lexical_vs_bm25s"]
        lines.append("lexical against bm25s: " + ", ".join(f"{name} {value:.3f}" for name, value in agreement.items()))
    lines.append(f"({results['num_questions']} questions)")
    return "\n".join(lines)

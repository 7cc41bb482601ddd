"""What vectors of each block's sentences, beside the block's own, buy dense retrieval:
`python -m benchmarks.sentence_vectors`.

    python -m benchmarks.sentence_vectors --blocks_dir DIR --index DIR [--qa qa_dev.jsonl]
        [--block_weights 1,0.7,0.5,0.3,0] [--output benchmarks/results/sentence_vectors.json]

A design measurement, before any index holds sentence vectors. Every block of the index
version is split into sentences (the splitter the blocks were chunked with, from their
manifest), and each sentence, after the block's title, is embedded by the version's own
embedder export's block tower as if it were a block; each question by its query tower.
A block then scores

    w * q.block + (1 - w) * max over the block's sentences s of q.s

for each w of --block_weights (w = 1 is the index's own score, block vectors alone), over
every block (exact search), and recall@1/5/20 of the gold passage is reported per w, with
BM25's over the same blocks for reference. Nothing is trained: the towers are the
version's. qa_dev is the tuning set, so a w chosen here is a tuned figure.
"""

import argparse
import pathlib
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "sentence_vectors.json"
QA_DEV = pathlib.Path(realm_tf.__file__).resolve().parent / "assets" / "squad_open" / "qa_dev.jsonl"
KS = (1, 5, 20)
BATCH = 64


def split_blocks(texts: Sequence[str], splitter) -> Tuple[List[str], np.ndarray]:
    """The sentences of every block, in block order: (sentences [S], owner int64 [S], each
    sentence's block row). A block whose splitter finds nothing keeps its whole text as one."""
    sentences, owner = [], []
    for row, text in enumerate(texts):
        spans = [(begin, end) for begin, end in splitter(text) if text[begin:end].strip()] or [(0, len(text))]
        sentences += [text[begin:end] for begin, end in spans]
        owner += [row] * len(spans)
    return sentences, np.asarray(owner, np.int64)


def sentence_max(scores: np.ndarray, owner: np.ndarray, num_blocks: int) -> np.ndarray:
    """[Q, S] question-sentence scores -> [Q, num_blocks]: each block's best sentence.

    owner: int [S], non-decreasing, every block 0..num_blocks-1 present.
    """
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    if len(starts) != num_blocks or owner[starts].tolist() != list(range(num_blocks)):
        raise ValueError("owner must list the blocks 0..N-1 in order, each at least once")
    return np.maximum.reduceat(scores, starts, axis=1)


def ranked_docs(scores: np.ndarray, doc_ids: np.ndarray, k: int) -> List[List[str]]:
    """[Q, N] scores -> each question's top-k blocks' document ids, best first."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return doc_ids[top].tolist()


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sentence_vectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks_dir", required=True, help="the chunked blocks the index was built from")
    parser.add_argument("--index", required=True, help="an index version, or a root (its newest version)")
    parser.add_argument("--qa", type=pathlib.Path, default=QA_DEV, help="questions with gold passages (default: qa_dev)")
    parser.add_argument("--block_weights", default="1,0.7,0.5,0.3,0", metavar="W[,W]",
                        help="weights w of the block vector against its best sentence (default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        weights = [float(w) for w in args.block_weights.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--block_weights must be numbers, got {args.block_weights!r}")
    if not weights or not all(0 <= w <= 1 for w in weights):
        parser.error(f"--block_weights must be in [0, 1], got {args.block_weights!r}")

    from tqdm import tqdm

    from realm_tf.artifacts.index_version import IndexVersion, resolve_version
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.evaluation.qa_data import read_qa
    from realm_tf.evaluation.retrieval_recall import recall_at_k
    from realm_tf.features.sentences import get_sentence_splitter
    from realm_tf.retrieval.bm25_retrieval import Bm25Retriever
    from realm_tf.retrieval.embedder_export import EmbedderExport

    machine = common.machine_info()
    path = resolve_version(args.index)
    version = IndexVersion.load(path, verify=False)
    export = EmbedderExport.load(version.embedder_export)
    store = BlockStore(args.blocks_dir, export.featurizer)
    block_ids = np.asarray(version.block_ids)
    doc_ids = np.array([store.doc_ids[int(i)] for i in block_ids], object)
    splitter_name = BlocksManifest.read(args.blocks_dir).sentence_splitter
    sentences, owner = split_blocks([store.texts[int(i)] for i in block_ids], get_sentence_splitter(splitter_name))
    examples = read_qa(str(args.qa), "squad_open")
    questions, gold = [e.question for e in examples], [e.gold_passage_id for e in examples]

    started = time.perf_counter()
    titles = [store.titles[int(block_ids[row])] for row in owner]
    sentence_embeddings = np.concatenate([
        export.embed_block_tokens(titles[i:i + BATCH], export.featurizer.tokenize(sentences[i:i + BATCH]))
        for i in tqdm(range(0, len(sentences), BATCH), desc="embedding sentences", unit=" batches")])
    embed_seconds = time.perf_counter() - started
    queries = export.embed_query_texts(questions)
    block_scores = queries @ np.asarray(version.embeddings, np.float32).T
    best_sentence = sentence_max(queries @ sentence_embeddings.T, owner, len(block_ids))
    dense = {str(w): recall_at_k(ranked_docs(w * block_scores + (1 - w) * best_sentence, doc_ids, max(KS)), gold, KS)
             for w in weights}
    bm25 = Bm25Retriever.from_block_store(store).search(questions, max(KS))
    results = {
        "benchmark": "sentence_vectors",
        "command": common.command_line("benchmarks.sentence_vectors", argv),
        "index_version": path, "embedder_export": version.embedder_export, "qa": str(args.qa),
        "num_questions": len(questions), "num_blocks": len(block_ids), "num_sentences": len(sentences),
        "sentence_splitter": splitter_name,
        "sentences_per_second": round(len(sentences) / embed_seconds, 1),
        "score": "w * q.block + (1 - w) * max over the block's sentences of q.sentence, exact over every block",
        "recall_by_block_weight": dense,
        "bm25": recall_at_k([[store.doc_ids[int(i)] for i in row] for row in bm25], gold, KS),
        "machine": machine,
    }
    for w, recall in dense.items():
        print(f"w={w}: " + ", ".join(f"{name} {value:.3f}" for name, value in recall.items()), flush=True)
    print("bm25: " + ", ".join(f"{name} {value:.3f}" for name, value in results["bm25"].items()), flush=True)
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
    sys.exit(0)

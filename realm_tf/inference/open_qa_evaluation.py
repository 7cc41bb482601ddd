"""Open-QA evaluation: answer questions with a predictor and score them as the papers do.

`evaluate_model_dir` answers from a fine-tuned model_dir (host-side retrieval: the fixed
index, BM25 or the null document); `evaluate_saved_model` through a QA export's
signature, as TF Serving would. Both return an `OpenQaEvaluation`: exact match (the
paper's normalization), F1 and recall@k, and every prediction with its evidence.
`python -m realm_tf.evaluate` is the command line over them.
"""

import dataclasses
import json
import random
from typing import Dict, List, Optional, Sequence, Tuple

from realm_tf.evaluation.open_qa_metrics import score_prediction, score_predictions
from realm_tf.evaluation.qa_data import QaExample, read_qa

RETRIEVALS = ("index", "bm25", "lexical", "hybrid", "null")
RECALL_KS = (1, 5, 20)


@dataclasses.dataclass
class OpenQaEvaluation:
    """What one evaluation found.

    Attributes:
      metrics: {"exact_match", "f1", "recall@k" for each k up to the evidence depth,
        "num_questions", "retrieval" (what retrieved), "checkpoint", "top_k", "evidence_depth"}.
      examples: the questions answered, in order.
      predictions: their `Prediction`s, one per example.
    """

    metrics: Dict
    examples: List[QaExample]
    predictions: List

    def write_predictions(self, path: str) -> None:
        """One JSON object per question: id, question, answers, prediction, score,
        exact_match, f1 and the evidence (block_id, doc_id, title, text, retrieval_probability)."""
        with open(path, "w", encoding="utf-8") as f:
            for example, prediction in zip(self.examples, self.predictions):
                record = {"id": example.id, "question": example.question, "answers": list(example.answers),
                          "prediction": prediction.answer, "score": prediction.score,
                          **score_prediction(example, prediction),
                          "evidence": [dataclasses.asdict(e) for e in prediction.evidence]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def write_metrics(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.metrics, f, indent=2)


def read_questions(qa_path: str, qa_format: str = "auto", limit: Optional[int] = None,
                   sample: Optional[int] = None) -> List[QaExample]:
    """The questions of `qa_path`: the first `limit`, then `sample` of them drawn at random
    (seed 0, kept in file order)."""
    examples = read_qa(qa_path, qa_format)[:limit]
    if sample and sample < len(examples):
        # QA files come grouped by article: the first N would be one topic, a sample is all.
        keep = sorted(random.Random(0).sample(range(len(examples)), sample))
        examples = [examples[i] for i in keep]
    return examples


def load_predictor(model_dir: str, blocks_dir: Optional[str] = None, index: Optional[str] = None,
                   retrieval: str = "index", method: Optional[str] = None, top_k: Optional[int] = None,
                   max_answer_length: Optional[int] = None, evidence_depth: Optional[int] = None) -> Tuple:
    """The `QaPredictor` of a fine-tuned model_dir, and the checkpoint it restored.

    `retrieval` is "index" (the fixed index, searched by `method`, "scann" by default),
    "bm25", "lexical" (the index version's lexical index alone), "hybrid" (the index and
    its lexical index, fused as the config's `index.hybrid` says) or "null"; `index`
    applies to "index", "lexical" and "hybrid", `method` to "index" and "hybrid".
    The config, the blocks and the index default to the run's (`ModelDir.read_run_info`).
    """
    from realm_tf.artifacts.model_dir import ModelDir
    from realm_tf.configs import ConfigError, load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.features import Featurizer
    from realm_tf.inference.predictor import QaPredictor
    from realm_tf.retrieval.bm25_retrieval import Bm25Retrieval
    from realm_tf.retrieval.fixed_index import FixedIndex, NullRetrieval
    from realm_tf.retrieval.hybrid_retrieval import HybridRetrieval
    from realm_tf.tasks.finetune import build_open_qa_model, restore_finetuned

    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    if (retrieval not in ("index", "lexical", "hybrid") and index) or (retrieval not in ("index", "hybrid") and method):
        raise ConfigError(f"{'an index' if index else 'a search method'} does not apply to --retrieval={retrieval}")
    info = ModelDir(model_dir).read_run_info()
    config = load_config(info.config)
    top_k = top_k or config.finetune.top_k
    if evidence_depth is not None and evidence_depth < top_k:
        raise ConfigError(f"evidence_depth ({evidence_depth}) must be at least top_k ({top_k}): the blocks read are "
                          "part of the evidence")
    featurizer = Featurizer(config.features)
    model = build_open_qa_model(config, featurizer)
    checkpoint = restore_finetuned(model, model_dir)
    blocks_dir = blocks_dir or info.blocks_dir
    blocks = BlockStore(blocks_dir, featurizer)
    if retrieval == "null":
        searcher = NullRetrieval(config.retriever.projection_size)
    elif retrieval == "bm25":
        searcher = Bm25Retrieval(blocks, config.retriever.projection_size, name=blocks_dir)
    elif retrieval in ("lexical", "hybrid"):
        searcher = HybridRetrieval(index or info.index_version, featurizer, config.index.hybrid, method or "scann",
                                   blocks, lexical_only=retrieval == "lexical")
    else:
        searcher = FixedIndex(index or info.index_version, method=method or "scann")
    predictor = QaPredictor(model, featurizer, searcher, blocks, top_k, max_answer_length, evidence_depth)
    return predictor, checkpoint


def evaluate_predictor(predictor, examples: Sequence[QaExample], retrieval: str, checkpoint: str,
                       evidence_depth: Optional[int] = None, batch_size: int = 32,
                       progress: bool = True) -> OpenQaEvaluation:
    """Answers `examples` with `predictor` (a `QaPredictor` or `SavedModelPredictor`) and
    scores them; recall@k is reported for the `RECALL_KS` up to the evidence depth.
    `retrieval` and `checkpoint` describe what answered, for the metrics."""
    predictions = predictor.predict([e.question for e in examples], batch_size=batch_size, progress=progress)
    depth = max(predictor.top_k, evidence_depth or 0)
    ks = [k for k in RECALL_KS if k <= depth] or [depth]
    metrics = {**score_predictions(examples, predictions, ks), "retrieval": retrieval,
               "checkpoint": checkpoint, "top_k": predictor.top_k, "evidence_depth": depth}
    return OpenQaEvaluation(metrics, list(examples), predictions)


def evaluate_model_dir(model_dir: str, examples: Sequence[QaExample], blocks_dir: Optional[str] = None,
                       index: Optional[str] = None, retrieval: str = "index", method: Optional[str] = None,
                       top_k: Optional[int] = None, max_answer_length: Optional[int] = None,
                       evidence_depth: Optional[int] = None, batch_size: int = 32,
                       progress: bool = True) -> OpenQaEvaluation:
    """`evaluate_predictor` with `load_predictor(model_dir, ...)`'s predictor."""
    predictor, checkpoint = load_predictor(model_dir, blocks_dir, index, retrieval, method, top_k,
                                           max_answer_length, evidence_depth)
    return evaluate_predictor(predictor, examples, predictor.retrieval.path, checkpoint, evidence_depth,
                              batch_size, progress)


def retrieval_recall_of_model_dir(model_dir: str, examples: Sequence[QaExample], retrieval: str = "index",
                                  depth: int = max(RECALL_KS), batch_size: int = 32,
                                  index: Optional[str] = None) -> Dict:
    """recall@k (k in `RECALL_KS` up to `depth`) of a fine-tuned model_dir's retrieval
    alone: its own query tower and `retrieval` over `index` (as `load_predictor`'s; the
    run's index by default), no reader run. Counted as `evaluate_model_dir` counts it,
    for questions with gold passages."""
    from realm_tf.evaluation.retrieval_recall import recall_at_k

    if any(e.gold_passage_id is None for e in examples):
        raise ValueError("retrieval recall here needs every question's gold_passage_id")
    predictor, checkpoint = load_predictor(model_dir, index=index, retrieval=retrieval, evidence_depth=depth)
    ranked = []
    questions = [e.question for e in examples]
    for start in range(0, len(questions), batch_size):
        ids = predictor.retrieve(questions[start:start + batch_size], depth)[0]
        ranked += [[predictor.blocks.doc_ids[int(i)] for i in row] for row in ids]
    ks = [k for k in RECALL_KS if k <= depth] or [depth]
    return {**recall_at_k(ranked, [e.gold_passage_id for e in examples], ks), "num_questions": len(examples),
            "retrieval": predictor.retrieval.path, "checkpoint": checkpoint}


def evaluate_saved_model(export_dir: str, examples: Sequence[QaExample], blocks_dir: Optional[str] = None,
                         top_k: Optional[int] = None, max_answer_length: Optional[int] = None,
                         batch_size: int = 32, progress: bool = True) -> OpenQaEvaluation:
    """`evaluate_predictor` through a QA export's signature (`SavedModelPredictor`): its
    retrieval is the export's own; `blocks_dir` (default the export's) only names each
    evidence block's passage, for recall@k."""
    from realm_tf.inference.saved_model_predictor import SavedModelPredictor

    predictor = SavedModelPredictor(export_dir, blocks_dir, top_k, max_answer_length)
    retrieval = f"{export_dir} ({predictor.info.retrieval} retrieval in the SavedModel)"
    return evaluate_predictor(predictor, examples, retrieval, predictor.info.checkpoint, None, batch_size, progress)


def format_metrics(metrics: Dict) -> str:
    """One line: exact match, F1 and recall@k, the question count and what retrieved."""
    figures = ", ".join(f"{name} {metrics[name]:.3f}" for name in metrics
                        if name in ("exact_match", "f1") or name.startswith("recall@"))
    return f"{figures} ({metrics['num_questions']} questions; retrieval: {metrics['retrieval']})"

"""Scores of open-QA predictions: exact match, F1 and retrieval recall@k.

Recall@k counts a question when one of its first k retrieved blocks is evidence: a
block of its gold passage where the data names one (squad_open), otherwise a block
whose text contains an answer (ORQA's "answer recall", for NQ, WebQuestions and
CuratedTrec).
"""

from typing import Dict, List, Sequence

import numpy as np

from realm_tf.evaluation.answer_metrics import answer_in_text, exact_match, f1_score, regex_match
from realm_tf.evaluation.qa_data import QaExample


def score_prediction(example: QaExample, prediction) -> Dict[str, float]:
    """{"exact_match", "f1"} of one `Prediction`; F1 is exact match for regex answers."""
    if example.answers_are_regex:
        em = float(regex_match(prediction.answer, example.answers)) if prediction.answer else 0.0
        return {"exact_match": em, "f1": em}
    return {"exact_match": float(exact_match(prediction.answer, example.answers)),
            "f1": f1_score(prediction.answer, example.answers)}


def retrieval_hits(example: QaExample, prediction) -> List[bool]:
    """Whether each retrieved block (best first) is evidence for the question."""
    if example.gold_passage_id is not None:
        return [e.doc_id == example.gold_passage_id for e in prediction.evidence]
    return [bool(e.text) and answer_in_text(e.text, example.answers, example.answers_are_regex)
            for e in prediction.evidence]


def score_predictions(examples: Sequence[QaExample], predictions: Sequence, ks: Sequence[int]) -> Dict[str, float]:
    """Means over the questions: exact_match, f1, recall@k for each k, and the count."""
    if len(examples) != len(predictions) or not examples:
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} questions")
    scores = [score_prediction(e, p) for e, p in zip(examples, predictions)]
    hits = [retrieval_hits(e, p) for e, p in zip(examples, predictions)]
    result = {name: float(np.mean([s[name] for s in scores])) for name in ("exact_match", "f1")}
    for k in ks:
        result[f"recall@{k}"] = float(np.mean([any(h[:k]) for h in hits]))
    result["num_questions"] = len(examples)
    return result

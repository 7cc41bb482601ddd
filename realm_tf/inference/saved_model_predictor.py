"""`SavedModelPredictor`: questions answered by a QA export, as TF Serving would answer them.

`QaPredictor` answers from a model_dir with host-side retrieval; this one calls the
exported SavedModel's signature (`serving_default`, or `answer_with_options` when k or
the answer length is set), so that what is evaluated is what is served: the in-graph
tokenizer, retrieval and span decoding included. Its `Prediction`s are `QaPredictor`'s,
so the same metrics and predictions file apply. The export returns block ids, titles and
texts; the passage (doc_id) of each block, which recall@k on squad_open needs, is read
from the blocks directory the export was made from.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import ManifestError
from realm_tf.artifacts.qa_export import QaExportError, load_qa_export
from realm_tf.corpus.block_store import read_doc_ids
from realm_tf.inference.predictor import Evidence, Prediction, predict_in_batches


class SavedModelPredictor:
    """Answers questions in batches with a QA export.

    Args:
      export_dir: a QA export (`python -m realm_tf.export`; a version directory).
      blocks_dir: the chunked corpus whose doc ids name each block's passage (default:
        the one the export was made from, as its metadata records).
      top_k: blocks read per question (default: the export's).
      max_answer_length: longest answer in wordpieces (default: the export's).

    Attributes:
      info: the export's record (`QaExportInfo`).
      top_k: blocks read (and returned as evidence) per question.
    """

    def __init__(self, export_dir: str, blocks_dir: Optional[str] = None, top_k: Optional[int] = None,
                 max_answer_length: Optional[int] = None):
        self.info, loaded = load_qa_export(export_dir)
        blocks_dir = blocks_dir or self.info.blocks_dir
        try:
            self._doc_ids: Dict[int, str] = read_doc_ids(blocks_dir)
        except ManifestError as e:
            raise QaExportError(f"{e} (the blocks the export {export_dir} was made from, for the evidence's "
                                "passages; pass the blocks directory if they moved)") from None
        self.top_k = top_k or self.info.top_k
        self.max_answer_length = max_answer_length or self.info.max_answer_length
        if top_k is None and max_answer_length is None:
            self._answer = loaded.signatures["serving_default"]
        else:
            options = loaded.signatures["answer_with_options"]
            k, length = tf.constant(self.top_k), tf.constant(self.max_answer_length)
            self._answer = lambda questions: options(questions=questions, k=k, max_answer_length=length)
        self._loaded = loaded  # The signatures' variables live as long as it does.

    def predict(self, questions: Sequence[str], batch_size: int = 32, progress: bool = False) -> List[Prediction]:
        return predict_in_batches(self._predict_batch, questions, batch_size, progress, "SavedModelPredictor")

    def outputs(self, questions: Sequence[str]) -> Dict[str, np.ndarray]:
        """The export's outputs (`realm_tf.export.qa_export.OUTPUTS`) for `questions`, as numpy arrays."""
        return {name: value.numpy() for name, value in self._answer(questions=tf.constant(questions)).items()}

    def _predict_batch(self, questions: List[str]) -> List[Prediction]:
        outputs = self.outputs(questions)
        text = lambda value: value.decode("utf-8")  # noqa: E731
        predictions = []
        for row, question in enumerate(questions):
            evidence = [Evidence(int(block_id), self._doc_ids.get(int(block_id), ""), text(title), text(body),
                                 float(probability))
                        for block_id, title, body, probability in zip(
                            outputs["block_ids"][row], outputs["titles"][row], outputs["texts"][row],
                            outputs["probabilities"][row])]
            predictions.append(Prediction(question, text(outputs["answer"][row]), float(outputs["score"][row]),
                                          int(outputs["answer_block_id"][row]), evidence))
        return predictions

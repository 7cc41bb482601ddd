"""`TwoPartPredictor`: questions answered by a two-part deployment, the blocks looked up between its parts.

A QA export holds every block's text, so the server that loads it holds them all in
memory. A two-part deployment (`python -m realm_tf.export --parts two`) splits it:

  retriever SavedModel   questions -> the k best blocks' ids and index rows
                         (`realm_tf.export.qa_export.RETRIEVER_OUTPUTS`): the query tower
                         and the index (embeddings, ids, ScaNN's tree and codes)
  block lookup           block ids -> titles and texts, from the block store's
                         memory-mapped files (`realm_tf.corpus.block_store`): O(1) a
                         block, resident only what is read
  reader SavedModel      questions, the texts and rows -> answers (`READER_OUTPUTS`): the
                         model alone, the same size whatever the corpus

This class is the lookup and the glue, in one process: it calls each part's signature as
TF Serving would serve it (two models of one server, or of two), and returns what the
whole export returns (`OUTPUTS`), so the same predictions, metrics and demo apply.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import ManifestError
from realm_tf.artifacts.qa_export import QaExportError, QaExportInfo, load_qa_export
from realm_tf.corpus.block_store import BlockStore
from realm_tf.export.qa_export import joined_outputs
from realm_tf.inference.saved_model_predictor import SavedModelPredictor


class TwoPartPredictor(SavedModelPredictor):
    """Answers questions in batches with a retriever part, a block lookup and a reader part.

    Args:
      retriever_dir, reader_dir: the two parts (`export_two_parts`), made from one model.
      blocks_dir: the chunked corpus the blocks' texts come from (default: the one the
        parts were made from, as their records say).
      top_k: blocks read per question (default: the parts').
      max_answer_length: longest answer in wordpieces (default: the parts').

    Attributes:
      info: the retriever's record (`QaExportInfo`); reader_info: the reader's.
      blocks_dir, blocks: the chunked corpus and its `BlockStore`, the texts read from.
      top_k: blocks read (and returned as evidence) per question.
    """

    def __init__(self, retriever_dir: str, reader_dir: str, blocks_dir: Optional[str] = None,
                 top_k: Optional[int] = None, max_answer_length: Optional[int] = None):
        self.info, self.reader_info = QaExportInfo.read(retriever_dir), QaExportInfo.read(reader_dir)
        for path, info, part in ((retriever_dir, self.info, "retriever"), (reader_dir, self.reader_info, "reader")):
            if info.part != part:
                raise QaExportError(f"{path}: a {info.part!r} export, not the {part} part of a two-part deployment "
                                    "(python -m realm_tf.export --parts two)")
        if self.info.checkpoint != self.reader_info.checkpoint:
            raise QaExportError(f"{retriever_dir} was made from {self.info.checkpoint}, but {reader_dir} from "
                                f"{self.reader_info.checkpoint}: the reader scores blocks with its own query tower, "
                                "so both parts must come from one model")
        _, retriever = load_qa_export(retriever_dir)
        _, reader = load_qa_export(reader_dir)
        self.blocks_dir = blocks_dir = blocks_dir or self.info.blocks_dir
        try:
            self.blocks = BlockStore(blocks_dir)
        except ManifestError as e:
            raise QaExportError(f"{e} (the blocks the parts {retriever_dir} and {reader_dir} were made from, for the "
                                "texts; pass the blocks directory if they moved)") from None
        self._doc_ids = self.blocks.doc_ids
        self.top_k = top_k or self.info.top_k
        self.max_answer_length = max_answer_length or self.info.max_answer_length
        if top_k is None:
            self._retrieve = retriever.signatures["serving_default"]
        else:
            options, k = retriever.signatures["retrieve_with_options"], tf.constant(self.top_k)
            self._retrieve = lambda questions: options(questions=questions, k=k)
        if max_answer_length is None:
            self._read = reader.signatures["serving_default"]
        else:
            read, length = reader.signatures["read_with_options"], tf.constant(self.max_answer_length)
            self._read = lambda **inputs: read(**inputs, max_answer_length=length)
        self._loaded = (retriever, reader)  # The signatures' variables live as long as they do.

    def lookup(self, block_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The titles and texts (UTF-8 bytes, object arrays shaped as `block_ids`) of `block_ids`
        (int64 [B, K]); QaExportError names the first id the blocks directory lacks."""
        arrays = self.blocks.arrays
        try:
            rows = arrays.rows_of(block_ids.reshape(-1))
        except KeyError as e:
            raise QaExportError(f"block {e.args[0]} retrieved but not in {self.blocks_dir}: were the "
                                "parts made from another corpus?") from None
        read = lambda part: np.array([arrays.string(part, row).encode("utf-8") for row in rows],  # noqa: E731
                                     object).reshape(block_ids.shape)
        return read("title"), read("text")

    def outputs(self, questions: Sequence[str]) -> Dict[str, np.ndarray]:
        questions = tf.constant(questions)
        retrieved = self._retrieve(questions=questions)
        titles, texts = (tf.constant(strings, tf.string) for strings in self.lookup(retrieved["block_ids"].numpy()))
        read = self._read(questions=questions, texts=texts, candidate_embeddings=retrieved["candidate_embeddings"])
        return {name: value.numpy() for name, value in joined_outputs(retrieved, read, titles, texts).items()}

"""Open-domain QA fine-tuning (REALM §3.3): the index fixed, the query tower and the reader trained.

Per batch of questions, on the host:
  - embed the questions with a copy of the query tower (synced from the one being
    trained every `finetune.query_sync_every_steps` steps; once, if it is frozen) and take
    their top `finetune.retriever_beam_size` blocks from the fixed index (or, with
    `finetune.retrieval` "hybrid", from its dense and lexical rankings fused), with the
    blocks' stored embeddings, marking those whose text contains an answer;
  - pack `[CLS] question [SEP] body [SEP]` for the first `finetune.top_k` of them and
    mark every span that matches an answer (`realm_tf.tasks.answer_spans`).
In the step (static shapes): the retrieval logits with the current query tower, the span
logits, and the marginal log-likelihood of `realm_tf.modeling.open_qa.finetuning_loss`.

Many questions per batch: the released code, and ports of it, take one per step.

Memory: the questions are held as their text and answers only (a QA training set is some
10^5 questions, where pre-training streams its 10^8 examples); a batch's questions are
tokenized, and their answers made ready to match, as the batch is made.
"""

import functools
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.artifacts.model_dir import ModelDir
from realm_tf.configs import ExperimentConfig
from realm_tf.corpus.block_store import BlockStore
from realm_tf.evaluation.answer_metrics import normalize_answer
from realm_tf.evaluation.qa_data import QaExample, read_qa
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.features.reader_inputs import pack_reader_candidates
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.open_qa import OpenQaModel, finetuning_loss
from realm_tf.retrieval.fixed_index import FixedIndex
from realm_tf.retrieval.hybrid_retrieval import HybridRetrieval
from realm_tf.tasks.answer_spans import AnswerMatcher, find_answer_spans
from realm_tf.tasks.example_order import epoch_batches

logger = logging.getLogger(__name__)
NORMALIZED_TEXTS_CACHED = 50_000

def build_open_qa_model(config: ExperimentConfig, featurizer: Featurizer) -> OpenQaModel:
    """An `OpenQaModel` with its variables created, so checkpoints restore into it at once."""
    model = OpenQaModel(config, featurizer.vocabulary.continuation_mask())
    f = config.features
    zeros = lambda *shape: {k: tf.zeros(shape, tf.int32) for k in FEATURE_KEYS}  # noqa: E731
    model({"query": zeros(1, f.query_length), "reader": zeros(1, 1, f.reader_length),
           "candidate_embeddings": tf.zeros([1, 1, config.retriever.projection_size])})
    return model


def initial_weight_parts(init_dir: str) -> Tuple[str, Tuple[str, ...]]:
    """The newest checkpoint of a pre-training or ICT `--model_dir`, and the parts of the
    open-QA model it fills: ("retriever", "reader") after pre-training (the query tower
    and the reader's BERT), ("retriever",) after ICT."""
    path = ModelDir(init_dir).require_checkpoint()
    names = {name for name, _ in tf.train.list_variables(path)}
    if any(name.startswith("model/reader/encoder/") for name in names):  # REALM pre-training.
        return path, ("retriever", "reader")
    return path, ("retriever",)


def restore_initial_weights(model: OpenQaModel, init_dir: str) -> str:
    """Starts from the newest checkpoint of a pre-training (query tower and reader BERT)
    or ICT (query tower only) `--model_dir`; returns the checkpoint path."""
    path, parts = initial_weight_parts(init_dir)
    if "reader" in parts:
        source = tf.train.Checkpoint(
            retriever=tf.train.Checkpoint(query_embedder=model.query_embedder),
            reader=tf.train.Checkpoint(encoder=model.reader.encoder))
    else:  # ICT: the checkpoint's model is the retriever itself.
        source = tf.train.Checkpoint(query_embedder=model.query_embedder)
    tf.train.Checkpoint(model=source).restore(path).assert_existing_objects_matched().expect_partial()
    return path


def restore_finetuned(model: OpenQaModel, model_dir: str) -> str:
    """Loads the newest fine-tuning checkpoint of `model_dir` (the optimizer's slots are left out)."""
    path = ModelDir(model_dir).require_checkpoint("fine-tuning")
    tf.train.Checkpoint(model=model).restore(path).assert_existing_objects_matched().expect_partial()
    return path


class FinetuneTask:
    """Inputs and loss of open-QA fine-tuning over a fixed index.

    Args:
      config: the experiment config (`finetune.*`, `reader.max_span_length`).
      qa_path: training questions with answers (`realm_tf.evaluation.qa_data` formats).
      blocks_dir: the chunked corpus the index was built from.
      index: an index version, or an index root (its newest version, then fixed).
      qa_format: the QA file's format, or "auto".
    """

    def __init__(self, config: ExperimentConfig, qa_path: str, blocks_dir: str, index: str,
                 qa_format: str = "auto", search_method: str = "scann"):
        self.config = config
        self.featurizer = Featurizer(config.features)
        BlocksManifest.read(blocks_dir).check_compatible(
            blocks_dir, config.features.block_length, self.featurizer.vocabulary.sha256)
        self.examples: List[QaExample] = read_qa(qa_path, qa_format)
        self.blocks = BlockStore(blocks_dir, self.featurizer)
        if config.finetune.retrieval == "hybrid":
            self.index = HybridRetrieval(index, self.featurizer, config.index.hybrid, search_method, self.blocks)
        else:
            self.index = FixedIndex(index, method=search_method)
        unknown = np.setdiff1d(self.index.block_ids, self.blocks.arrays.block_ids)
        if len(unknown):
            raise ManifestError(f"{self.index.path}: {len(unknown)} indexed blocks (e.g. {unknown[0]}) are not in "
                                f"{blocks_dir}; was the index built from another corpus?")
        self.top_k = config.finetune.top_k
        self.beam_size = min(config.finetune.retriever_beam_size, self.index.version.num_blocks)
        if isinstance(self.index, HybridRetrieval) and self.beam_size > 2 * self.index.candidates:
            logger.info("finetune.retriever_beam_size %d is past what the hybrid retrieval fuses (2 x %d "
                        "candidates): the beam is %d", self.beam_size, self.index.candidates,
                        2 * self.index.candidates)
            self.beam_size = 2 * self.index.candidates
        if self.beam_size < self.top_k:
            raise ManifestError(f"{self.index.path}: {self.beam_size} blocks, fewer than finetune.top_k={self.top_k}")
        self.max_span_length = config.reader.max_span_length
        self.is_word_start = ~self.featurizer.vocabulary.continuation_mask()
        # The host's copy of the query tower, which chooses the candidates.
        self.search_embedder = ProjectedEmbedder(config.retriever, name="search_embedder")
        self.search_embedder(self.featurizer.pack_query(self.featurizer.tokenize([self.examples[0].question])))
        self._model: Optional[OpenQaModel] = None
        # Block id -> normalized text, for the blocks that come up most; bounded, as the
        # blocks that come up over a run can be most of a large corpus.
        self._normalized_text = functools.lru_cache(maxsize=NORMALIZED_TEXTS_CACHED)(
            lambda block_id: normalize_answer(self.blocks.texts[block_id]))

    # --- model -------------------------------------------------------------------------

    def build_model(self) -> OpenQaModel:
        self._model = build_open_qa_model(self.config, self.featurizer)
        return self._model

    def sync_search_embedder(self, model: OpenQaModel) -> None:
        self.search_embedder.set_weights(model.query_embedder.get_weights())

    # --- inputs ------------------------------------------------------------------------

    def build_train_dataset(self, global_batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Endless batches of `make_batch` in an order fixed by `seed` (resumable at `start_step`)."""
        if self._model is not None:  # Search with the weights training starts from (restored or initialized).
            self.sync_search_embedder(self._model)
        batches = lambda: (self.make_batch(indices) for indices in  # noqa: E731
                           epoch_batches(len(self.examples), global_batch_size, seed, start_step))
        return tf.data.Dataset.from_generator(batches, output_signature=self._signature(global_batch_size)).prefetch(2)

    def _signature(self, batch_size: int):
        f, c, k, w = self.config.features, self.beam_size, self.top_k, self.max_span_length
        features = lambda *shape: {key: tf.TensorSpec(shape, tf.int32) for key in FEATURE_KEYS}  # noqa: E731
        return {
            "query": features(batch_size, f.query_length),
            "candidate_embeddings": tf.TensorSpec((batch_size, c, self.config.retriever.projection_size), tf.float32),
            "candidate_ids": tf.TensorSpec((batch_size, c), tf.int64),
            "retrieval_correct": tf.TensorSpec((batch_size, c), tf.float32),
            "reader": features(batch_size, k, f.reader_length),
            "answer_spans": tf.TensorSpec((batch_size, k, f.reader_length, w), tf.float32),
        }

    def make_batch(self, example_indices: np.ndarray) -> Dict:
        """Retrieves the beam for the questions, packs the top k and marks the answers (numpy)."""
        b, k, w = len(example_indices), self.top_k, self.max_span_length
        # Tokenized and matched batch by batch: nothing per question is kept besides its text.
        examples = [self.examples[i] for i in example_indices]
        matchers = [AnswerMatcher(e.answers, e.answers_are_regex) for e in examples]
        query_tokens = self.featurizer.tokenize([e.question for e in examples])
        query = self.featurizer.pack_query(query_tokens)
        by_text = {"questions": [e.question for e in examples]} if isinstance(self.index, HybridRetrieval) else {}
        candidate_ids, candidate_embeddings = self.index.search(self.search_embedder(query).numpy(), self.beam_size,
                                                                **by_text)
        retrieval_correct = np.array(
            [[matcher.in_text(self.blocks.texts[i], self._normalized_text(i)) for i in row]
             for matcher, row in zip(matchers, candidate_ids.tolist())], np.float32).reshape(b, self.beam_size)
        reader = pack_reader_candidates(
            self.featurizer, query_tokens, self.blocks.token_ids("body", candidate_ids[:, :k].reshape(-1)), k)
        answer_spans = np.zeros((b, k, self.config.features.reader_length, w), np.float32)
        for row, matcher in enumerate(matchers):
            for column, block_id in enumerate(candidate_ids[row, :k].tolist()):
                spans = find_answer_spans(
                    matcher, self.blocks.texts[block_id], self.blocks.token_begins[block_id],
                    self.blocks.token_ends[block_id], self.is_word_start[self.blocks.bodies[block_id]],
                    int(reader.body_lengths[row, column]), w)
                offset = reader.body_offsets[row, column]
                for start, end in spans:
                    answer_spans[row, column, offset + start, end - start] = 1.0
                if spans:  # Whatever the whole-text test says, a block with a matching span holds the answer.
                    retrieval_correct[row, column] = 1.0
        return {
            "query": {key: query[key].numpy() for key in FEATURE_KEYS},
            "candidate_embeddings": candidate_embeddings.astype(np.float32),
            "candidate_ids": candidate_ids,
            "retrieval_correct": retrieval_correct,
            "reader": reader.features,
            "answer_spans": answer_spans,
        }

    # --- loss --------------------------------------------------------------------------

    def compute_loss(self, model: OpenQaModel, batch, training: bool):
        return finetuning_loss(model(batch, training=training), batch)

    def after_step(self, trainer, step: int, metrics: Dict[str, float]) -> Dict[str, float]:
        # A frozen query tower never changes: the copy made when training starts stays equal to it.
        if self.config.finetune.train_query_tower and step % self.config.finetune.query_sync_every_steps == 0:
            self.sync_search_embedder(trainer.model)
        return {}

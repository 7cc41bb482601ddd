"""REALM pre-training: masked-LM through retrieval, with the index refreshed as training goes.

Per query (a sentence with one salient span masked, from
beam_pipelines.make_pretraining_examples), on the host:
  - embed it with the query tower of the export the current index was built with,
    and take the top `pretrain.top_k - 1` blocks, the block it came from excluded
    (REALM's "no trivial retrievals");
  - put the null document (empty block) first, so the model can predict without
    retrieval.
In the step (static shapes): re-embed the query and the K candidates with the current
towers, log-softmax their inner products, read each candidate with the
knowledge-augmented encoder, and minimise the negative marginal log-likelihood of the
masked tokens, marginalised per token.

Every `pretrain.refresh_every_steps` steps the embedder is exported to
`<model_dir>/embedder/<step>/`; a refresher (beam_pipelines.refresh) builds an index
version from it, and the `IndexWatcher` swaps it in without stopping the step.
"""

import logging
import os
from typing import Dict, List, Optional

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import BlocksManifest, ManifestError, PretrainingManifest
from realm_tf.artifacts.model_dir import ModelDir
from realm_tf.configs import ExperimentConfig
from realm_tf.corpus.block_store import BlockStore
from realm_tf.corpus.pretraining_examples import PretrainingExample
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.features.reader_inputs import pack_reader_candidates
from realm_tf.modeling.marginal import pretraining_loss
from realm_tf.modeling.realm_pretrainer import RealmPretrainer
from realm_tf.retrieval.candidates import IndexWatcher
from realm_tf.retrieval.embedder_export import export_embedder
from realm_tf.tasks.example_order import epoch_batches

logger = logging.getLogger(__name__)


class PretrainTask:
    """Inputs, loss and refresh hooks of REALM pre-training."""

    def __init__(self, config: ExperimentConfig, examples_dir: str, blocks_dir: str, index_root: str,
                 model_dir: str, poll_seconds: float = 2.0):
        self.config = config
        self.model_dir = ModelDir(model_dir)
        self.featurizer = Featurizer(config.features)
        BlocksManifest.read(blocks_dir).check_compatible(
            blocks_dir, config.features.block_length, self.featurizer.vocabulary.sha256)
        self.examples = self._read_examples(examples_dir)
        self.blocks = BlockStore(blocks_dir)
        self.watcher = IndexWatcher(index_root, poll_seconds=poll_seconds)
        self.num_candidates = config.pretrain.top_k
        self.max_masks = config.pretrain.max_masked_tokens
        # Every index version batches were retrieved from, in order of first use.
        self.index_versions_used: List[str] = []

    def _read_examples(self, examples_dir: str) -> List[PretrainingExample]:
        manifest = PretrainingManifest.read(examples_dir)
        if manifest.query_length != self.config.features.query_length:
            raise ManifestError(f"{examples_dir}: examples were made for query_length {manifest.query_length}, "
                                f"the model reads {self.config.features.query_length} (features.query_length)")
        if manifest.vocabulary.get("sha256") != self.featurizer.vocabulary.sha256:
            raise ManifestError(f"{examples_dir}: examples were tokenized with another vocabulary than the model's")
        if manifest.max_masked_tokens > self.config.pretrain.max_masked_tokens:
            raise ManifestError(f"{examples_dir}: examples mask up to {manifest.max_masked_tokens} tokens, "
                                f"more than pretrain.max_masked_tokens={self.config.pretrain.max_masked_tokens}")
        records = tf.data.TFRecordDataset(manifest.example_paths(examples_dir)).as_numpy_iterator()
        examples = [PretrainingExample.from_bytes(raw) for raw in records]
        if not examples:
            raise ManifestError(f"{examples_dir}: no pre-training examples")
        return examples

    # --- model -------------------------------------------------------------------------

    def build_model(self) -> RealmPretrainer:
        """The model with its variables created, so checkpoints restore into it at once."""
        model = RealmPretrainer(self.config)
        model(self.make_batch(np.arange(1)), training=False)
        return model

    def restore_retriever(self, model: RealmPretrainer, ict_model_dir: str) -> str:
        """Starts the towers from the newest ICT checkpoint in `ict_model_dir` (REALM's warm start)."""
        path = ModelDir(ict_model_dir).require_checkpoint("ICT")
        tf.train.Checkpoint(model=model.retriever).restore(path).assert_existing_objects_matched().expect_partial()
        return path

    # --- inputs ------------------------------------------------------------------------

    def build_train_dataset(self, global_batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Endless batches of `make_batch`, in an order fixed by `seed`, from example
        `start_step * global_batch_size` on (the data position of a resumed run)."""
        batches = lambda: (self.make_batch(indices) for indices in  # noqa: E731
                           epoch_batches(len(self.examples), global_batch_size, seed, start_step))
        return tf.data.Dataset.from_generator(batches, output_signature=self._signature(global_batch_size)).prefetch(2)

    def _signature(self, batch_size: int):
        f = self.config.features
        k, m = self.num_candidates, self.max_masks
        features = lambda *shape: {key: tf.TensorSpec(shape, tf.int32) for key in FEATURE_KEYS}  # noqa: E731
        return {
            "query": features(batch_size, f.query_length),
            "candidates": features(batch_size, k, f.block_length),
            "reader": features(batch_size, k, f.reader_length),
            "candidate_ids": tf.TensorSpec((batch_size, k), tf.int64),
            "source_block_id": tf.TensorSpec((batch_size,), tf.int64),
            "masked_positions": tf.TensorSpec((batch_size, m), tf.int32),
            "masked_ids": tf.TensorSpec((batch_size, m), tf.int32),
            "masked_weights": tf.TensorSpec((batch_size, m), tf.float32),
            "index_step": tf.TensorSpec((batch_size,), tf.int64),
        }

    def make_batch(self, example_indices: np.ndarray) -> Dict:
        """Retrieves candidates for the examples and packs everything (numpy arrays)."""
        examples = [self.examples[i] for i in example_indices]
        b, k, m = len(examples), self.num_candidates, self.max_masks
        query_tokens = tf.ragged.constant([e.query_token_ids for e in examples], dtype=tf.int64, ragged_rank=1)
        query = self.featurizer.pack_query(query_tokens)
        index = self.watcher.current
        if not self.index_versions_used or self.index_versions_used[-1] != index.path:
            self.index_versions_used.append(index.path)
        query_embeddings = index.export.embed_queries(query)
        sources = np.array([e.block_id for e in examples], np.int64)
        retrieved, _ = index.searcher.search(query_embeddings, k - 1, exclude_ids=sources[:, None])
        # Candidate 0 is the null document (-1); padding (-1) from a tiny index reads as null too.
        candidate_ids = np.concatenate([np.full((b, 1), -1, np.int64), retrieved], axis=1)
        flat_ids = candidate_ids.reshape(-1).tolist()
        titles = tf.ragged.constant([self.blocks.titles[i] for i in flat_ids], dtype=tf.int64, ragged_rank=1)
        bodies = tf.ragged.constant([self.blocks.bodies[i] for i in flat_ids], dtype=tf.int64, ragged_rank=1)
        candidates = self.featurizer.pack_block(titles, bodies)
        reader = pack_reader_candidates(self.featurizer, query_tokens,
                                        [[self.blocks.bodies[i] for i in row] for row in candidate_ids.tolist()])
        positions = np.zeros((b, m), np.int32)
        targets = np.zeros((b, m), np.int32)
        weights = np.zeros((b, m), np.float32)
        for row, example in enumerate(examples):
            n = len(example.masked_positions)
            positions[row, :n] = np.asarray(example.masked_positions) + 1  # After [CLS].
            targets[row, :n] = example.masked_token_ids
            weights[row, :n] = 1.0
        reshape = lambda features, length: {key: features[key].numpy().reshape(b, k, length) for key in FEATURE_KEYS}  # noqa: E731
        return {
            "query": {key: query[key].numpy() for key in FEATURE_KEYS},
            "candidates": reshape(candidates, self.config.features.block_length),
            "reader": reader.features,
            "candidate_ids": candidate_ids,
            "source_block_id": sources,
            "masked_positions": positions,
            "masked_ids": targets,
            "masked_weights": weights,
            "index_step": np.full((b,), self._pretraining_step_of(index), np.int64),
        }

    def _pretraining_step_of(self, index) -> int:
        """The pre-training step of the embedder an index was built with; 0 for the
        initial index, built from an embedder of another run (the ICT warm start)."""
        return index.step if self.model_dir.holds_export(index.export.path) else 0

    # --- loss and metrics --------------------------------------------------------------

    def compute_loss(self, model: RealmPretrainer, batch, training: bool):
        return pretraining_loss(model(batch, training=training), batch)

    # --- refresh -----------------------------------------------------------------------

    def after_step(self, trainer, step: int, metrics: Dict[str, float]) -> Dict[str, float]:
        """Exports the embedder on the refresh schedule; reports the index staleness."""
        if step % self.config.pretrain.refresh_every_steps == 0:
            self.export_embedder(trainer.model, step)
        return {"index_staleness": step - metrics.get("index_step", step)}

    def export_embedder(self, model: RealmPretrainer, step: int) -> Optional[str]:
        path = self.model_dir.export_dir(step)
        if os.path.exists(path):  # Already exported before a restart.
            return None
        return export_embedder(model.retriever, self.featurizer, path, step=step)

    def finish(self) -> None:
        """Tells the refresher that no more exports will come, and stops watching."""
        self.model_dir.mark_training_done()
        self.watcher.close()

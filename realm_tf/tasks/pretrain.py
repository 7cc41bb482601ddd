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
from typing import Callable, Dict, List, Optional

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import BlocksManifest, ManifestError, PretrainingManifest
from realm_tf.artifacts.model_dir import ModelDir
from realm_tf.configs import ExperimentConfig
from realm_tf.corpus.block_store import BlockStore
from realm_tf.corpus.pretraining_examples import parse_pretraining_columns
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.features.ragged_rows import RaggedRows
from realm_tf.features.reader_inputs import pack_reader_candidates
from realm_tf.modeling.marginal import pretraining_loss
from realm_tf.modeling.realm_pretrainer import RealmPretrainer
from realm_tf.retrieval.candidates import IndexWatcher
from realm_tf.retrieval.embedder_export import export_embedder
from realm_tf.tasks.example_stream import Columns, ShardedExampleStream

logger = logging.getLogger(__name__)


def pack_pretraining_batch(featurizer: Featurizer, blocks: BlockStore, examples: Columns,
                           retrieve: Callable[[Dict, np.ndarray], np.ndarray], max_masked_tokens: int) -> Dict:
    """The model's inputs for B examples and their K candidates, gathered from the block
    store in a few numpy calls (no loop over examples or blocks).

    Args:
      examples: `parse_pretraining_columns` of B examples.
      retrieve: (the packed queries, int32 [B, query_length] each FEATURE_KEYS; the source
        block ids, int64 [B]) -> the candidate ids, int64 [B, K], the null document -1 first.
    Returns numpy arrays: "query" [B, query_length], "candidates" [B, K, block_length],
    "reader" [B, K, reader_length] (each the three FEATURE_KEYS, int32); "candidate_ids",
    "source_block_id" int64; "masked_positions", "masked_ids" int32 and "masked_weights"
    float32, [B, max_masked_tokens].
    """
    query_tokens = examples["query_token_ids"].to_tensor()
    query = featurizer.pack_query(query_tokens)
    candidate_ids = retrieve(query, examples["block_id"])
    (b, k), m, f = candidate_ids.shape, max_masked_tokens, featurizer.config
    flat_ids = candidate_ids.reshape(-1)
    bodies = blocks.token_ids("body", flat_ids)
    candidates = featurizer.pack_block(blocks.token_ids("title", flat_ids).to_tensor(), bodies.to_tensor())
    reader = pack_reader_candidates(featurizer, query_tokens, bodies, k)
    masked = examples["masked_positions"]
    return {
        "query": {key: query[key].numpy() for key in FEATURE_KEYS},
        "candidates": {key: candidates[key].numpy().reshape(b, k, f.block_length) for key in FEATURE_KEYS},
        "reader": reader.features,
        "candidate_ids": candidate_ids,
        "source_block_id": examples["block_id"],
        "masked_positions": masked.to_dense(m, offset=1, dtype=np.int32),  # +1: after [CLS].
        "masked_ids": examples["masked_token_ids"].to_dense(m, dtype=np.int32),
        "masked_weights": RaggedRows(np.ones(len(masked.values), np.float32), masked.splits).to_dense(m),
    }


class PretrainTask:
    """Inputs, loss and refresh hooks of REALM pre-training."""

    def __init__(self, config: ExperimentConfig, examples_dir: str, blocks_dir: str, index_root: str,
                 model_dir: str, poll_seconds: float = 2.0):
        self.config = config
        self.model_dir = ModelDir(model_dir)
        self.featurizer = Featurizer(config.features)
        BlocksManifest.read(blocks_dir).check_compatible(
            blocks_dir, config.features.block_length, self.featurizer.vocabulary.sha256)
        self.stream = self._example_stream(examples_dir)
        self.blocks = BlockStore(blocks_dir)
        self.watcher = IndexWatcher(index_root, poll_seconds=poll_seconds)
        self.num_candidates = config.pretrain.top_k
        self.max_masks = config.pretrain.max_masked_tokens
        # Every index version batches were retrieved from, in order of first use.
        self.index_versions_used: List[str] = []

    def _example_stream(self, examples_dir: str) -> ShardedExampleStream:
        manifest = PretrainingManifest.read(examples_dir)
        if manifest.query_length != self.config.features.query_length:
            raise ManifestError(f"{examples_dir}: examples were made for query_length {manifest.query_length}, "
                                f"the model reads {self.config.features.query_length} (features.query_length)")
        if manifest.vocabulary.get("sha256") != self.featurizer.vocabulary.sha256:
            raise ManifestError(f"{examples_dir}: examples were tokenized with another vocabulary than the model's")
        if manifest.max_masked_tokens > self.config.pretrain.max_masked_tokens:
            raise ManifestError(f"{examples_dir}: examples mask up to {manifest.max_masked_tokens} tokens, "
                                f"more than pretrain.max_masked_tokens={self.config.pretrain.max_masked_tokens}")
        return ShardedExampleStream(manifest.example_paths(examples_dir), manifest.num_examples,
                                    parse_pretraining_columns, self.config.pretrain.shuffle_window, examples_dir)

    # --- model -------------------------------------------------------------------------

    def build_model(self) -> RealmPretrainer:
        """The model with its variables created, so checkpoints restore into it at once."""
        model = RealmPretrainer(self.config)
        model(self.make_batch(self.stream.head(1)), training=False)
        return model

    def restore_retriever(self, model: RealmPretrainer, ict_model_dir: str) -> str:
        """Starts the towers from the newest ICT checkpoint in `ict_model_dir` (REALM's warm start)."""
        path = ModelDir(ict_model_dir).require_checkpoint("ICT")
        tf.train.Checkpoint(model=model.retriever).restore(path).assert_existing_objects_matched().expect_partial()
        return path

    # --- inputs ------------------------------------------------------------------------

    def build_train_dataset(self, global_batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Endless batches of `make_batch`, streamed in an order fixed by `seed`
        (`ShardedExampleStream`), from example `start_step * global_batch_size` on (the data
        position of a resumed run)."""
        batches = lambda: (self.make_batch(examples) for examples in  # noqa: E731
                           self.stream.batches(global_batch_size, seed, start_step))
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

    def make_batch(self, examples: Columns) -> Dict:
        """Retrieves candidates for a batch of examples (`parse_pretraining_columns`) and
        packs everything (numpy arrays)."""
        index = self.watcher.current
        if not self.index_versions_used or self.index_versions_used[-1] != index.path:
            self.index_versions_used.append(index.path)

        def retrieve(query, sources: np.ndarray) -> np.ndarray:
            retrieved, _ = index.searcher.search(index.export.embed_queries(query), self.num_candidates - 1,
                                                 exclude_ids=sources[:, None])
            # Candidate 0 is the null document (-1); padding (-1) from a tiny index reads as null too.
            return np.concatenate([np.full((len(sources), 1), -1, np.int64), retrieved], axis=1)

        batch = pack_pretraining_batch(self.featurizer, self.blocks, examples, retrieve, self.max_masks)
        step = self._pretraining_step_of(index)
        return batch | {"index_step": np.full(batch["source_block_id"].shape, step, np.int64)}

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

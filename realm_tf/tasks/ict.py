"""The Inverse Cloze Task (Lee et al. 2019), REALM's warm start of the retriever.

A sentence of a block is the query; the block is its positive, with the sentence
removed with probability `ict.remove_sentence_probability` (so the retriever learns
more than string overlap); the other blocks of the batch are its negatives. The loss
is softmax cross-entropy over the batch's relevance scores.

Blocks whose id falls in the first `ict.heldout_percent` of 100 buckets are held out of
training; `evaluate` measures recall@k of their sentences against every block.
"""

from typing import Dict, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from realm_tf.artifacts.manifests import BlocksManifest
from realm_tf.configs import ExperimentConfig
from realm_tf.corpus.block_records import read_block_dataset
from realm_tf.features import FEATURE_KEYS, Featurizer
from realm_tf.modeling import Retriever
from realm_tf.modeling.retriever import relevance


def _zero_features(length: int):
    return {k: tf.zeros([1, length], tf.int32) for k in FEATURE_KEYS}


class IctTask:
    """Inputs, loss and evaluation of ICT over a directory of chunked blocks."""

    def __init__(self, config: ExperimentConfig, blocks_dir: str):
        self.config = config
        self.blocks_dir = blocks_dir
        self.featurizer = Featurizer(config.features)
        self.manifest = BlocksManifest.read(blocks_dir)
        self.manifest.check_compatible(blocks_dir, config.features.block_length, self.featurizer.vocabulary.sha256)
        self._paths = self.manifest.block_paths(blocks_dir)

    def build_model(self) -> Retriever:
        """The retriever with its variables created (so a checkpoint restores into it at once)."""
        model = Retriever(self.config.retriever)
        features = self.config.features
        model({"query": _zero_features(features.query_length), "block": _zero_features(features.block_length)})
        return model

    def _is_heldout(self, record) -> tf.Tensor:
        return tf.math.floormod(record["block_id"], 100) < self.config.ict.heldout_percent

    def build_train_dataset(self, global_batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
        """Endless batches {"query": query packing [B, query_length], "block": block packing [B, block_length]}.

        A resumed run (`start_step` > 0) draws a fresh random sequence rather than
        replaying the first steps' examples.
        """
        seed += start_step
        records = read_block_dataset(self._paths).filter(lambda r: tf.logical_not(self._is_heldout(r)))
        buffer = min(self.manifest.num_blocks, 10_000)
        examples = tf.data.Dataset.zip(
            records.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat(),
            tf.data.Dataset.random(seed=seed),
        ).map(self._example, num_parallel_calls=tf.data.AUTOTUNE)
        return (
            examples.ragged_batch(global_batch_size, drop_remainder=True)
            .map(self._pack, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def _example(self, record, random):
        """One (sentence, block without it) pair; `random` seeds the two stateless draws."""
        body = record["body_token_ids"]
        starts = tf.cast(record["sentence_starts"], tf.int32)
        num_sentences = tf.size(starts)
        ends = tf.concat([starts[1:], tf.shape(body)], axis=0)
        seed = tf.stack([random, tf.constant(0, tf.int64)])
        index = tf.random.stateless_uniform([], seed, minval=0, maxval=num_sentences, dtype=tf.int32)
        start, end = starts[index], ends[index]
        # A one-sentence block keeps its sentence: removing it would leave only the title.
        remove = tf.logical_and(
            num_sentences > 1,
            tf.random.stateless_uniform([], seed + [0, 1]) < self.config.ict.remove_sentence_probability,
        )
        context = tf.cond(remove, lambda: tf.concat([body[:start], body[end:]], 0), lambda: body)
        return {"query": body[start:end], "title": record["title_token_ids"], "body": context}

    def _pack(self, batch):
        return {
            "query": self.featurizer.pack_query(batch["query"]),
            "block": self.featurizer.pack_block(batch["title"], batch["body"]),
        }

    def compute_loss(self, model: Retriever, batch, training: bool):
        """In-batch softmax cross-entropy; the i-th block is the i-th query's positive."""
        queries, blocks = model(batch, training=training)
        logits = relevance(queries, blocks)
        labels = tf.range(tf.shape(logits)[0])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))
        return loss, {"accuracy": accuracy}

    def evaluate(self, model: Retriever, ks: Sequence[int] = (1, 5, 20), batch_size: int = 128,
                 max_queries: int = 1000) -> Dict[str, float]:
        """Recall@k of held-out sentences: is the block they came from among the top k of all blocks?

        Each held-out block contributes its middle sentence as the query (deterministic);
        the candidates are every block, embedded whole. Exact search (matmul + top_k).
        """
        embed_blocks = tf.function(lambda f: model.embed_blocks(f, training=False))
        embed_queries = tf.function(lambda f: model.embed_queries(f, training=False))
        block_ids, block_embeddings = [], []
        blocks = read_block_dataset(self._paths).ragged_batch(batch_size)
        for batch in blocks:
            block_ids.append(batch["block_id"].numpy())
            block_embeddings.append(embed_blocks(self.featurizer.pack_block(batch["title_token_ids"], batch["body_token_ids"])))
        block_ids = np.concatenate(block_ids)
        block_embeddings = tf.concat(block_embeddings, axis=0)

        heldout = read_block_dataset(self._paths).filter(self._is_heldout).take(max_queries).map(self._middle_sentence)
        hits = {k: 0 for k in ks}
        num_queries = 0
        for batch in heldout.ragged_batch(batch_size):
            scores = relevance(embed_queries(self.featurizer.pack_query(batch["query"])), block_embeddings)
            top = tf.math.top_k(scores, k=min(max(ks), len(block_ids))).indices.numpy()
            retrieved = block_ids[top]
            truth = batch["block_id"].numpy()[:, None]
            for k in ks:
                hits[k] += int(np.sum(np.any(retrieved[:, :k] == truth, axis=1)))
            num_queries += len(truth)
        if num_queries == 0:
            raise ValueError(f"{self.blocks_dir}: no held-out blocks (ict.heldout_percent={self.config.ict.heldout_percent})")
        return {f"recall@{k}": hits[k] / num_queries for k in ks} | {"num_queries": num_queries}

    @staticmethod
    def _middle_sentence(record):
        body = record["body_token_ids"]
        starts = tf.cast(record["sentence_starts"], tf.int32)
        ends = tf.concat([starts[1:], tf.shape(body)], axis=0)
        middle = tf.size(starts) // 2
        return {"block_id": record["block_id"], "query": body[starts[middle]:ends[middle]]}

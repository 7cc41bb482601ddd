"""The released block embeddings (`block_emb`) as an index version, without re-embedding.

REALM's pre-trained embedder ships the embeddings of its 13,353,718 Wikipedia blocks as
`embedder/encoded/encoded.ckpt` (one variable `block_emb`, float32 [N, 128]); the
fine-tuned ORQA-style models hold `block_emb` in their own checkpoint. Row i embeds the
i-th record of the release's `blocks.tfr` (ORQA's format: one block's text per record).

  convert_release_blocks   blocks.tfr -> a block directory of this project (tokenized
                           records and a manifest), records in file order
  import_block_embeddings  block_emb + a block directory whose blocks are in the same
                           order -> a published index version (ScaNN built as configured)
"""

import os
import shutil
from typing import Dict, Optional, Tuple

import numpy as np
from tqdm import tqdm

import realm_tf
from realm_tf.artifacts.manifests import BLOCK_SHARD_PREFIX
from realm_tf.artifacts.staging import stage_beside
from realm_tf.checkpoints.formats import checkpoint_prefix
from realm_tf.checkpoints.tensor_sources import CheckpointError, TfCheckpointSource
from realm_tf.configs import ExperimentConfig

BLOCK_EMBEDDINGS = "block_emb"
RELEASE_ENCODED = os.path.join("encoded", "encoded.ckpt")
CONVERTED_SHARD = f"{BLOCK_SHARD_PREFIX}-00000-of-00001.tfrecord"
IMPORT_ROWS = 1 << 18  # block_emb rows read at a time: 128 MB of float32 x 128.


def find_block_embeddings(path: str) -> TfCheckpointSource:
    """The checkpoint holding `block_emb`: `path` itself (a prefix or a directory with one)
    or, for the REALM embedder release, `<path>/encoded/encoded.ckpt`."""
    for candidate in (path, os.path.join(path, RELEASE_ENCODED)):
        prefix = checkpoint_prefix(candidate)
        if prefix is not None:
            source = TfCheckpointSource(prefix)
            if BLOCK_EMBEDDINGS in source:
                return source
    raise CheckpointError(f"{path}: no '{BLOCK_EMBEDDINGS}' variable there or in {RELEASE_ENCODED}")


def block_ids_in_order(blocks_dir: str) -> np.ndarray:
    """int64 [N]: the block ids of `blocks_dir` in the order its shards list them."""
    from realm_tf.corpus.block_records import read_parsed_records
    from realm_tf.artifacts.manifests import BlocksManifest
    import tensorflow as tf

    manifest = BlocksManifest.read(blocks_dir)
    spec = {"block_id": tf.io.FixedLenFeature([], tf.int64)}
    records = read_parsed_records(manifest.block_paths(blocks_dir),
                                  lambda serialized: tf.io.parse_example(serialized, spec))
    ids = [batch["block_id"] for batch in records.batch(65536).as_numpy_iterator()]
    return np.concatenate(ids) if ids else np.zeros([0], np.int64)


def import_block_embeddings(checkpoint: str, blocks_dir: str, index_root: str, config: ExperimentConfig,
                            name: Optional[str] = None) -> Tuple[str, Dict]:
    """Publishes `block_emb` of `checkpoint` as an index version of `blocks_dir`'s blocks.

    Row i of `block_emb` must embed the i-th block of `blocks_dir` (as
    `convert_release_blocks` writes them from the release's blocks.tfr); the counts must
    agree. Returns (the version's path, its metadata).
    """
    from realm_tf.retrieval.index_build import publish_index_version

    source = find_block_embeddings(checkpoint)
    shape = source.shape(BLOCK_EMBEDDINGS)
    if len(shape) != 2 or shape[1] != config.retriever.projection_size:
        raise CheckpointError(f"{source.path}: {BLOCK_EMBEDDINGS} has shape {list(shape)}; the retriever "
                              f"embeds into {config.retriever.projection_size} dimensions")
    block_ids = block_ids_in_order(blocks_dir)
    if len(block_ids) != shape[0]:
        raise CheckpointError(f"{source.path}: {BLOCK_EMBEDDINGS} has {shape[0]} rows but {blocks_dir} holds "
                              f"{len(block_ids)} blocks; row i must embed the i-th block")
    metadata = {"step": 0, "imported_from": os.path.abspath(source.path), "blocks_dir": os.path.abspath(blocks_dir),
                "embedder_export": "", "note": "precomputed block embeddings of a released checkpoint"}
    # Copied slice by slice into a memory-mapped file beside the index, so that the build
    # starts from mapped pages rather than a second 6.8 GB in memory (at the release's size).
    os.makedirs(index_root, exist_ok=True)
    scratch = stage_beside(os.path.join(index_root, "import"))
    try:
        embeddings = np.lib.format.open_memmap(os.path.join(scratch, "block_emb.npy"), "w+", np.float32, shape)
        for start in range(0, shape[0], IMPORT_ROWS):
            stop = min(start + IMPORT_ROWS, shape[0])
            embeddings[start:stop] = source.read_rows(BLOCK_EMBEDDINGS, start, stop)
        embeddings.flush()
        version = publish_index_version(index_root, embeddings, block_ids, config.index, metadata, name=name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return version, metadata


def convert_release_blocks(blocks_tfr: str, output_dir: str, config: ExperimentConfig,
                           batch_size: int = 1024, progress: bool = True):
    """Writes the release's `blocks.tfr` (one UTF-8 block text per record) as a block
    directory: block i gets doc id "<file name>#<i>", an empty title (the file has none),
    the text as its body, one sentence. Bodies longer than `features.block_length` - 3
    wordpieces are kept whole in the record and counted (packing truncates them).

    Returns the written `BlocksManifest`.
    """
    import tensorflow as tf

    from realm_tf.corpus.block_records import BlockRecord, block_id_for
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.features.featurizer import Featurizer

    if not tf.io.gfile.exists(blocks_tfr):
        raise CheckpointError(f"{blocks_tfr}: no such file")
    featurizer = Featurizer(config.features)
    budget = config.features.block_length - 3
    os.makedirs(output_dir, exist_ok=True)
    name, row, over_length = os.path.basename(blocks_tfr), 0, 0
    records = tf.data.TFRecordDataset(blocks_tfr).batch(batch_size).prefetch(2)
    with tf.io.TFRecordWriter(os.path.join(output_dir, CONVERTED_SHARD)) as writer, \
            tqdm(desc=f"converting {name}", unit=" blocks", disable=not progress) as bar:
        try:
            for texts in records.as_numpy_iterator():
                decoded = []
                for text in texts:
                    try:
                        decoded.append(text.decode("utf-8"))
                    except UnicodeDecodeError as error:
                        raise CheckpointError(f"{blocks_tfr}: record {row + len(decoded)} is not UTF-8 "
                                              f"({error})") from error
                for text, tokens in zip(decoded, featurizer.tokenize(decoded).to_list()):
                    over_length += len(tokens) > budget
                    doc_id = f"{name}#{row}"
                    writer.write(BlockRecord(block_id_for(doc_id, 0), doc_id, 0, "", text, [], tokens,
                                             [0]).serialize())
                    row += 1
                bar.update(len(decoded))
        except tf.errors.DataLossError as error:
            raise CheckpointError(f"{blocks_tfr}: corrupt TFRecord after record {row} ({error})") from error
    vocabulary = featurizer.vocabulary
    manifest = BlocksManifest(
        inputs=[blocks_tfr], num_documents=row, num_blocks=row, num_dead_letters=0, dead_letters_by_kind={},
        on_bad_record="fail", block_length=config.features.block_length,
        max_title_tokens=config.corpus.max_title_tokens, sentence_splitter="none (one sentence per block)",
        vocabulary=dict(path=str(vocabulary.path), size=vocabulary.size, sha256=vocabulary.sha256,
                        lower_case=config.features.lower_case),
        stats={"sentences": row, "split_sentences": 0, "split_units": 0, "truncated_titles": 0,
               "bodies_over_block_length": over_length},
        block_shards=[CONVERTED_SHARD], dead_letter_shards=[], created_by=f"realm_tf {realm_tf.__version__}",
    )
    manifest.write(output_dir)
    return manifest

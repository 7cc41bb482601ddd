"""Embeds every block with an embedder export and publishes a ScaNN index version.

    python -m beam_pipelines.embed_and_index --blocks_dir=... --embedder_export=... --index_root=...

    the block shards the blocks manifest lists (beam_pipelines.chunk_corpus)
      -> batches of blocks -> packed by the export's own featurizer -> the export's
         embed_blocks signature                                  (Beam, parallel)
         and, with index.sentence_vectors, each block's sentences after its title
      -> embeddings-*.tfrecord in a folder of this run's own     (block_id, float32[P])
         (sentences-*.tfrecord: block_id, sentence_index, float32[P])
         (under --shards_dir, which every worker can write: gs:// on Dataflow; by
         default the staging folder beside the index versions)
      -> sorted by block id into a memory-mapped embeddings.npy in that staging folder,
         on this machine (the ids and one batch held, not every embedding); the
         sentences likewise, by block id and then place in the block
      -> ScaNN index built on this machine, and with index.hybrid.lexical_index a lexical
         index (BM25 postings by WordPiece id, from the compact block store in passes of
         rows), and the sentence vectors  -> <index_root>/<version>/, published by an atomic rename; older versions
         pruned                                   (realm_tf.retrieval.index_build)

The export must match the blocks (block length and vocabulary); every block must come
back embedded, or nothing is published. The index build is the one step that reads
every embedding, streaming, on the machine that runs this script; the index versions
stay on its disk (`--index_root` is local: versions are published by a rename). Options
this script does not know go to Beam.
"""

import argparse
import logging
import os
import shutil
import sys
import time
import uuid
from typing import Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

import realm_tf  # noqa: F401
from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.artifacts.staging import stage_beside
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.configs import ExperimentConfig, load_config

from beam_pipelines.pipeline_options import pipeline_options

_blocks_embedded = Metrics.counter("embed_and_index", "blocks_embedded")
_sentences_embedded = Metrics.counter("embed_and_index", "sentences_embedded")
SENTENCES = "sentences"  # EmbedBlocks' tagged output of sentence vectors.


class EmbedBlocks(beam.DoFn):
    """[serialized block record] batch -> (block_id, float32 [P]) for each block and, with
    `sentences`, (block_id, sentence_index, float32 [P]) for each of its sentences (the
    block tower over the block's title and the sentence), tagged `SENTENCES`."""

    def __init__(self, export_dir: str, shared_handle: shared.Shared, sentences: bool = False):
        self._export_dir = export_dir
        self._shared = shared_handle
        self._sentences = sentences
        self._export = None

    def setup(self):
        from realm_tf.retrieval.embedder_export import EmbedderExport

        # One loaded model per worker process, whatever the number of DoFn instances.
        self._export = self._shared.acquire(lambda: _Holder(EmbedderExport.load(self._export_dir))).export

    def process(self, serialized: Sequence[bytes]):
        from realm_tf.corpus.block_records import parse_block_examples
        from realm_tf.retrieval.sentence_vectors import sentence_token_ids

        records = parse_block_examples(np.asarray(serialized, dtype=object))
        embeddings = self._export.embed_block_tokens(records["title_token_ids"], records["body_token_ids"])
        _blocks_embedded.inc(len(serialized))
        block_ids = records["block_id"].numpy().tolist()
        yield from zip(block_ids, embeddings)
        if self._sentences:
            owners, titles, pieces = [], [], []
            for block_id, title, body, starts in zip(block_ids, records["title_token_ids"].to_list(),
                                                     records["body_token_ids"].to_list(),
                                                     records["sentence_starts"].to_list()):
                for index, piece in enumerate(sentence_token_ids(body, starts)):
                    owners.append((block_id, index))
                    titles.append(title)
                    pieces.append(piece)
            vectors = self._export.embed_block_tokens(titles, pieces)
            _sentences_embedded.inc(len(owners))
            for (block_id, index), vector in zip(owners, vectors):
                yield beam.pvalue.TaggedOutput(SENTENCES, (block_id, index, vector))


class _Holder:
    """`shared.Shared` needs a weak-referenceable object."""

    def __init__(self, export):
        self.export = export


def _embedding_example(item: Tuple) -> bytes:
    """(block_id, float32 [P]) or (block_id, sentence_index, float32 [P]) -> a tf.train.Example."""
    import tensorflow as tf

    *ids, embedding = item
    int64 = lambda value: tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))  # noqa: E731
    feature = {"block_id": int64(ids[0]),
               "embedding": tf.train.Feature(float_list=tf.train.FloatList(value=embedding.tolist()))}
    if len(ids) == 2:
        feature["sentence_index"] = int64(ids[1])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def read_embedding_shards(pattern: str, output_path: str, batch_size: int = 65536,
                          sentences: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(block_ids int64 [N], embeddings float32 [N, P]) from embedding shards, sorted by block id
    (with `sentences`, shards of sentence vectors: by block id, then sentence index).

    The embeddings are written into a memory-mapped .npy at `output_path`, batch by batch,
    each row straight to its sorted place: what is held is the ids and one batch, not the
    embeddings twice over (13.35M x 128 blocks are 6.8 GB).
    """
    import tensorflow as tf

    paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    records = tf.data.TFRecordDataset(paths).batch(batch_size)
    keys = ("block_id", "sentence_index") if sentences else ("block_id",)
    id_spec = {key: tf.io.FixedLenFeature([], tf.int64) for key in keys}
    parsed = [tf.io.parse_example(batch, id_spec) for batch in records]
    columns = [np.concatenate([p[key].numpy() for p in parsed] or [np.zeros([0], np.int64)]) for key in keys]
    block_ids = columns[0]
    order = np.lexsort(columns[::-1])  # The last key sorts first: block id, then sentence index.
    if not len(block_ids):
        return block_ids, np.zeros((0, 0), np.float32)
    place = np.empty_like(order)
    place[order] = np.arange(len(order))  # Row i of the shards goes to row place[i].
    first = next(iter(tf.data.TFRecordDataset(paths).take(1))).numpy()
    dim = len(tf.train.Example.FromString(first).features.feature["embedding"].float_list.value)
    embeddings = np.lib.format.open_memmap(output_path, "w+", np.float32, (len(block_ids), dim))
    spec = {"embedding": tf.io.FixedLenFeature([dim], tf.float32)}
    start = 0
    for batch in records:
        rows = tf.io.parse_example(batch, spec)["embedding"].numpy()
        embeddings[place[start:start + len(rows)]] = rows
        start += len(rows)
    embeddings.flush()
    return block_ids[order], embeddings


def sentence_vectors_of(block_ids: np.ndarray, sentence_block_ids: np.ndarray, sentence_embeddings: np.ndarray,
                        config):
    """The version's `SentenceVectors` from its sorted block ids and the sentences' owners
    (sorted by block id, then place): each block's sentences are one run of rows."""
    from realm_tf.retrieval.sentence_vectors import SentenceVectors

    starts = np.searchsorted(sentence_block_ids, block_ids, side="left")
    ends = np.searchsorted(sentence_block_ids, block_ids, side="right")
    if (ends == starts).any() or ends.sum() - starts.sum() != len(sentence_block_ids):
        missing = block_ids[ends == starts]
        raise ManifestError(f"sentence vectors do not cover the blocks: {len(missing)} blocks without any "
                            f"(e.g. {missing[:5].tolist()}), {len(sentence_block_ids)} sentences in all")
    return SentenceVectors(sentence_embeddings, np.append(starts, len(sentence_block_ids)), config.block_weight,
                           config.rescore_depth)


def embed_in_process(blocks_dir: str, export, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The same embedding as the pipeline, in a plain loop: (block_ids [N], embeddings [N, P]), sorted by id.

    The reference for tests and the baseline for throughput.
    """
    from realm_tf.corpus.block_records import read_block_dataset

    manifest = BlocksManifest.read(blocks_dir)
    ids, rows = [], []
    for batch in read_block_dataset(manifest.block_paths(blocks_dir)).ragged_batch(batch_size):
        ids.append(batch["block_id"].numpy())
        rows.append(export.embed_block_tokens(batch["title_token_ids"], batch["body_token_ids"]))
    block_ids = np.concatenate(ids)
    order = np.argsort(block_ids, kind="stable")
    return block_ids[order], np.concatenate(rows)[order]


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m beam_pipelines.embed_and_index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks_dir", required=True, help="output of beam_pipelines.chunk_corpus")
    parser.add_argument("--embedder_export", required=True, help="an embedder export (realm_tf.retrieval.embedder_export)")
    parser.add_argument("--index_root", required=True, help="folder of index versions; a new one is added")
    parser.add_argument("--config", default="base", help="config for the index parameters (default: %(default)s)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. index.exact_below=0 (repeatable)")
    parser.add_argument("--batch_size", type=int, default=0,
                        help="blocks per embedding call; 0 takes index.embed_batch_size from the config")
    parser.add_argument("--version_name", default=None, help="name of the new version (default: step and time)")
    parser.add_argument("--shards_dir", default=None,
                        help="where the workers write the embedding shards, a folder every worker can write and this "
                             "machine can read (gs://... on Dataflow); a folder of this run's own is made in it and "
                             "removed once the version is published (default: the staging folder beside the index "
                             "versions, on this machine)")
    return add_verbose_flag(parser)


def embed_and_index(blocks_dir: str, embedder_export: str, index_root: str, config: ExperimentConfig,
                    batch_size: int = 0, version_name: Optional[str] = None, beam_args: Sequence[str] = (),
                    shards_dir: Optional[str] = None, export_origin: Optional[str] = None) -> str:
    """Embeds every block of `blocks_dir` with `embedder_export` on the runner `beam_args`
    name (the DirectRunner by default) and publishes an index version under `index_root`,
    built as `config.index` says; returns its path. `batch_size` 0 takes
    `index.embed_batch_size`; `shards_dir` is `--shards_dir`. `export_origin` is the
    export the version records as its source when `embedder_export` is a copy of it (the
    refresher's, on storage the workers share); by default `embedder_export` itself."""
    from realm_tf.corpus.block_store import open_block_arrays
    from realm_tf.retrieval.embedder_export import EmbedderExport
    from realm_tf.retrieval.index_build import publish_index_version
    from realm_tf.retrieval.lexical_index import Bm25Parameters, LexicalIndex

    with_sentences = config.index.sentence_vectors.enabled
    batch_size = batch_size or config.index.embed_batch_size
    manifest = BlocksManifest.read(blocks_dir)
    export = EmbedderExport.load(embedder_export)
    manifest.check_compatible(blocks_dir, export.featurizer.config.block_length, export.info.vocabulary_sha256)
    # The embeddings are staged beside the versions, where a dead run's are cleaned up.
    staging = stage_beside(os.path.join(index_root, "embeddings"))
    shards = FileSystems.join(shards_dir, f"embeddings-{uuid.uuid4().hex}") if shards_dir else staging
    started = time.monotonic()
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            embedded = (
                pipeline
                | "ListShards" >> beam.Create(manifest.block_paths(blocks_dir))
                | "ReadBlocks" >> beam.io.ReadAllFromTFRecord()
                | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
                | "Embed" >> beam.ParDo(EmbedBlocks(embedder_export, shared.Shared(), with_sentences)).with_outputs(
                    SENTENCES, main="blocks")
            )
            for name, vectors in [("embeddings", embedded.blocks)] + (
                    [(SENTENCES, embedded[SENTENCES])] if with_sentences else []):
                _ = (vectors
                     | f"ToExamples_{name}" >> beam.Map(_embedding_example)
                     | f"Write_{name}" >> beam.io.WriteToTFRecord(FileSystems.join(shards, name),
                                                                  file_name_suffix=".tfrecord"))
        block_ids, embeddings = read_embedding_shards(FileSystems.join(shards, "embeddings-*"),
                                                      os.path.join(staging, "embeddings.npy"))
        sentence_vectors = None
        if with_sentences:
            sentence_vectors = sentence_vectors_of(block_ids, *read_embedding_shards(
                FileSystems.join(shards, f"{SENTENCES}-*"), os.path.join(staging, "sentences.npy"), sentences=True),
                config.index.sentence_vectors)
        embedded_seconds = time.monotonic() - started
        if len(block_ids) != manifest.num_blocks:
            raise ManifestError(
                f"{blocks_dir}: the manifest lists {manifest.num_blocks} blocks but {len(block_ids)} were embedded"
            )
        lexical_index = None
        if config.index.hybrid.lexical_index:
            lexical_index = LexicalIndex.from_block_arrays(
                open_block_arrays(blocks_dir, manifest), export.featurizer.vocabulary,
                Bm25Parameters(config.index.hybrid.k1, config.index.hybrid.b), block_ids=block_ids)
        version = publish_index_version(
            index_root, embeddings, block_ids, config.index,
            metadata={
                "embedder_export": _absolute(export_origin or embedder_export),
                "step": export.step,
                "blocks_dir": os.path.abspath(blocks_dir),
                "embed_seconds": round(embedded_seconds, 3),
            },
            name=version_name,
            lexical_index=lexical_index,
            sentence_vectors=sentence_vectors,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if shards != staging and FileSystems.exists(shards):
            FileSystems.delete([shards])
    return version


def _absolute(path: str) -> str:
    """A local path made absolute; a URL (gs://...) as it is."""
    return path if "://" in path else os.path.abspath(path)


def run(argv: Optional[Sequence[str]] = None) -> str:
    """The command line: `embed_and_index` with its flags; options it does not know go to Beam."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    return embed_and_index(args.blocks_dir, args.embedder_export, args.index_root,
                           load_config(args.config, args.override), args.batch_size, args.version_name, beam_args,
                           args.shards_dir)


def summarize(version: str) -> str:
    """Two lines on a published version: how fast its blocks were embedded, and where it is."""
    from realm_tf.artifacts.index_version import IndexVersion

    from realm_tf.retrieval.sentence_vectors import SentenceVectors

    loaded = IndexVersion.load(version, verify=False)
    seconds = loaded.metadata["embed_seconds"]
    sentences = (len(SentenceVectors.load(loaded.sentences_dir, loaded.num_blocks, loaded.dim).embeddings)
                 if loaded.sentences_dir else 0)
    rows = f"{loaded.num_blocks} blocks" + (f" and their {sentences} sentences" if sentences else "")
    unit = "rows" if sentences else "blocks"
    return (f"embedded {rows} in {seconds:.1f}s ({(loaded.num_blocks + sentences) / seconds:.0f} {unit}/s), "
            f"{loaded.build['method']} ScaNN index"
            f"{' and a lexical index' if loaded.lexical_dir else ''}"
            f"{' and sentence vectors' if sentences else ''}\n"
            f"published index version {version}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return run_command(run, summarize, argv)


if __name__ == "__main__":
    sys.exit(main())

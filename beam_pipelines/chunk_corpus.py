"""Chunks a corpus into blocks: `python -m beam_pipelines.chunk_corpus --input ... --output_dir ...`.

    documents (JSONL / TFRecord files)
      -> read with file and line -> parse and validate -> reject duplicate ids
      -> sentence split, tokenize, pack greedily into blocks (realm_tf.corpus.chunking)
      -> blocks-SSSSS-of-NNNNN.tfrecord   (realm_tf.corpus.block_records)
         dead_letters-SSSSS-of-NNNNN.jsonl (with --on_bad_record=dead_letter)
      -> compact/blocks-SSSSS-of-NNNNN/   the compact store's piece of each shard, built by
                                          the worker that gets the shard
         manifest.json, then compact/arrays.json, written last
                                          (realm_tf.artifacts.manifests, .block_arrays)

Bad records stop the run with an error naming the file and line (default), or with
`--on_bad_record=dead_letter` go to the dead-letter files and are counted in the
manifest. Every option this script does not know (`--runner`, `--project`,
`--direct_running_mode`, `--temp_location`, ...) is passed to Beam untouched.
"""

import argparse
import collections
import functools
import json
import logging
import re
import sys
from typing import Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

import realm_tf
from realm_tf.artifacts.block_arrays import COMPACT_DIR, blocks_manifest_sha256, compact_dir, piece_name, \
    write_store_record
from realm_tf.artifacts.manifests import BLOCK_SHARD_PREFIX, DEAD_LETTER_SHARD_PREFIX, BlocksManifest
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.configs import ExperimentConfig, load_config
from realm_tf.corpus.documents import BadRecordError, Document
from realm_tf.errors import RealmError
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH, Vocabulary

from beam_pipelines.pipeline_options import pipeline_options
from beam_pipelines.document_sources import InputError, InputFile, list_input_files, read_documents
from beam_pipelines.output_dirs import basename, prepare_output_dir, write_manifest_last

FAIL = "fail"
DEAD_LETTER = "dead_letter"
_DEAD = "dead_letters"
_STATS = "stats"
_BAD_RECORD_IN_TRACEBACK = re.compile(r"BadRecordError: ([^\n]+)")


class RejectedRecordError(RealmError):
    """A bad record stopped the run (--on_bad_record=fail); the message names its file and line."""

    exit_status = 1
    hint = "pass --on_bad_record=dead_letter to set bad records aside and go on"


# Beam counters, live in the Dataflow job page while the pipeline runs.
METRICS_NAMESPACE = "chunk_corpus"
_documents_read = Metrics.counter(METRICS_NAMESPACE, "documents_read")
_documents_chunked = Metrics.counter(METRICS_NAMESPACE, "documents_chunked")
_blocks_written = Metrics.counter(METRICS_NAMESPACE, "blocks_written")
_pieces_written = Metrics.counter(METRICS_NAMESPACE, "compact_pieces_written")


class BadRecordRouter:
    """Raises a bad record's error (fail mode) or turns it into a dead-letter output."""

    def __init__(self, on_bad_record: str):
        self.on_bad_record = on_bad_record

    def __call__(self, error: BadRecordError):
        if self.on_bad_record == FAIL:
            raise error
        Metrics.counter(METRICS_NAMESPACE, f"bad_records_{error.kind}").inc()
        return beam.pvalue.TaggedOutput(
            _DEAD,
            {"file": error.source.path, "line": error.source.line, "kind": error.kind, "reason": error.reason},
        )


class ParseDocuments(beam.DoFn):
    """InputFile -> Document (main) | dead letter, reading the file record by record."""

    def __init__(self, route: BadRecordRouter):
        self._route = route

    def process(self, input_file: InputFile):
        for _, item in read_documents(input_file):
            if isinstance(item, Document):
                _documents_read.inc()
                yield item
            else:
                yield self._route(item)


class RejectDuplicateIds(beam.DoFn):
    """(id, [Document]) -> the first by file and line; later ones are bad records."""

    def __init__(self, route: BadRecordRouter):
        self._route = route

    def process(self, keyed):
        doc_id, documents = keyed
        first, *others = sorted(documents, key=lambda d: (d.source.path, d.source.line))
        for other in others:
            yield self._route(
                BadRecordError(other.source, "duplicate_id", f"duplicate document id {doc_id!r}, first at {first.source}")
            )
        yield first


class ChunkDocuments(beam.DoFn):
    """[Document] batch -> serialized block records (main) | stats Counter | dead letter."""

    def __init__(self, config: ExperimentConfig, route: BadRecordRouter):
        self._config = config
        self._route = route
        self._chunker = None

    def setup(self):
        from realm_tf.corpus.chunking import DocumentChunker

        self._chunker = DocumentChunker(self._config)

    def process(self, documents: List[Document]):
        for chunked in self._chunker.chunk(documents):
            if chunked.error is not None:
                yield self._route(chunked.error)
                continue
            for block in chunked.blocks:
                yield block.serialize()
            _documents_chunked.inc()
            _blocks_written.inc(len(chunked.blocks))
            yield beam.pvalue.TaggedOutput(_STATS, chunked.stats)


class WriteCompactPiece(beam.DoFn):
    """Builds the compact store's piece of each block shard written (re-tokenizing its texts
    for the answers' character offsets), on whichever worker gets the shard: at corpus scale
    no machine builds the whole store."""

    def __init__(self, config: ExperimentConfig, output_dir: str):
        self._features, self._output_dir = config.features, output_dir

    def setup(self):
        from realm_tf.features import Featurizer

        self._featurizer = Featurizer(self._features)

    def process(self, shard: str):
        from realm_tf.corpus.block_store import publish_shard_piece

        yield publish_shard_piece(shard, self._output_dir, self._featurizer)
        _pieces_written.inc()


def _sum_counters(counters: Iterable[collections.Counter]) -> collections.Counter:
    total = collections.Counter()
    for counter in counters:
        total.update(counter)
    return total


def build_pipeline(
    pipeline: beam.Pipeline,
    input_files: Sequence[InputFile],
    output_dir: str,
    config: ExperimentConfig,
    on_bad_record: str,
    num_shards: int,
    batch_size: int,
) -> None:
    """Adds the chunking steps to `pipeline`; `manifest.json` is written after every shard."""
    route = BadRecordRouter(on_bad_record)
    parsed = (
        pipeline
        | "ListFiles" >> beam.Create(list(input_files))
        | "ParseDocuments" >> beam.ParDo(ParseDocuments(route)).with_outputs(_DEAD, main="documents")
    )
    unique = (
        parsed.documents
        | "KeyById" >> beam.Map(lambda d: (d.id, d))
        | "GroupById" >> beam.GroupByKey()
        | "RejectDuplicateIds" >> beam.ParDo(RejectDuplicateIds(route)).with_outputs(_DEAD, main="documents")
    )
    chunked = (
        unique.documents
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
        | "Chunk" >> beam.ParDo(ChunkDocuments(config, route)).with_outputs(_DEAD, _STATS, main="blocks")
    )
    block_files = chunked.blocks | "WriteBlocks" >> beam.io.WriteToTFRecord(
        FileSystems.join(output_dir, BLOCK_SHARD_PREFIX), file_name_suffix=".tfrecord", num_shards=num_shards
    )
    pieces = block_files | "WriteCompactPieces" >> beam.ParDo(WriteCompactPiece(config, output_dir))
    dead = (parsed[_DEAD], unique[_DEAD], chunked[_DEAD]) | "AllDeadLetters" >> beam.Flatten()
    dead_files = (
        dead
        | "DeadLettersToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | "WriteDeadLetters" >> beam.io.WriteToText(
            FileSystems.join(output_dir, DEAD_LETTER_SHARD_PREFIX), file_name_suffix=".jsonl"
        )
    )
    num_blocks = chunked.blocks | "CountBlocks" >> beam.combiners.Count.Globally()
    stats = chunked[_STATS] | "SumStats" >> beam.CombineGlobally(_sum_counters)
    dead_counts = (
        dead
        | "DeadLetterKinds" >> beam.Map(lambda d: collections.Counter({d["kind"]: 1}))
        | "SumDeadLetters" >> beam.CombineGlobally(_sum_counters)
    )
    vocabulary = Vocabulary.from_file(config.features.vocab_file or BUNDLED_VOCAB_PATH)
    manifest_fields = dict(
        inputs=[f.path for f in input_files],
        on_bad_record=on_bad_record,
        block_length=config.features.block_length,
        max_title_tokens=config.corpus.max_title_tokens,
        sentence_splitter=config.corpus.sentence_splitter,
        vocabulary=dict(
            path=str(vocabulary.path),
            size=vocabulary.size,
            sha256=vocabulary.sha256,
            lower_case=config.features.lower_case,
        ),
        created_by=f"realm_tf {realm_tf.__version__}",
    )
    write_manifest_last(
        pipeline,
        functools.partial(_write_manifest, output_dir=output_dir, fields=manifest_fields),
        num_blocks=beam.pvalue.AsSingleton(num_blocks),
        stats=beam.pvalue.AsSingleton(stats),
        dead_counts=beam.pvalue.AsSingleton(dead_counts),
        block_files=beam.pvalue.AsList(block_files),
        dead_files=beam.pvalue.AsList(dead_files),
        pieces=beam.pvalue.AsList(pieces),
    )


def _write_manifest(output_dir, fields, num_blocks, stats, dead_counts, block_files, dead_files, pieces):
    stats = dict(stats)
    manifest = BlocksManifest(
        num_documents=stats.pop("documents", 0),
        num_blocks=num_blocks,
        num_dead_letters=sum(dead_counts.values()),
        dead_letters_by_kind=dict(sorted(dead_counts.items())),
        stats={k: stats.get(k, 0) for k in ("sentences", "split_sentences", "split_units", "truncated_titles")},
        block_shards=sorted(basename(f) for f in block_files),
        dead_letter_shards=sorted(basename(f) for f in dead_files),
        **fields,
    )
    if stats.get("blocks", 0) != num_blocks:
        raise RuntimeError(f"blocks counted while chunking ({stats.get('blocks')}) != blocks written ({num_blocks})")
    shard_pieces = [piece_name(shard) for shard in manifest.block_shards]
    if sorted(pieces) != sorted(shard_pieces):
        raise RuntimeError(f"compact pieces written {sorted(pieces)} != block shards {manifest.block_shards}")
    manifest.write(output_dir)
    # After the manifest: the store names the manifest it belongs to.
    write_store_record(compact_dir(output_dir), shard_pieces, blocks_manifest_sha256(output_dir))


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.chunk_corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", action="append", required=True,
                        help="input file or glob, local or cloud (repeatable); JSONL lines or TFRecord "
                             "tf.train.Examples with id, title and text")
    parser.add_argument("--output_dir", required=True, help="directory for the block shards and manifest.json")
    parser.add_argument("--config", default="base",
                        help="config name in configs/ or a YAML path; sets block length, vocabulary, "
                             "title cap and sentence splitter (default: %(default)s, the paper's 288-wordpiece blocks)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. features.block_length=128 (repeatable)")
    parser.add_argument("--input_format", choices=("auto", "jsonl", "tfrecord"), default="auto",
                        help="format of the inputs; auto decides by file suffix (default: %(default)s)")
    parser.add_argument("--on_bad_record", choices=(FAIL, DEAD_LETTER), default=FAIL,
                        help="fail: stop at the first bad record, naming its file and line; dead_letter: write it "
                             "to dead_letters-*.jsonl and count it in the manifest (default: %(default)s)")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="number of block shards; 0 lets the runner decide (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=64,
                        help="documents tokenized per TF call (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace blocks already in --output_dir")
    return add_verbose_flag(parser)


def chunk_corpus(inputs: Sequence[str], output_dir: str, config: ExperimentConfig, input_format: str = "auto",
                 on_bad_record: str = FAIL, num_shards: int = 0, batch_size: int = 64, overwrite: bool = False,
                 beam_args: Sequence[str] = ()) -> BlocksManifest:
    """Chunks the documents of `inputs` (files or globs) into blocks in `output_dir`, on the
    runner `beam_args` name (the DirectRunner by default), and returns the manifest written.

    Raises:
      InputError, VocabularyError: before the pipeline starts.
      RejectedRecordError: the first bad record, in fail mode.
    """
    input_files = list_input_files(inputs, input_format)
    prepare_output_dir(output_dir, overwrite, (BLOCK_SHARD_PREFIX, DEAD_LETTER_SHARD_PREFIX), "chunked blocks")
    # The compact store of blocks being replaced is theirs, not the new ones'; the pipeline writes it again.
    stale_store = FileSystems.join(output_dir, COMPACT_DIR)
    if FileSystems.exists(stale_store):
        FileSystems.delete([stale_store])
    options = pipeline_options(beam_args)
    logging.info("chunking %d file(s) into %s", len(input_files), output_dir)
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, input_files, output_dir, config, on_bad_record, num_shards, batch_size)
    except Exception as e:  # The runner wraps the BadRecordError a worker raised.
        message = bad_record_message(e)
        if message is None:
            raise
        raise RejectedRecordError(message) from e
    manifest = BlocksManifest.read(output_dir)
    if manifest.num_blocks == 0:
        raise InputError(
            f"no blocks were produced from {list(inputs)}: all {manifest.num_dead_letters} record(s) were rejected, "
            f"see {output_dir}/{DEAD_LETTER_SHARD_PREFIX}-*.jsonl"
        )
    return manifest


def run(argv: Optional[Sequence[str]] = None) -> BlocksManifest:
    """The command line: `chunk_corpus` with its flags; options it does not know go to Beam."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    return chunk_corpus(args.input, args.output_dir, load_config(args.config, args.override), args.input_format,
                        args.on_bad_record, args.num_shards, args.batch_size, args.overwrite, beam_args)


def bad_record_message(error: BaseException) -> Optional[str]:
    """The message of the BadRecordError behind `error`, which the runner may have wrapped.

    In-process runners chain the original exception; multi-process and remote runners
    only carry its traceback text, where it reads "...BadRecordError: <message>".
    """
    seen = set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, BadRecordError):
            return str(cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    found = _BAD_RECORD_IN_TRACEBACK.search(str(error))
    return found.group(1).strip() if found else None


class _WithoutBadRecordTracebacks(logging.Filter):
    """Drops the runner's log of a bad record's error, which comes with a traceback: main
    reports that error once, in one line naming the file and line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not ((error is not None and bad_record_message(error))
                    or _BAD_RECORD_IN_TRACEBACK.search(record.getMessage()))


def summarize(manifest: BlocksManifest, output_dir: str) -> str:
    lines = [
        f"wrote {manifest.num_blocks} blocks from {manifest.num_documents} documents "
        f"to {output_dir} ({len(manifest.block_shards)} shard(s))",
        f"  blocks of at most {manifest.block_length} wordpieces (title counted); "
        f"{manifest.stats['sentences']} sentences, {manifest.stats['split_sentences']} longer than a block were split",
    ]
    if manifest.num_dead_letters:
        lines.append(f"  {manifest.num_dead_letters} bad record(s) in dead_letters-*.jsonl: {manifest.dead_letters_by_kind}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args, _ = build_arg_parser().parse_known_args(argv)
    # Beam's workers log the error they re-raise, traceback and all.
    logging.getLogger("apache_beam.runners.common").addFilter(_WithoutBadRecordTracebacks())
    return run_command(run, lambda manifest: summarize(manifest, args.output_dir), argv)


if __name__ == "__main__":
    sys.exit(main())

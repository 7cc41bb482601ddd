"""Masks one salient span per sentence of every block: REALM's pre-training queries.

    python -m beam_pipelines.make_pretraining_examples --blocks_dir=... --output_dir=... [--config=tiny]

    blocks-*.tfrecord (the shards listed in the blocks manifest; beam_pipelines.chunk_corpus)
      -> batches of blocks -> sentences (corpus.sentence_splitter)
      -> salient spans (pretrain.salient_span_detector), one detector and one tokenize call per batch
      -> one masked query per sentence          (realm_tf.features.salient_spans.mask_sentence)
      -> examples-SSSSS-of-NNNNN.tfrecord      (realm_tf.corpus.pretraining_examples)
         manifest.json, written last           (counts by kind, skipped sentences, settings)

`pretrain.masking: salient` masks a detected span where a sentence has a usable one
and random wordpieces otherwise; `random` masks random wordpieces only. Each
sentence's randomness is seeded from (--seed, block id, sentence index), so every
runner, worker count and batching writes the same examples. Blocks chunked for
another block length or vocabulary than the config's are refused. Options this
script does not know go to Beam.
"""

import argparse
import functools
import collections
import logging
import random
import sys
from typing import Callable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

import realm_tf
from realm_tf.artifacts.manifests import EXAMPLE_SHARD_PREFIX, BlocksManifest, ManifestError, PretrainingManifest
from realm_tf.cli import add_verbose_flag, run_command
from realm_tf.configs import ConfigError, ExperimentConfig, load_config
from realm_tf.corpus.block_records import BlockRecord
from realm_tf.corpus.pretraining_examples import PretrainingExample
from realm_tf.errors import RealmError
from realm_tf.features.salient_spans import (
    RANDOM,
    SALIENT,
    SpanDetector,
    detect_spans,
    mask_sentence,
    masking_options,
    span_detector_factory,
    strings_to_tokenize,
)
from realm_tf.features.sentences import get_sentence_splitter
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH, Vocabulary

from beam_pipelines.pipeline_options import pipeline_options
from beam_pipelines.output_dirs import basename, prepare_output_dir, write_manifest_last

_STATS = "stats"
SALIENT_MASKING = "salient"  # pretrain.masking; "random" masks random wordpieces only.
_KINDS = (SALIENT, RANDOM)

METRICS_NAMESPACE = "make_pretraining_examples"
_blocks_read = Metrics.counter(METRICS_NAMESPACE, "blocks_read")
_sentences_too_short = Metrics.counter(METRICS_NAMESPACE, "sentences_too_short")
_examples = {kind: Metrics.counter(METRICS_NAMESPACE, f"examples_{kind}") for kind in _KINDS}


def sentence_rng(seed: int, block_id: int, index: int) -> random.Random:
    """The randomness of the `index`-th sentence of a block: the same on every runner and worker.

    `random.Random` seeds from a string through SHA-512, not Python's salted `hash`.
    """
    return random.Random(f"{seed}:{block_id}:{index}")


class MaskSentences(beam.DoFn):
    """[serialized block record] batch -> serialized pre-training examples (main) | stats Counter.

    `detector_factory` is the span detector's factory (None: random masking), shipped
    with the DoFn so that workers need not have registered it themselves.
    """

    def __init__(self, config: ExperimentConfig, seed: int, detector_factory: Optional[Callable[[], SpanDetector]]):
        self._config = config
        self._seed = seed
        self._detector_factory = detector_factory

    def setup(self):
        from realm_tf.features.featurizer import Featurizer

        self._featurizer = Featurizer(self._config.features)
        self._split = get_sentence_splitter(self._config.corpus.sentence_splitter)
        self._detect = self._detector_factory() if self._detector_factory else None
        self._masking = masking_options(self._config, self._featurizer.vocabulary)

    def process(self, serialized: Sequence[bytes]):
        # (block_id, index in block, sentence, spans) for the whole batch, so that all
        # its strings go through one tokenize call: eager TF calls one by one are slow.
        # Spans too are found for the whole batch at once: a tagger runs faster on batches.
        split = [(record.block_id, index, record.text[start:end])
                 for record in map(BlockRecord.from_bytes, serialized)
                 for index, (start, end) in enumerate(self._split(record.text))]
        found = detect_spans(self._detect, [text for _, _, text in split]) if self._detect else [[]] * len(split)
        sentences = [(block_id, index, text, spans) for (block_id, index, text), spans in zip(split, found)]
        strings = list(dict.fromkeys(s for _, _, text, spans in sentences for s in strings_to_tokenize(text, spans)))
        token_ids = dict(zip(strings, self._featurizer.tokenize(strings).to_list()))

        def tokenize(texts: List[str]) -> List[List[int]]:
            return [token_ids[t] for t in texts]

        stats = collections.Counter(blocks=len(serialized), sentences=len(sentences))
        for block_id, index, text, spans in sentences:
            query = mask_sentence(
                text,
                tokenize,
                spans,
                rng=sentence_rng(self._seed, block_id, index),
                **self._masking,
            )
            stats["sentences_without_spans"] += self._detect is not None and not spans
            if query is None:
                stats["too_short"] += 1
                continue
            stats[query.kind] += 1
            stats["windowed_sentences"] += len(token_ids[text]) > self._masking["max_query_tokens"]
            yield PretrainingExample(
                query_token_ids=query.token_ids,
                masked_positions=query.masked_positions,
                masked_token_ids=query.masked_token_ids,
                block_id=block_id,
                kind=query.kind,
                sentence=text,
            ).serialize()
        _blocks_read.inc(len(serialized))
        _sentences_too_short.inc(stats["too_short"])
        for kind, counter in _examples.items():
            counter.inc(stats[kind])
        yield beam.pvalue.TaggedOutput(_STATS, stats)


def build_pipeline(
    pipeline: beam.Pipeline,
    blocks_dir: str,
    blocks_manifest: BlocksManifest,
    output_dir: str,
    config: ExperimentConfig,
    seed: int,
    num_shards: int,
    batch_size: int,
) -> None:
    """Adds the masking steps to `pipeline`; `manifest.json` is written after every shard."""
    pretrain = config.pretrain
    salient = pretrain.masking == SALIENT_MASKING
    detector_factory = (span_detector_factory(pretrain.salient_span_detector, pretrain.salient_entity_types)
                        if salient else None)
    masked = (
        pipeline
        | "ListShards" >> beam.Create(blocks_manifest.block_paths(blocks_dir))
        | "ReadBlocks" >> beam.io.ReadAllFromTFRecord()
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
        | "MaskSentences" >> beam.ParDo(MaskSentences(config, seed, detector_factory)).with_outputs(
            _STATS, main="examples")
    )
    example_files = masked.examples | "WriteExamples" >> beam.io.WriteToTFRecord(
        FileSystems.join(output_dir, EXAMPLE_SHARD_PREFIX), file_name_suffix=".tfrecord", num_shards=num_shards
    )
    num_examples = masked.examples | "CountExamples" >> beam.combiners.Count.Globally()
    stats = masked[_STATS] | "SumStats" >> beam.CombineGlobally(lambda counters: sum(counters, collections.Counter()))
    manifest_fields = dict(
        blocks_dir=blocks_dir,
        query_length=config.features.query_length,
        max_masked_tokens=pretrain.max_masked_tokens,
        masking=pretrain.masking,
        salient_span_detector=pretrain.salient_span_detector,
        random_mask_probability=pretrain.random_mask_probability,
        sentence_splitter=config.corpus.sentence_splitter,
        seed=seed,
        vocabulary=blocks_manifest.vocabulary,
        created_by=f"realm_tf {realm_tf.__version__}",
    )
    write_manifest_last(
        pipeline,
        functools.partial(_write_manifest, output_dir=output_dir, fields=manifest_fields),
        num_examples=beam.pvalue.AsSingleton(num_examples),
        stats=beam.pvalue.AsSingleton(stats),
        example_files=beam.pvalue.AsList(example_files),
    )


def _write_manifest(output_dir, fields, num_examples, stats, example_files):
    manifest = PretrainingManifest(
        num_blocks=stats["blocks"],
        num_sentences=stats["sentences"],
        num_examples=num_examples,
        examples_by_kind={kind: stats[kind] for kind in _KINDS},
        skipped_sentences={"too_short": stats["too_short"]},
        stats={k: stats[k] for k in ("sentences_without_spans", "windowed_sentences")},
        example_shards=sorted(basename(f) for f in example_files),
        **fields,
    )
    if sum(manifest.examples_by_kind.values()) != num_examples:
        raise RuntimeError(f"examples counted while masking ({manifest.examples_by_kind}) != written ({num_examples})")
    if num_examples + stats["too_short"] != stats["sentences"]:
        raise RuntimeError(f"{stats['sentences']} sentences != {num_examples} examples + {stats['too_short']} skipped")
    manifest.write(output_dir)


def check_config(config: ExperimentConfig, blocks_dir: str, blocks_manifest: BlocksManifest) -> None:
    """Refuses, before the pipeline starts, blocks or settings the workers would fail on."""
    vocabulary = Vocabulary.from_file(config.features.vocab_file or BUNDLED_VOCAB_PATH)
    blocks_manifest.check_compatible(blocks_dir, config.features.block_length, vocabulary.sha256,
                                     config.features.lower_case)
    checks = [("corpus.sentence_splitter", get_sentence_splitter, config.corpus.sentence_splitter)]
    if config.pretrain.masking == SALIENT_MASKING:
        checks.append(("pretrain.salient_span_detector", span_detector_factory, config.pretrain.salient_span_detector))
    for field, look_up, name in checks:
        try:
            look_up(name)
        except (ValueError, RealmError) as e:  # RealmError: a detector's model is not installed.
            raise ConfigError(f"config field {field}: {e}") from e


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.make_pretraining_examples",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--blocks_dir", required=True, help="output of beam_pipelines.chunk_corpus")
    parser.add_argument("--output_dir", required=True, help="directory for the example shards and manifest.json")
    parser.add_argument("--config", default="base",
                        help="config name in configs/ or a YAML path; sets query length, masking, span detector "
                             "and sentence splitter (default: %(default)s)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. pretrain.masking=random (repeatable)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the masking; with the blocks it fixes the output (default: %(default)s)")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="number of example shards; 0 lets the runner decide (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="blocks whose sentences are tokenized in one TF call (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace examples already in --output_dir")
    return add_verbose_flag(parser)


def make_pretraining_examples(blocks_dir: str, output_dir: str, config: ExperimentConfig, seed: int = 0,
                              num_shards: int = 0, batch_size: int = 32, overwrite: bool = False,
                              beam_args: Sequence[str] = ()) -> PretrainingManifest:
    """Masks the sentences of `blocks_dir`'s blocks into pre-training examples in
    `output_dir`, on the runner `beam_args` name (the DirectRunner by default), and
    returns the manifest written.

    Raises:
      ConfigError, ManifestError, VocabularyError, InputError: before the pipeline starts.
    """
    blocks_manifest = BlocksManifest.read(blocks_dir)
    check_config(config, blocks_dir, blocks_manifest)
    prepare_output_dir(output_dir, overwrite, (EXAMPLE_SHARD_PREFIX,), "pre-training examples")
    logging.info("masking the sentences of %d blocks from %s into %s", blocks_manifest.num_blocks, blocks_dir,
                 output_dir)
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        build_pipeline(pipeline, blocks_dir, blocks_manifest, output_dir, config, seed, num_shards, batch_size)
    manifest = PretrainingManifest.read(output_dir)
    if manifest.num_blocks != blocks_manifest.num_blocks:
        raise ManifestError(
            f"{blocks_dir}: the manifest lists {blocks_manifest.num_blocks} blocks but {manifest.num_blocks} were read"
        )
    return manifest


def run(argv: Optional[Sequence[str]] = None) -> PretrainingManifest:
    """The command line: `make_pretraining_examples` with its flags; options it does not know go to Beam."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    return make_pretraining_examples(args.blocks_dir, args.output_dir, load_config(args.config, args.override),
                                     args.seed, args.num_shards, args.batch_size, args.overwrite, beam_args)


def summarize(manifest: PretrainingManifest, output_dir: str) -> str:
    kinds = manifest.examples_by_kind
    masking = manifest.masking
    if masking == SALIENT_MASKING:
        masking += f", spans from {manifest.salient_span_detector}"
    return "\n".join([
        f"wrote {manifest.num_examples} pre-training examples from {manifest.num_sentences} sentences of "
        f"{manifest.num_blocks} blocks to {output_dir} ({len(manifest.example_shards)} shard(s))",
        f"  {kinds[SALIENT]} salient, {kinds[RANDOM]} random (masking {masking}); "
        f"{manifest.skipped_sentences['too_short']} sentences skipped (fewer than 2 wordpieces), "
        f"{manifest.stats['windowed_sentences']} cut to {manifest.query_length - 2}-wordpiece windows",
    ])


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args, _ = build_arg_parser().parse_known_args(argv)
    return run_command(run, lambda manifest: summarize(manifest, args.output_dir), argv)


if __name__ == "__main__":
    sys.exit(main())

"""`manifest.json` of the Beam pipelines' output folders: what was written, and from what.

    <blocks_dir>/                   beam_pipelines.chunk_corpus
      blocks-SSSSS-of-NNNNN.tfrecord      block records (realm_tf.corpus.block_records)
      dead_letters-*.jsonl                rejected input records (dead-letter mode)
      manifest.json                       `BlocksManifest`, written after every shard
    <examples_dir>/                 beam_pipelines.make_pretraining_examples
      examples-SSSSS-of-NNNNN.tfrecord    pre-training examples (realm_tf.corpus.pretraining_examples)
      manifest.json                       `PretrainingManifest`

Later stages (ICT, the embed-and-index pipeline, pre-training) read the manifest to find
the shards, which it lists by name, and to refuse blocks built with another vocabulary
or block length. Paths may be anything Beam's FileSystems opens (gs:// with the gcp extra).
"""

import dataclasses
import json
from typing import ClassVar, Dict, List, Optional

from realm_tf.errors import RealmError

MANIFEST_NAME = "manifest.json"
BLOCKS_FORMAT = "realm_tf.blocks.v1"
PRETRAINING_FORMAT = "realm_tf.pretraining_examples.v1"
# The shards' name prefixes (Beam adds -SSSSS-of-NNNNN and the suffix).
BLOCK_SHARD_PREFIX = "blocks"
EXAMPLE_SHARD_PREFIX = "examples"
DEAD_LETTER_SHARD_PREFIX = "dead_letters"


class ManifestError(RealmError, ValueError):
    """An output directory without a readable, complete manifest, or one that does not fit."""


class JsonManifest:
    """Base of the dataclass manifests that pipelines write last into their output folder.

    A subclass sets FORMAT (also its `format` field's default) and WRITTEN_BY (the
    pipeline, for errors).
    """

    FORMAT: ClassVar[str]
    WRITTEN_BY: ClassVar[str]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, directory: str) -> None:
        """Writes `directory/manifest.json`; called after every shard is in place."""
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(FileSystems.join(directory, MANIFEST_NAME)) as f:
            f.write(self.to_json().encode("utf-8"))

    @classmethod
    def read(cls, directory: str):
        from apache_beam.io.filesystems import FileSystems

        path = FileSystems.join(directory, MANIFEST_NAME)
        if not FileSystems.exists(path):
            raise ManifestError(f"{path}: no manifest; is {directory!r} the output of {cls.WRITTEN_BY}?")
        with FileSystems.open(path) as f:
            try:
                values = json.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ManifestError(f"{path}: not valid JSON: {e}") from e
        if values.get("format") != cls.FORMAT:
            raise ManifestError(f"{path}: format {values.get('format')!r}, expected {cls.FORMAT!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(values))
        if missing:
            raise ManifestError(f"{path}: missing fields {missing}")
        return cls(**{k: v for k, v in values.items() if k in names})


def shard_paths(directory: str, names: List[str]) -> List[str]:
    """Full paths of shards listed by name in a manifest."""
    from apache_beam.io.filesystems import FileSystems

    return [FileSystems.join(directory, name) for name in names]


@dataclasses.dataclass
class BlocksManifest(JsonManifest):
    """Attributes:
      inputs: the input files read.
      num_documents: documents chunked into blocks.
      num_blocks: block records written, over all `block_shards`.
      num_dead_letters: records rejected into `dead_letter_shards` (dead-letter mode).
      dead_letters_by_kind: that count by kind ("malformed_json", "duplicate_id", ...).
      on_bad_record: "fail" or "dead_letter".
      block_length, max_title_tokens, sentence_splitter: the chunking settings.
      vocabulary: {"path", "size", "sha256", "lower_case"} of the WordPiece vocabulary.
      stats: sentence and truncation counts (see `realm_tf.corpus.chunking`).
      block_shards, dead_letter_shards: file names, relative to the directory.
      created_by: the realm_tf version.
    """

    inputs: List[str]
    num_documents: int
    num_blocks: int
    num_dead_letters: int
    dead_letters_by_kind: Dict[str, int]
    on_bad_record: str
    block_length: int
    max_title_tokens: int
    sentence_splitter: str
    vocabulary: Dict[str, object]
    stats: Dict[str, int]
    block_shards: List[str]
    dead_letter_shards: List[str]
    created_by: str
    format: str = BLOCKS_FORMAT

    FORMAT: ClassVar[str] = BLOCKS_FORMAT
    WRITTEN_BY: ClassVar[str] = "beam_pipelines.chunk_corpus"

    def check_compatible(self, directory: str, block_length: int, vocabulary_sha256: str,
                         lower_case: Optional[bool] = None) -> None:
        """Refuses blocks chunked for another block length, or tokenized otherwise
        (`check_tokenization`), than the model's, and an empty block set."""
        if self.block_length != block_length:
            raise ManifestError(
                f"{directory}: blocks were chunked for block_length {self.block_length}, "
                f"but the model packs blocks of {block_length} (features.block_length)"
            )
        self.check_tokenization(directory, vocabulary_sha256, lower_case)
        if self.num_blocks == 0:
            raise ManifestError(f"{directory}: the block set is empty")

    def check_tokenization(self, directory: str, vocabulary_sha256: str, lower_case: Optional[bool] = None) -> None:
        """Refuses blocks tokenized with another vocabulary than the one of `vocabulary_sha256`,
        or, when `lower_case` is given, with another casing."""
        theirs = self.vocabulary
        if theirs.get("sha256") == vocabulary_sha256 and lower_case in (None, theirs.get("lower_case")):
            return
        ours = f"sha256 {vocabulary_sha256[:12]}..." + ("" if lower_case is None else f", lower_case={lower_case}")
        raise ManifestError(
            f"{directory}: blocks were tokenized with vocabulary {theirs.get('path')} (sha256 "
            f"{str(theirs.get('sha256'))[:12]}..., lower_case={theirs.get('lower_case')}), not the model's ({ours}); "
            "were the blocks made with another features.vocab_file / features.lower_case?")

    def block_paths(self, directory: str) -> List[str]:
        """Full paths of the block shards."""
        return shard_paths(directory, self.block_shards)


@dataclasses.dataclass
class PretrainingManifest(JsonManifest):
    """`manifest.json` of a pre-training examples directory, written after every shard.

    Attributes:
      blocks_dir: the block directory the sentences came from.
      num_blocks: blocks read.
      num_sentences: sentences found in them: `num_examples` plus the skipped ones.
      num_examples: examples written, over all `example_shards`.
      examples_by_kind: that count by kind, {"salient": n, "random": m}.
      skipped_sentences: sentences without an example, by reason ({"too_short": n}:
        fewer than 2 wordpieces).
      stats: "sentences_without_spans" (salient masking: the detector found none), "windowed_sentences"
        (longer than the query, cut to a window).
      query_length, max_masked_tokens, masking, salient_span_detector,
      random_mask_probability, sentence_splitter, seed: the settings used.
      vocabulary: the blocks manifest's vocabulary ({"path", "size", "sha256", "lower_case"}).
      example_shards: file names, relative to the directory.
      created_by: the realm_tf version.
    """

    blocks_dir: str
    num_blocks: int
    num_sentences: int
    num_examples: int
    examples_by_kind: Dict[str, int]
    skipped_sentences: Dict[str, int]
    stats: Dict[str, int]
    query_length: int
    max_masked_tokens: int
    masking: str
    salient_span_detector: str
    random_mask_probability: float
    sentence_splitter: str
    seed: int
    vocabulary: Dict[str, object]
    example_shards: List[str]
    created_by: str
    format: str = PRETRAINING_FORMAT

    FORMAT: ClassVar[str] = PRETRAINING_FORMAT
    WRITTEN_BY: ClassVar[str] = "beam_pipelines.make_pretraining_examples"

    def example_paths(self, directory: str) -> List[str]:
        """Full paths of the example shards."""
        return shard_paths(directory, self.example_shards)

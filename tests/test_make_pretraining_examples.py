"""The pre-training examples pipeline on a small blocks dir, run for real on Beam's DirectRunner."""

import collections
import dataclasses
import functools
import json

import pytest
import tensorflow as tf

from beam_pipelines import chunk_corpus, make_pretraining_examples
from beam_pipelines.document_sources import InputError
from realm_tf.artifacts.manifests import BlocksManifest, ManifestError, PretrainingManifest
from realm_tf.corpus.block_records import BlockRecord
from realm_tf.corpus.pretraining_examples import PretrainingExample, read_pretraining_dataset
from realm_tf.features import Featurizer, get_sentence_splitter
from realm_tf.features.salient_spans import get_span_detector, mask_sentence, register_span_detector

from conftest import CORPUS

DOCS = 30
MASK = 103
MAX_QUERY_TOKENS = 30  # tiny.yaml: query_length 32, less [CLS] and [SEP].
MAX_MASKED_TOKENS = 10


@pytest.fixture(scope="module")
def blocks_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretraining_corpus")
    docs = root / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:DOCS]), encoding="utf-8")
    chunk_corpus.run([f"--input={docs}", f"--output_dir={root / 'blocks'}", "--config=tiny"])
    return str(root / "blocks")


@pytest.fixture(scope="module")
def blocks(blocks_dir):
    manifest = BlocksManifest.read(blocks_dir)
    return {r.block_id: r for r in map(BlockRecord.from_bytes, _raw(manifest.block_paths(blocks_dir)))}


@pytest.fixture(scope="module")
def featurizer(tiny_config):
    return Featurizer(tiny_config.features)


def _raw(paths):
    return [raw.numpy() for raw in tf.data.TFRecordDataset(paths)]


def _run(blocks_dir, output_dir, *extra):
    manifest = make_pretraining_examples.run(
        [f"--blocks_dir={blocks_dir}", f"--output_dir={output_dir}", "--config=tiny", *extra])
    return manifest, _raw(manifest.example_paths(str(output_dir)))


@pytest.fixture(scope="module")
def in_memory(blocks_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("in_memory")
    manifest, raw = _run(blocks_dir, output_dir, "--direct_running_mode=in_memory", "--num_shards=2")
    return output_dir, manifest, [PretrainingExample.from_bytes(r) for r in raw], raw


def test_the_manifest_counts_what_was_written(in_memory, blocks):
    output_dir, manifest, examples, _ = in_memory
    assert json.loads((output_dir / "manifest.json").read_text())["format"] == "realm_tf.pretraining_examples.v1"
    assert manifest == PretrainingManifest.read(str(output_dir))
    assert manifest.example_shards == ["examples-00000-of-00002.tfrecord", "examples-00001-of-00002.tfrecord"]
    assert manifest.num_blocks == len(blocks)
    assert manifest.num_examples == len(examples) > 0
    assert manifest.examples_by_kind == dict(collections.Counter(e.kind for e in examples))
    assert manifest.num_sentences == manifest.num_examples + manifest.skipped_sentences["too_short"]
    splitter = get_sentence_splitter("rules")
    assert manifest.num_sentences == sum(len(splitter(b.text)) for b in blocks.values())
    assert (manifest.query_length, manifest.max_masked_tokens, manifest.masking, manifest.salient_span_detector) == (
        32, MAX_MASKED_TOKENS, "salient", "dates_and_entities")
    assert manifest.vocabulary == BlocksManifest.read(manifest.blocks_dir).vocabulary
    # Most sentences of Wikipedia name something or give a date.
    assert manifest.examples_by_kind["salient"] >= 0.9 * manifest.num_examples


def test_every_example_masks_consistently(in_memory, blocks):
    _, _, examples, _ = in_memory
    for example in examples:
        assert 2 <= len(example.query_token_ids) <= MAX_QUERY_TOKENS
        assert 1 <= len(example.masked_positions) <= MAX_MASKED_TOKENS
        assert len(example.masked_token_ids) == len(example.masked_positions)
        assert example.masked_positions == sorted(set(example.masked_positions))
        assert [i for i, t in enumerate(example.query_token_ids) if t == MASK] == example.masked_positions
        assert MASK not in example.masked_token_ids
        if example.kind == "salient":  # One span: contiguous wordpieces.
            assert example.masked_positions == list(range(example.masked_positions[0],
                                                          example.masked_positions[-1] + 1))
        # The source block is a real block that holds the sentence.
        assert example.sentence in blocks[example.block_id].text


def test_examples_are_what_mask_sentence_gives_with_the_per_sentence_seed(in_memory, blocks, featurizer):
    _, _, examples, _ = in_memory
    detect = get_span_detector("dates_and_entities")
    splitter = get_sentence_splitter("rules")
    expected = []
    for block in blocks.values():
        for index, (start, end) in enumerate(splitter(block.text)):
            text = block.text[start:end]
            query = mask_sentence(
                text, lambda texts: featurizer.tokenize(texts).to_list(), detect(text),
                mask_id=MASK, max_query_tokens=MAX_QUERY_TOKENS, max_masked_tokens=MAX_MASKED_TOKENS,
                rng=make_pretraining_examples.sentence_rng(0, block.block_id, index),
                random_fallback_probability=0.15, vocab_size=featurizer.vocabulary.size)
            expected.append(PretrainingExample(query.token_ids, query.masked_positions, query.masked_token_ids,
                                               block.block_id, query.kind, text))
    assert sorted(map(dataclasses.astuple, examples)) == sorted(map(dataclasses.astuple, expected))


def test_read_pretraining_dataset_gives_one_dimensional_int64_ids(in_memory):
    output_dir, manifest, examples, _ = in_memory
    first = next(iter(read_pretraining_dataset(manifest.example_paths(str(output_dir)))))
    for name in ("query_token_ids", "masked_positions", "masked_token_ids"):
        assert first[name].dtype == tf.int64 and first[name].shape.rank == 1
    by_sentence = {(e.block_id, e.sentence): e for e in examples}
    example = by_sentence[(int(first["block_id"]), first["sentence"].numpy().decode("utf-8"))]
    assert first["query_token_ids"].numpy().tolist() == example.query_token_ids
    assert first["kind"].numpy().decode() == example.kind


def test_multi_processing_runner_writes_the_same_examples(in_memory, blocks_dir, tmp_path):
    _, manifest, _, raw = in_memory
    # Registered here only: the pipeline ships the factory to its worker processes.
    register_span_detector("launcher_only", functools.partial(get_span_detector, "dates_and_entities"))
    other, other_raw = _run(blocks_dir, tmp_path, "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2", "--batch_size=5",
                            "--override=pretrain.salient_span_detector=launcher_only")
    assert sorted(other_raw) == sorted(raw)
    assert (other.examples_by_kind, other.num_sentences) == (manifest.examples_by_kind, manifest.num_sentences)


def test_random_masking_and_a_registered_detector(blocks_dir, tmp_path, featurizer):
    _, raw = _run(blocks_dir, tmp_path / "random", "--override=pretrain.masking=random", "--seed=3")
    examples = [PretrainingExample.from_bytes(r) for r in raw]
    assert {e.kind for e in examples} == {"random"}
    # The in-memory runner shares this process's registry.
    register_span_detector("first_word", lambda: lambda text: [(0, text.find(" "))] if " " in text else [])
    manifest, raw = _run(blocks_dir, tmp_path / "custom", "--override=pretrain.salient_span_detector=first_word")
    examples = [PretrainingExample.from_bytes(r) for r in raw]
    assert manifest.salient_span_detector == "first_word"
    assert manifest.examples_by_kind["salient"] >= 0.9 * manifest.num_examples
    for example in examples:
        if example.kind == "salient":  # The first word, in a window that starts with it.
            first_word = example.sentence.split(" ")[0]
            assert example.masked_positions == list(range(len(example.masked_token_ids)))
            assert example.masked_token_ids == featurizer.tokenize([first_word]).to_list()[0]


def test_blocks_of_another_length_are_refused(blocks_dir, tmp_path, capsys):
    argv = [f"--blocks_dir={blocks_dir}", f"--output_dir={tmp_path}", "--config=tiny",
            "--override=features.block_length=64", "--override=corpus.max_title_tokens=8"]
    with pytest.raises(ManifestError, match="chunked for block_length 128, but the model packs blocks of 64"):
        make_pretraining_examples.run(argv)
    assert make_pretraining_examples.main(argv) == 2
    assert "block_length 128" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_blocks_of_another_casing_are_refused(blocks_dir, tmp_path):
    argv = [f"--blocks_dir={blocks_dir}", f"--output_dir={tmp_path}", "--config=tiny",
            "--override=features.lower_case=false"]
    with pytest.raises(ManifestError, match=r"lower_case=True\), not the model's \(sha256 .*, lower_case=False\)"):
        make_pretraining_examples.run(argv)
    assert not (tmp_path / "manifest.json").exists()


def test_unknown_detector_and_existing_output_are_refused(blocks_dir, in_memory):
    output_dir = in_memory[0]
    with pytest.raises(ValueError, match="pretrain.salient_span_detector: unknown salient span detector 'ner'"):
        make_pretraining_examples.run([f"--blocks_dir={blocks_dir}", f"--output_dir={output_dir}x", "--config=tiny",
                                       "--override=pretrain.salient_span_detector=ner"])
    with pytest.raises(InputError, match="already holds pre-training examples.*--overwrite"):
        make_pretraining_examples.run([f"--blocks_dir={blocks_dir}", f"--output_dir={output_dir}", "--config=tiny"])

"""The chunking pipeline on the embedded corpus, run for real on Beam's DirectRunner."""

import collections
import json

import pytest
import tensorflow as tf

from beam_pipelines import chunk_corpus
from beam_pipelines.document_sources import InputError
from realm_tf.artifacts.manifests import BlocksManifest
from realm_tf.corpus.block_records import BlockRecord, block_id_for, parse_block_examples
from realm_tf.features import Featurizer

from conftest import CORPUS

BLOCK_LENGTH = 128  # tiny.yaml


def _run(output_dir, *extra):
    return chunk_corpus.run(
        [f"--input={CORPUS}", f"--output_dir={output_dir}", "--config=tiny", "--runner=DirectRunner", *extra]
    )


def _records(manifest, output_dir):
    return [
        BlockRecord.from_bytes(raw.numpy())
        for raw in tf.data.TFRecordDataset(manifest.block_paths(str(output_dir)))
    ]


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("in_memory")
    manifest = _run(output_dir, "--direct_running_mode=in_memory", "--num_shards=3")
    return output_dir, manifest, _records(manifest, output_dir)


@pytest.fixture(scope="module")
def documents():
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def featurizer(tiny_config):
    return Featurizer(tiny_config.features)


def test_every_block_fits_its_wordpiece_limit_title_included(in_memory, featurizer, tiny_config):
    _, _, records = in_memory
    assert records
    for record in records:
        assert 3 + len(record.title_token_ids) + len(record.body_token_ids) <= BLOCK_LENGTH
        assert len(record.title_token_ids) <= tiny_config.corpus.max_title_tokens
    # Packing never truncates a block: the mask covers [CLS] title [SEP] body [SEP] exactly.
    packed = featurizer.pack_block(
        tf.ragged.constant([r.title_token_ids for r in records], dtype=tf.int64),
        tf.ragged.constant([r.body_token_ids for r in records], dtype=tf.int64),
    )
    used = tf.reduce_sum(packed["input_mask"], axis=1).numpy().tolist()
    assert used == [3 + len(r.title_token_ids) + len(r.body_token_ids) for r in records]


def test_a_documents_blocks_give_back_its_sentences_in_order(in_memory, documents, featurizer):
    _, _, records = in_memory
    by_doc = collections.defaultdict(list)
    for record in records:
        by_doc[record.doc_id].append(record)
    assert set(by_doc) == {d["id"] for d in documents}
    whole_tokens = featurizer.tokenize([d["text"] for d in documents]).to_list()
    for document, tokens in zip(documents, whole_tokens):
        blocks = sorted(by_doc[document["id"]], key=lambda r: r.block_index)
        assert [b.block_index for b in blocks] == list(range(len(blocks)))
        # Each block's text is an exact slice; joined in order they are the document.
        position = 0
        for block in blocks:
            found = document["text"].find(block.text, position)
            assert found >= position and not document["text"][position:found].strip()
            position = found + len(block.text)
        assert not document["text"][position:].strip()
        assert [t for b in blocks for t in b.body_token_ids] == tokens
        for b in blocks:
            assert b.sentence_starts[0] == 0 and b.sentence_starts == sorted(set(b.sentence_starts))
            assert b.sentence_starts[-1] < len(b.body_token_ids)
        assert all(b.title == document["title"] for b in blocks)


def test_manifest_counts_equal_the_records_written(in_memory, documents):
    output_dir, manifest, records = in_memory
    assert manifest == BlocksManifest.read(str(output_dir))
    assert manifest.num_blocks == len(records)
    assert manifest.num_documents == len(documents) == 2067
    assert manifest.num_dead_letters == 0 and manifest.dead_letters_by_kind == {}
    assert len(manifest.block_shards) == 3
    assert sorted(p.name for p in output_dir.glob("blocks-*")) == manifest.block_shards
    assert manifest.block_length == BLOCK_LENGTH
    assert manifest.vocabulary["sha256"] == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    assert manifest.stats["sentences"] >= manifest.num_documents
    assert sum(len(r.body_token_ids) > 0 for r in records) == manifest.num_blocks


def test_block_ids_are_unique_and_derived_from_document_and_position(in_memory):
    _, _, records = in_memory
    assert len({r.block_id for r in records}) == len(records)
    assert all(r.block_id == block_id_for(r.doc_id, r.block_index) for r in records)


def test_tf_data_reads_and_packs_the_blocks(in_memory, featurizer):
    output_dir, manifest, records = in_memory
    dataset = tf.data.TFRecordDataset(manifest.block_paths(str(output_dir))).batch(16).map(parse_block_examples)
    batch = next(iter(dataset))
    packed = featurizer.pack_block(batch["title_token_ids"], batch["body_token_ids"])
    assert packed["input_word_ids"].shape == (16, BLOCK_LENGTH)
    assert batch["block_id"].dtype == tf.int64


def test_multi_processing_runner_writes_the_same_blocks(in_memory, tmp_path):
    _, manifest, records = in_memory
    other = _run(tmp_path, "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    other_records = _records(other, tmp_path)
    assert sorted(other_records, key=lambda r: r.block_id) == sorted(records, key=lambda r: r.block_id)
    differ = {"block_shards"}
    assert {k: v for k, v in vars(other).items() if k not in differ} == {
        k: v for k, v in vars(manifest).items() if k not in differ}


def test_tfrecord_input_gives_the_same_blocks_as_jsonl(tmp_path, documents):
    sample = documents[:40]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in sample), encoding="utf-8")
    tfrecord = tmp_path / "docs.tfrecord"
    with tf.io.TFRecordWriter(str(tfrecord)) as writer:
        for d in sample:
            feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[d[k].encode()]))
                       for k in ("id", "title", "text")}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    from_jsonl = chunk_corpus.run([f"--input={jsonl}", f"--output_dir={tmp_path / 'a'}", "--config=tiny"])
    from_tfrecord = chunk_corpus.run([f"--input={tfrecord}", f"--output_dir={tmp_path / 'b'}", "--config=tiny"])
    assert from_jsonl.num_documents == from_tfrecord.num_documents == 40
    key = lambda r: r.block_id  # noqa: E731
    assert sorted(_records(from_jsonl, tmp_path / "a"), key=key) == sorted(_records(from_tfrecord, tmp_path / "b"), key=key)


def test_finished_output_is_not_overwritten_without_asking(tmp_path, documents):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps(documents[0]) + "\n", encoding="utf-8")
    args = [f"--input={jsonl}", f"--output_dir={tmp_path / 'out'}", "--config=tiny"]
    first = chunk_corpus.run(args)
    with pytest.raises(InputError, match="already holds chunked blocks.*--overwrite"):
        chunk_corpus.run(args)
    assert chunk_corpus.run(args + ["--overwrite"]) == first


def test_base_config_blocks_are_at_most_288_wordpieces(tmp_path, documents):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in documents[:200]), encoding="utf-8")
    manifest = chunk_corpus.run([f"--input={jsonl}", f"--output_dir={tmp_path / 'out'}", "--config=base"])
    records = _records(manifest, tmp_path / "out")
    assert manifest.block_length == 288
    assert max(3 + len(r.title_token_ids) + len(r.body_token_ids) for r in records) <= 288

"""The compact block store gives exactly the blocks of the TFRecord shards it is built from."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from realm_tf.artifacts.block_arrays import (COMPACT_DIR, INFO_NAME, BlockArrays, BlockArraysError, PieceInfo,
                                             blocks_manifest_sha256, partial_dir, piece_name)
from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.configs import load_config
from realm_tf.corpus.block_records import read_block_dataset
from realm_tf.corpus.block_store import NULL_BLOCK_ID, BlockStore, open_block_arrays, read_doc_ids, token_rows
from realm_tf.features import Featurizer


@pytest.fixture()
def blocks_dir(small_blocks_dir, tmp_path):
    """A copy of the small corpus's blocks without a compact store, for the tests that build one."""
    copy = tmp_path / "blocks"
    shutil.copytree(small_blocks_dir, copy, ignore=shutil.ignore_patterns(COMPACT_DIR, ".staging-*"))
    return str(copy)


def _records(blocks_dir):
    manifest = BlocksManifest.read(blocks_dir)
    return list(read_block_dataset(manifest.block_paths(blocks_dir)).as_numpy_iterator())


def test_every_field_of_every_block_is_the_records(blocks_dir):
    featurizer = Featurizer(load_config("tiny").features)
    store = BlockStore(blocks_dir, featurizer)
    records = _records(blocks_dir)
    assert len(store) == len(records) > 10
    for record in records:
        block_id = int(record["block_id"])
        assert store.titles[block_id] == record["title_token_ids"].tolist()
        assert store.bodies[block_id] == record["body_token_ids"].tolist()
        assert store.doc_ids[block_id] == record["doc_id"].decode("utf-8")
        assert store.title_texts[block_id] == record["title"].decode("utf-8")
        assert store.texts[block_id] == record["text"].decode("utf-8")
        ids, begins, ends = featurizer.tokenize_with_char_offsets([record["text"].decode("utf-8")])[0]
        assert ids.tolist() == store.bodies[block_id]
        assert store.token_begins[block_id].dtype == np.int64
        np.testing.assert_array_equal(store.token_begins[block_id], begins)
        np.testing.assert_array_equal(store.token_ends[block_id], ends)
    # The null document, first, then the blocks in record order; unknown ids are not there.
    assert list(store.bodies) == [NULL_BLOCK_ID] + [int(r["block_id"]) for r in records]
    assert store.bodies[NULL_BLOCK_ID] == [] and store.texts[NULL_BLOCK_ID] == ""
    assert len(store.token_begins[NULL_BLOCK_ID]) == 0
    assert NULL_BLOCK_ID in store.texts and 12345 not in store.texts
    with pytest.raises(KeyError):
        store.bodies[12345]
    assert read_doc_ids(blocks_dir) == {NULL_BLOCK_ID: "", **{int(r["block_id"]): r["doc_id"].decode("utf-8")
                                                              for r in records}}


def test_a_gather_of_many_blocks_gives_each_its_ids(small_blocks_dir):
    store = BlockStore(small_blocks_dir)
    ids = [int(i) for i in store.arrays.block_ids]
    wanted = np.array([ids[5], NULL_BLOCK_ID, ids[0], ids[5], ids[-1]])  # Repeats and the null document.
    for part, column in (("title", store.titles), ("body", store.bodies)):
        gathered = store.token_ids(part, wanted)
        assert gathered.values.dtype == np.uint16
        assert gathered.to_tensor().to_list() == [column[i] for i in wanted.tolist()]
    with pytest.raises(KeyError, match="12345"):
        store.token_ids("body", np.array([ids[0], 12345]))


def test_token_ids_take_two_bytes_and_the_store_is_built_once(blocks_dir):
    store = BlockStore(blocks_dir)
    assert store.token_begins is None  # Offsets come with a featurizer, whose vocabulary is checked.
    tokens = sum(len(store.bodies[i]) for i in store.bodies)
    assert store.arrays.file_bytes()["body_tokens.u16"] == 2 * tokens
    info = os.path.join(blocks_dir, COMPACT_DIR, INFO_NAME)
    built = os.stat(info).st_mtime_ns
    again = BlockStore(blocks_dir, Featurizer(load_config("tiny").features))
    assert os.stat(info).st_mtime_ns == built
    assert again.bodies[next(iter(_ids(again)))] == store.bodies[next(iter(_ids(store)))]
    assert not [name for name in os.listdir(blocks_dir) if name.startswith(".staging-")]


def _ids(store):
    return (i for i in store.bodies if i != NULL_BLOCK_ID)


def test_a_store_of_another_manifest_is_built_again(blocks_dir):
    first = BlockStore(blocks_dir)
    manifest_path = os.path.join(blocks_dir, "manifest.json")
    manifest = json.loads(open(manifest_path, encoding="utf-8").read())
    manifest["created_by"] = "realm_tf (re-chunked)"
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    info = json.loads(open(os.path.join(blocks_dir, COMPACT_DIR, INFO_NAME), encoding="utf-8").read())
    second = BlockStore(blocks_dir)
    rebuilt = json.loads(open(os.path.join(blocks_dir, COMPACT_DIR, INFO_NAME), encoding="utf-8").read())
    assert rebuilt["blocks_manifest_sha256"] != info["blocks_manifest_sha256"]
    assert list(second.bodies) == list(first.bodies)
    assert not [name for name in os.listdir(blocks_dir) if name.startswith((".staging-", ".trash-"))]


def test_a_featurizer_of_another_casing_is_refused(blocks_dir):
    config = load_config("tiny", ["features.lower_case=false"])
    with pytest.raises(ManifestError, match=f"{blocks_dir}: blocks were tokenized with vocabulary .*lower_case=True"):
        BlockStore(blocks_dir, Featurizer(config.features))


def test_a_block_whose_text_does_not_hold_its_tokens_has_no_answers_to_cut(blocks_dir):
    import tensorflow as tf

    from realm_tf.corpus.block_records import BlockRecord

    manifest = BlocksManifest.read(blocks_dir)
    first_shard = manifest.block_paths(blocks_dir)[0]
    records = [BlockRecord.from_bytes(raw) for raw in tf.data.TFRecordDataset(first_shard).as_numpy_iterator()]
    assert len(records) > 3
    # Block 1: its tokens in another order; block 2: one token fewer; block 3 unchanged after them.
    changed = [dataclasses.replace(records[1], body_token_ids=records[1].body_token_ids[::-1]),
               dataclasses.replace(records[2], body_token_ids=records[2].body_token_ids[:-1])]
    with tf.io.TFRecordWriter(first_shard) as writer:
        for record in [records[0], *changed, *records[3:]]:
            writer.write(record.serialize())
    store = BlockStore(blocks_dir)  # Pre-training reads token ids only.
    assert [store.bodies[c.block_id] for c in changed] == [c.body_token_ids for c in changed]
    arrays = open_block_arrays(blocks_dir)
    assert all((arrays.char_offsets(which, arrays.row_of(c.block_id)) == -1).all()
               for c in changed for which in ("begins", "ends"))
    featurizer = Featurizer(load_config("tiny").features)
    _, begins, ends = featurizer.tokenize_with_char_offsets([records[3].text])[0]
    np.testing.assert_array_equal(arrays.char_offsets("begins", arrays.row_of(records[3].block_id)), begins)
    np.testing.assert_array_equal(arrays.char_offsets("ends", arrays.row_of(records[3].block_id)), ends)
    with pytest.raises(ManifestError, match=f"{blocks_dir}: block {changed[0].block_id} .*and 1 more\\) does not "
                                            "re-tokenize"):
        BlockStore(blocks_dir, featurizer)


def test_rows_are_compared_whole():
    from realm_tf.corpus.block_store import same_rows

    a = np.array([1, 2, 3, 4, 5, 6]), np.array([2, 0, 1, 3])
    b = np.array([1, 2, 9, 4, 5]), np.array([2, 1, 0, 2])
    np.testing.assert_array_equal(same_rows(*a, *b), [True, False, False, False])
    np.testing.assert_array_equal(same_rows(*a, *a), [True] * 4)
    c = np.array([1, 2, 9, 4, 5, 6]), a[1]  # Row 2 of the same length, another value.
    np.testing.assert_array_equal(same_rows(*a, *c), [True, True, False, True])
    assert same_rows(np.array([], int), np.array([], int), np.array([], int), np.array([], int)).shape == (0,)


def test_a_damaged_store_is_named(blocks_dir):
    BlockStore(blocks_dir)
    shard = BlocksManifest.read(blocks_dir).block_shards[0]
    body = os.path.join(blocks_dir, COMPACT_DIR, piece_name(shard), "body_tokens.u16")
    with open(body, "r+b") as f:
        f.truncate(os.path.getsize(body) - 2)
    with pytest.raises(BlockArraysError, match=f"{body}: .* bytes, piece.json says .*; the store is damaged"):
        BlockStore(blocks_dir)


@pytest.fixture(scope="module")
def sharded_blocks_dir(tmp_path_factory):
    """The small corpus chunked into 3 shards by the pipeline, which writes its store too."""
    from conftest import chunk_small_corpus

    return chunk_small_corpus(tmp_path_factory.mktemp("sharded"), "--num_shards=3")


def test_the_chunking_pipeline_writes_the_store_a_piece_a_shard(sharded_blocks_dir, tmp_path):
    manifest = BlocksManifest.read(sharded_blocks_dir)
    assert len(manifest.block_shards) == 3
    compact = os.path.join(sharded_blocks_dir, COMPACT_DIR)
    info = json.loads(open(os.path.join(compact, INFO_NAME), encoding="utf-8").read())
    assert info["pieces"] == [piece_name(shard) for shard in manifest.block_shards]
    assert info["num_blocks"] == manifest.num_blocks
    written = os.stat(os.path.join(compact, INFO_NAME)).st_mtime_ns
    featurizer = Featurizer(load_config("tiny").features)
    store = BlockStore(sharded_blocks_dir, featurizer)
    assert os.stat(os.path.join(compact, INFO_NAME)).st_mtime_ns == written  # Opened, not built again.
    # The same blocks, rows and offsets as a store built by its first reader from the shards.
    copy = tmp_path / "blocks"
    shutil.copytree(sharded_blocks_dir, copy, ignore=shutil.ignore_patterns(COMPACT_DIR))
    built = BlockStore(str(copy), featurizer)
    assert json.loads(open(copy / COMPACT_DIR / INFO_NAME, encoding="utf-8").read()) == info
    np.testing.assert_array_equal(store.arrays.block_ids, built.arrays.block_ids)
    for column in ("titles", "bodies", "doc_ids", "title_texts", "texts"):
        assert list(getattr(store, column).items()) == list(getattr(built, column).items())
    for block_id in store.arrays.block_ids[::7].tolist():
        np.testing.assert_array_equal(store.token_begins[block_id], built.token_begins[block_id])
        np.testing.assert_array_equal(store.token_ends[block_id], built.token_ends[block_id])
    assert len({store.arrays.row_of(i) for i in store.arrays.block_ids.tolist()}) == len(store) == manifest.num_blocks


def test_a_gather_across_pieces_gives_each_block_its_ids(sharded_blocks_dir):
    store = BlockStore(sharded_blocks_dir)
    compact = os.path.join(sharded_blocks_dir, COMPACT_DIR)
    pieces = [PieceInfo.read(os.path.join(compact, name)).num_blocks for name in store.arrays.info.pieces]
    assert min(pieces) > 0
    ids = store.arrays.block_ids.tolist()
    # One block from each piece, out of row order, with repeats and the null document.
    wanted = np.array([ids[-1], ids[0], NULL_BLOCK_ID, ids[pieces[0]], ids[0], ids[pieces[0] - 1], ids[-1]])
    for part, column in (("title", store.titles), ("body", store.bodies)):
        gathered = store.token_ids(part, wanted)
        assert gathered.values.dtype == np.uint16
        assert gathered.to_tensor().to_list() == [column[i] for i in wanted.tolist()]
        rows = token_rows(store.arrays, part, pieces[0] - 2, pieces[0] + 3)  # Across a piece's end.
        assert rows.to_tensor().to_list() == [column[i] for i in ids[pieces[0] - 2:pieces[0] + 3]]


def test_the_lexical_index_of_a_sharded_store_is_the_one_of_its_blocks(sharded_blocks_dir, small_blocks_dir):
    from realm_tf.retrieval.lexical_index import LexicalIndex

    vocabulary = Featurizer(load_config("tiny").features).vocabulary
    sharded = open_block_arrays(sharded_blocks_dir)
    one = open_block_arrays(small_blocks_dir)  # The same documents, chunked into one shard.
    assert len(one.info.pieces) == 1 and len(sharded.info.pieces) == 3
    a = LexicalIndex.from_block_arrays(sharded, vocabulary)
    b = LexicalIndex.from_block_arrays(one, vocabulary, block_ids=sharded.block_ids)
    for name in ("term_starts", "rows", "weights", "block_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_pieces_of_two_vocabularies_are_refused(sharded_blocks_dir, tmp_path):
    from realm_tf.artifacts.block_arrays import write_store_record

    copy = tmp_path / "compact"
    shutil.copytree(os.path.join(sharded_blocks_dir, COMPACT_DIR), copy)
    info = BlockArrays(str(copy)).info
    piece_json = copy / info.pieces[1] / "piece.json"
    record = json.loads(piece_json.read_text(encoding="utf-8"))
    piece_json.write_text(json.dumps(dict(record, vocabulary_sha256="f" * 64)), encoding="utf-8")
    with pytest.raises(BlockArraysError, match=f"{copy}: its pieces were tokenized with 2 vocabularies"):
        write_store_record(str(copy), list(info.pieces), info.blocks_manifest_sha256)


def test_rechunking_into_the_directory_replaces_its_store(small_blocks_dir, tmp_path):
    from beam_pipelines import chunk_corpus

    from conftest import CORPUS

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    output = tmp_path / "blocks"
    config = load_config("tiny")
    chunk_corpus.chunk_corpus([str(docs)], str(output), config)
    first = set(BlockStore(str(output)).doc_ids.values())
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[3:5]), encoding="utf-8")
    chunk_corpus.chunk_corpus([str(docs)], str(output), config, overwrite=True)
    assert BlockArrays(str(output / COMPACT_DIR)).info.blocks_manifest_sha256 == blocks_manifest_sha256(str(output))
    rechunked = set(BlockStore(str(output)).doc_ids.values()) - {""}
    assert rechunked == {r["doc_id"].decode("utf-8") for r in _records(str(output))}
    assert not rechunked & first


def test_a_store_on_remote_storage_is_written_there_and_mapped_from_a_local_copy(sharded_blocks_dir):
    import uuid

    import tensorflow as tf

    from realm_tf.artifacts.block_arrays import compact_dir, write_store_record
    from realm_tf.corpus.block_store import publish_shard_piece

    remote = f"ram://{uuid.uuid4().hex}/blocks"  # TF's in-memory filesystem stands for gs://.
    tf.io.gfile.makedirs(remote)
    for name in os.listdir(sharded_blocks_dir):
        if os.path.isfile(os.path.join(sharded_blocks_dir, name)):
            tf.io.gfile.copy(os.path.join(sharded_blocks_dir, name), f"{remote}/{name}")
    manifest = BlocksManifest.read(sharded_blocks_dir)  # Beam's FileSystems, which read gs://, know no ram://.
    featurizer = Featurizer(load_config("tiny").features)
    # As chunk_corpus's workers and its last step do it.
    pieces = [publish_shard_piece(f"{remote}/{shard}", remote, featurizer) for shard in manifest.block_shards]
    written = write_store_record(compact_dir(remote), pieces, blocks_manifest_sha256(remote))
    assert written.num_blocks == manifest.num_blocks
    assert sorted(tf.io.gfile.listdir(f"{compact_dir(remote)}/{pieces[0]}")) == sorted(
        os.listdir(os.path.join(sharded_blocks_dir, COMPACT_DIR, pieces[0])))
    local = open_block_arrays(remote, manifest)  # Current there, so copied, not built again.
    assert "://" not in local.directory and local.info.pieces == tuple(pieces)
    here = open_block_arrays(sharded_blocks_dir)
    np.testing.assert_array_equal(local.block_ids, here.block_ids)
    for row in range(0, len(here.block_ids), 5):
        np.testing.assert_array_equal(local.tokens("body", row), here.tokens("body", row))
        np.testing.assert_array_equal(local.char_offsets("ends", row), here.char_offsets("ends", row))
        assert local.string("text", row) == here.string("text", row)
    tf.io.gfile.rmtree(remote.rsplit("/", 1)[0])


def _unbuilt_copy(blocks_dir, tmp_path):
    copy = tmp_path / "blocks"
    shutil.copytree(blocks_dir, copy, ignore=shutil.ignore_patterns(COMPACT_DIR))
    return str(copy)


def _piece_files(compact):
    """{piece/file: bytes} of every array file of a store (the records hold no paths)."""
    return {f"{piece}/{name}": open(os.path.join(compact, piece, name), "rb").read()
            for piece in sorted(os.listdir(compact)) if os.path.isdir(os.path.join(compact, piece))
            for name in sorted(os.listdir(os.path.join(compact, piece)))}


def test_a_build_cut_short_resumes_at_its_next_piece(sharded_blocks_dir, tmp_path, monkeypatch):
    from realm_tf.corpus import block_store

    copy = _unbuilt_copy(sharded_blocks_dir, tmp_path)
    written, write = [], block_store.write_shard_piece

    def fail_at_the_third(shard, piece_dir, featurizer):
        if len(written) == 2:
            raise RuntimeError("the machine went down")
        written.append(piece_name(shard))
        return write(shard, piece_dir, featurizer)

    monkeypatch.setattr(block_store, "write_shard_piece", fail_at_the_third)
    with pytest.raises(RuntimeError, match="went down"):
        BlockStore(copy)
    partial = partial_dir(os.path.join(copy, COMPACT_DIR), blocks_manifest_sha256(copy))
    assert not os.path.exists(os.path.join(copy, COMPACT_DIR))
    assert sorted(name for name in os.listdir(partial) if not name.startswith(".")) == sorted(written)
    # Resumed: only the third shard is built, and the store is the one built in one go.
    resumed = []
    monkeypatch.setattr(block_store, "write_shard_piece",
                        lambda shard, piece_dir, featurizer: resumed.append(piece_name(shard)) or
                        write(shard, piece_dir, featurizer))
    store = BlockStore(copy)
    manifest = BlocksManifest.read(copy)
    assert resumed == [piece_name(shard) for shard in manifest.block_shards if piece_name(shard) not in written]
    assert not os.path.exists(partial)
    assert _piece_files(os.path.join(copy, COMPACT_DIR)) == _piece_files(os.path.join(sharded_blocks_dir,
                                                                                       COMPACT_DIR))
    assert store.arrays.info == BlockArrays(os.path.join(sharded_blocks_dir, COMPACT_DIR)).info


def test_a_partial_build_for_another_manifest_is_removed(blocks_dir):
    target = os.path.join(blocks_dir, COMPACT_DIR)
    stale = partial_dir(target, "0" * 64)
    os.makedirs(os.path.join(stale, "blocks-00000-of-00001"))
    BlockStore(blocks_dir)
    assert not os.path.exists(stale)
    assert not [name for name in os.listdir(blocks_dir) if name.startswith(".compact")]


def test_worker_processes_build_the_pieces_this_process_builds(sharded_blocks_dir, tmp_path):
    from realm_tf.corpus.block_store import _build_store

    copy = _unbuilt_copy(sharded_blocks_dir, tmp_path)
    target = os.path.join(copy, COMPACT_DIR)
    _build_store(copy, BlocksManifest.read(copy), blocks_manifest_sha256(copy), None, target, workers=2)
    assert _piece_files(target) == _piece_files(os.path.join(sharded_blocks_dir, COMPACT_DIR))
    assert BlockArrays(target).info == BlockArrays(os.path.join(sharded_blocks_dir, COMPACT_DIR)).info


def test_large_stores_are_built_by_a_process_a_cpu():
    from realm_tf.corpus.block_store import PARALLEL_MIN_BLOCKS, build_workers

    cpus = os.cpu_count() or 1
    assert build_workers(PARALLEL_MIN_BLOCKS - 1, 100) == 1
    assert build_workers(10 ** 7, 1) == 1
    assert build_workers(10 ** 7, 100) == cpus
    assert build_workers(10 ** 7, 2) == min(2, cpus)


def _batch(block_ids, begins, located):
    """A BlockBatch of blocks with one title token each and the body tokens of `begins` (a
    list of int lists), each token one character long."""
    from realm_tf.artifacts.block_arrays import BlockBatch

    lengths = np.array([len(b) for b in begins], np.int64)
    flat = np.array([c for b in begins for c in b], np.int64)
    n = len(block_ids)
    return BlockBatch(block_ids=np.array(block_ids, np.int64), doc_ids=[b"d"] * n, titles=[b"t"] * n,
                      texts=[b"x"] * n, title_ids=np.full([n], 7, np.int64), title_lengths=np.ones([n], np.int64),
                      body_ids=np.full([len(flat)], 9, np.int64), body_lengths=lengths, begins=flat, ends=flat + 1,
                      located=np.array(located, bool))


def _write_one_piece(tmp_path, batches):
    from realm_tf.artifacts.block_arrays import write_piece, write_store_record

    store = tmp_path / "compact"
    store.mkdir()
    write_piece(str(store / "p"), iter(batches), "v" * 64, "p")
    write_store_record(str(store), ["p"], "m" * 64)
    return BlockArrays(str(store))


def test_character_offsets_take_two_bytes_and_unlocated_blocks_read_minus_one(tmp_path):
    arrays = _write_one_piece(tmp_path, [_batch([1, 2], [[0, 2, 4], [0, 3]], [True, False]),
                                         _batch([3], [[65_533, 0]], [True])])  # Its end: 65,534.
    assert PieceInfo.read(str(tmp_path / "compact" / "p")).char_offsets_dtype == "uint16"
    assert arrays.file_bytes()["token_begins.u16"] == arrays.file_bytes()["token_ends.u16"] == 2 * 7
    np.testing.assert_array_equal(arrays.char_offsets("begins", 0), [0, 2, 4])
    np.testing.assert_array_equal(arrays.char_offsets("ends", 0), [1, 3, 5])
    np.testing.assert_array_equal(arrays.char_offsets("begins", 1), [-1, -1])
    np.testing.assert_array_equal(arrays.char_offsets("ends", 2), [65_534, 1])
    assert arrays.char_offsets("begins", 2).dtype == np.int32


def test_a_piece_whose_offsets_reach_65535_is_written_int32_from_its_first_block(tmp_path):
    # The third block's end (65,535) does not fit beside the "unlocated" mark: the piece widens.
    arrays = _write_one_piece(tmp_path, [_batch([1, 2], [[0, 2, 4], [0, 3]], [True, False]),
                                         _batch([3], [[65_534, 70_000]], [True])])
    assert PieceInfo.read(str(tmp_path / "compact" / "p")).char_offsets_dtype == "int32"
    assert arrays.file_bytes()["token_begins.i32"] == 4 * 7 and "token_begins.u16" not in arrays.file_bytes()
    np.testing.assert_array_equal(arrays.char_offsets("ends", 0), [1, 3, 5])
    np.testing.assert_array_equal(arrays.char_offsets("ends", 1), [-1, -1])
    np.testing.assert_array_equal(arrays.char_offsets("ends", 2), [65_535, 70_001])


def test_a_piece_written_before_uint16_offsets_is_read_as_it_was(blocks_dir):
    featurizer = Featurizer(load_config("tiny").features)
    store = BlockStore(blocks_dir, featurizer)
    compact = os.path.join(blocks_dir, COMPACT_DIR)
    expected = {i: (store.token_begins[i], store.token_ends[i]) for i in list(_ids(store))[::5]}
    for piece in store.arrays.info.pieces:  # As the writer before uint16 left it: int32, -1, no dtype field.
        directory = os.path.join(compact, piece)
        for which in ("begins", "ends"):
            narrow = os.path.join(directory, f"token_{which}.u16")
            values = np.fromfile(narrow, "<u2").astype("<i4")
            np.where(values == 65_535, -1, values).astype("<i4").tofile(os.path.join(directory, f"token_{which}.i32"))
            os.remove(narrow)
        record = json.loads(open(os.path.join(directory, "piece.json"), encoding="utf-8").read())
        assert record.pop("char_offsets_dtype") == "uint16"
        with open(os.path.join(directory, "piece.json"), "w", encoding="utf-8") as f:
            json.dump(record, f)
    old = BlockStore(blocks_dir, featurizer)
    assert "token_begins.i32" in old.arrays.file_bytes()
    for block_id, (begins, ends) in expected.items():
        np.testing.assert_array_equal(old.token_begins[block_id], begins)
        np.testing.assert_array_equal(old.token_ends[block_id], ends)

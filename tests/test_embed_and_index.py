"""The embed-and-index pipeline on the DirectRunner, and the retrieval evaluation over its index."""

import json
import shutil

import numpy as np
import pytest

from beam_pipelines import chunk_corpus, embed_and_index
from realm_tf import evaluate_retrieval, train
from realm_tf.artifacts.embedder_export import EmbedderExportError
from realm_tf.artifacts.index_version import IndexVersion, list_versions
from realm_tf.artifacts.manifests import ManifestError
from realm_tf.retrieval.embedder_export import EmbedderExport
from realm_tf.retrieval.searcher import Searcher

from conftest import CORPUS


@pytest.fixture(scope="module")
def index(ict_run, small_blocks_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    version = embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict_run['export']}",
                                   f"--index_root={root}", "--config=tiny", "--batch_size=16"])
    return str(root), version


def test_pipeline_embeddings_equal_the_embedder_called_directly(index, ict_run, small_blocks_dir):
    _, version = index
    published = IndexVersion.load(version)
    direct_ids, direct = embed_and_index.embed_in_process(small_blocks_dir, EmbedderExport.load(ict_run["export"]), 64)
    np.testing.assert_array_equal(published.block_ids, direct_ids)
    np.testing.assert_allclose(published.embeddings, direct, atol=1e-5)


def test_shards_written_to_a_shared_folder_give_the_same_version_and_are_removed(index, ict_run, small_blocks_dir,
                                                                                  tmp_path):
    # --shards_dir stands for the gs:// folder Dataflow's workers write and the launcher reads back.
    shared = tmp_path / "shared"
    shared.mkdir()
    version = embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict_run['export']}",
                                   f"--index_root={tmp_path / 'index'}", "--config=tiny", "--batch_size=16",
                                   f"--shards_dir={shared}"])
    published, reference = IndexVersion.load(version), IndexVersion.load(index[1])
    np.testing.assert_array_equal(published.block_ids, reference.block_ids)
    np.testing.assert_allclose(published.embeddings, reference.embeddings, atol=1e-6)
    assert list(shared.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [version.rsplit("/", 1)[1]]


def test_the_version_records_where_it_came_from(index, ict_run, small_blocks_dir):
    root, version = index
    manifest = IndexVersion.load(version).manifest
    assert list_versions(root) == [version]
    assert manifest["metadata"]["step"] == ict_run["step"] == 120
    assert manifest["metadata"]["embedder_export"].endswith(ict_run["export"].split("/", 1)[1])
    assert manifest["num_blocks"] == chunk_corpus.BlocksManifest.read(small_blocks_dir).num_blocks
    assert manifest["dim"] == 128 and manifest["build"]["method"] == "brute_force"


def test_a_block_embedding_queried_back_finds_its_block(index):
    _, version = index
    searcher = Searcher.from_directory(version, method="exact")
    ids, _ = searcher.search(searcher.index.embeddings[:20], k=1)
    np.testing.assert_array_equal(ids[:, 0], searcher.index.block_ids[:20])


def _small_qa(path):
    """qa_train's first 100 questions whose gold passage is in the small corpus, written to `path`."""
    docs = {json.loads(line)["id"] for line in CORPUS.read_text().splitlines()[:80]}
    qa_train = CORPUS.parent / "qa_train.jsonl"
    questions = [q for q in map(json.loads, qa_train.read_text().splitlines()) if q["gold_passage_id"] in docs][:100]
    assert len(questions) == 100
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def test_retrieval_recall_cli_reports_dense_and_bm25(index, small_blocks_dir, tmp_path, capsys):
    root, _ = index
    qa = _small_qa(tmp_path / "qa.jsonl")
    output = tmp_path / "recall.json"
    assert evaluate_retrieval.main([f"--qa={qa}", f"--blocks_dir={small_blocks_dir}", f"--index={root}",
                                    f"--output={output}"]) == 0
    table = capsys.readouterr().out
    results = json.loads(output.read_text())
    assert results["num_questions"] == 100
    for name in ("bm25", "dense"):
        recalls = [results[name][f"recall@{k}"] for k in (1, 5, 20)]
        assert recalls == sorted(recalls) and all(0 <= r <= 1 for r in recalls)
        assert name in table
    assert results["bm25"]["recall@20"] > 0.8  # Lexical overlap finds SQuAD paragraphs easily.

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "who?", "answers": ["x"]}\n')
    assert evaluate_retrieval.main([f"--qa={bad}", f"--blocks_dir={small_blocks_dir}", f"--index={root}"]) == 2
    assert f"{bad}:1: missing field 'gold_passage_id'" in capsys.readouterr().err


def _embed(blocks_dir, export, root, *extra):
    return embed_and_index.main([f"--blocks_dir={blocks_dir}", f"--embedder_export={export}",
                                 f"--index_root={root}", "--config=tiny", *extra])


def test_an_export_for_another_block_length_is_refused(small_blocks_dir, tmp_path, capsys):
    result = train.run(["--task=ict", "--config=tiny", f"--blocks_dir={_rechunk(small_blocks_dir, tmp_path)}",
                        f"--model_dir={tmp_path / 'm'}", "--no_progress", "--override=ict.training.train_steps=1",
                        "--override=features.block_length=64", "--override=corpus.max_title_tokens=8"])
    assert _embed(small_blocks_dir, result["export"], tmp_path / "index") == 2
    assert "chunked for block_length 128, but the model packs blocks of 64" in capsys.readouterr().err
    assert list_versions(str(tmp_path / "index")) == []


def _rechunk(blocks_dir, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text().splitlines(keepends=True)[:5]))
    chunk_corpus.run([f"--input={docs}", f"--output_dir={tmp_path / 'blocks64'}", "--config=tiny",
                      "--override=features.block_length=64", "--override=corpus.max_title_tokens=8"])
    return tmp_path / "blocks64"


def test_an_export_with_another_vocabulary_is_refused(small_blocks_dir, ict_run, tmp_path, capsys):
    export = tmp_path / "export"
    shutil.copytree(ict_run["export"], export)
    metadata = export / "assets.extra" / "realm_embedder.json"
    values = json.loads(metadata.read_text())
    vocab = export / "assets" / "vocab.txt"
    vocab.write_text(vocab.read_text().replace("\nthe\n", "\nzzqzzq\n", 1))
    import hashlib
    values["vocabulary"]["sha256"] = hashlib.sha256(vocab.read_bytes()).hexdigest()
    metadata.write_text(json.dumps(values))
    assert _embed(small_blocks_dir, export, tmp_path / "index") == 2
    assert "blocks were tokenized with vocabulary" in capsys.readouterr().err


def test_bad_exports_and_block_sets_are_clear_errors(small_blocks_dir, ict_run, tmp_path, capsys):
    assert _embed(small_blocks_dir, tmp_path / "absent", tmp_path / "index") == 2
    assert f"embedder export not found: {tmp_path / 'absent'}" in capsys.readouterr().err
    not_export = tmp_path / "not_export"
    not_export.mkdir()
    assert _embed(small_blocks_dir, not_export, tmp_path / "index") == 2
    assert "not an embedder export" in capsys.readouterr().err

    bad_docs = tmp_path / "bad.jsonl"
    bad_docs.write_text("not json\n")
    with pytest.raises(chunk_corpus.InputError):
        chunk_corpus.run([f"--input={bad_docs}", f"--output_dir={tmp_path / 'empty'}", "--config=tiny",
                          "--on_bad_record=dead_letter"])
    assert _embed(tmp_path / "empty", ict_run["export"], tmp_path / "index") == 2
    assert "the block set is empty" in capsys.readouterr().err
    assert _embed(tmp_path / "nowhere", ict_run["export"], tmp_path / "index") == 2
    assert "no manifest" in capsys.readouterr().err
    with pytest.raises(ManifestError):
        chunk_corpus.BlocksManifest.read(str(tmp_path / "nowhere"))
    with pytest.raises(EmbedderExportError):
        EmbedderExport.load(str(not_export))


def test_embedding_shards_are_sorted_into_a_memory_mapped_file_batch_by_batch(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    ids = rng.permutation(50) * 7 + 3  # Unsorted, not contiguous.
    rows = rng.normal(size=(50, 6)).astype(np.float32)
    for shard, part in enumerate(np.array_split(np.arange(50), 3)):
        with tf.io.TFRecordWriter(str(tmp_path / f"embeddings-{shard:05d}-of-00003.tfrecord")) as writer:
            for i in part:
                writer.write(embed_and_index._embedding_example((int(ids[i]), rows[i])))
    block_ids, embeddings = embed_and_index.read_embedding_shards(
        str(tmp_path / "embeddings-*"), str(tmp_path / "embeddings.npy"), batch_size=8)  # Seven batches.
    order = np.argsort(ids)
    np.testing.assert_array_equal(block_ids, ids[order])
    np.testing.assert_array_equal(embeddings, rows[order])
    assert isinstance(embeddings, np.memmap) and embeddings.filename == str(tmp_path / "embeddings.npy")


def test_sentence_vectors_benchmark_at_weight_one_is_the_index_own_dense_recall(index, small_blocks_dir, tmp_path):
    from benchmarks import sentence_vectors
    from realm_tf.evaluation.retrieval_recall import evaluate_retrieval_recall

    root, version = index
    qa = _small_qa(tmp_path / "qa.jsonl")
    results = sentence_vectors.main([f"--blocks_dir={small_blocks_dir}", f"--index={root}", f"--qa={qa}",
                                     "--block_weights=1,0.5,0", f"--output={tmp_path / 'out.json'}"])
    expected = evaluate_retrieval_recall(str(qa), small_blocks_dir, version, method="exact")
    assert results["index_version"] == version and results["num_questions"] == 100
    # w = 1 scores blocks by their own vectors: exact dense search, as the recall evaluation does it.
    assert results["recall_by_block_weight"]["1.0"] == pytest.approx(expected["dense"])
    assert results["bm25"] == pytest.approx(expected["bm25"])
    assert results["num_sentences"] > results["num_blocks"]  # Blocks hold several sentences.
    for recall in results["recall_by_block_weight"].values():
        assert [recall[f"recall@{k}"] for k in (1, 5, 20)] == sorted(recall.values())


@pytest.fixture(scope="module")
def sentence_index(ict_run, small_blocks_dir, tmp_path_factory):
    """An index version with sentence vectors, re-scoring every block (so its ranking is exact)."""
    root = tmp_path_factory.mktemp("sentence_index")
    return embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict_run['export']}",
                                f"--index_root={root}", "--config=tiny", "--batch_size=16",
                                "--override=index.sentence_vectors.enabled=true",
                                "--override=index.sentence_vectors.block_weight=0.5",
                                "--override=index.sentence_vectors.rescore_depth=100000"])


def test_sentence_vectors_embed_every_sentence_of_every_block_after_its_title(sentence_index, index, ict_run,
                                                                               small_blocks_dir):
    from realm_tf.corpus.block_records import read_block_dataset
    from realm_tf.retrieval.sentence_vectors import SentenceVectors, sentence_token_ids

    version = IndexVersion.load(sentence_index)  # Verifies the sentence files' checksums too.
    assert embed_and_index.summarize(sentence_index).splitlines()[0].endswith("and sentence vectors")
    # The block vectors are those of the version without sentences.
    np.testing.assert_allclose(version.embeddings, IndexVersion.load(index[1]).embeddings, atol=1e-6)
    sentences = SentenceVectors.load(version.sentences_dir, version.num_blocks, version.dim)
    assert (sentences.block_weight, sentences.rescore_depth) == (0.5, 100000)
    records = {int(r["block_id"]): r for r in read_block_dataset(
        chunk_corpus.BlocksManifest.read(small_blocks_dir).block_paths(small_blocks_dir)).as_numpy_iterator()}
    pieces = {int(i): sentence_token_ids(records[int(i)]["body_token_ids"].tolist(),
                                         records[int(i)]["sentence_starts"].tolist()) for i in version.block_ids}
    counts = np.diff(sentences.starts)
    assert counts.tolist() == [len(pieces[int(i)]) for i in version.block_ids]
    assert counts.sum() > 2 * version.num_blocks and counts.min() >= 1
    export = EmbedderExport.load(ict_run["export"])
    for row in (0, 7, version.num_blocks - 1):
        block_id = int(version.block_ids[row])
        title = records[block_id]["title_token_ids"].tolist()
        direct = export.embed_block_tokens([title] * counts[row], pieces[block_id])
        np.testing.assert_allclose(sentences.embeddings[sentences.starts[row]:sentences.starts[row + 1]], direct,
                                   atol=1e-5)


def test_dense_retrieval_with_sentence_vectors_ranks_by_the_mixed_score(sentence_index, ict_run):
    from benchmarks.sentence_vectors import sentence_max
    from realm_tf.retrieval.fixed_index import FixedIndex

    index = FixedIndex(sentence_index, method="exact")
    sentences = index.sentences
    queries = EmbedderExport.load(ict_run["export"]).embed_query_texts(
        ["Who founded the university?", "When was the war?", "What is the capital?"])
    owner = np.repeat(np.arange(index.version.num_blocks), np.diff(sentences.starts))
    blocks = np.asarray(index.version.embeddings)
    # The benchmark's score, over every block: w q.block + (1 - w) max over its sentences q.s.
    expected = 0.5 * queries @ blocks.T + 0.5 * sentence_max(queries @ np.asarray(sentences.embeddings).T, owner,
                                                               index.version.num_blocks)
    ids, vectors = index.search(queries, 10)
    np.testing.assert_array_equal(ids, index.block_ids[np.argsort(-expected, axis=1, kind="stable")[:, :10]])
    # Each block's vector is the one whose product with the question is that score: the reader's retrieval logit.
    np.testing.assert_allclose(np.einsum("bd,bkd->bk", queries, vectors),
                               np.sort(expected, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)


def test_damaged_sentence_vectors_are_refused_by_name(sentence_index, tmp_path):
    from realm_tf.artifacts.index_version import IndexVersionError

    copy = tmp_path / "version"
    shutil.copytree(sentence_index, copy)
    starts = copy / "sentences" / "starts.npy"
    values = np.load(starts)
    values[1] += 1
    np.save(starts, values)
    with pytest.raises(IndexVersionError, match=r"sentences: sentence vectors files differ from the manifest.*"
                                                r"starts\.npy"):
        IndexVersion.load(str(copy))


def test_a_block_weight_of_one_ranks_as_the_block_vectors_alone(sentence_index, index, ict_run, small_blocks_dir,
                                                                 tmp_path, capsys):
    from realm_tf.artifacts.index_version import IndexVersionError
    from realm_tf.retrieval.fixed_index import FixedIndex

    queries = EmbedderExport.load(ict_run["export"]).embed_query_texts(["Who founded it?", "When did it end?"])
    alone, _ = FixedIndex(index[1], method="exact").search(queries, 20)
    reweighed, vectors = FixedIndex(sentence_index, method="exact", block_weight=1.0).search(queries, 20)
    np.testing.assert_array_equal(reweighed, alone)
    np.testing.assert_allclose(vectors, np.asarray(IndexVersion.load(index[1]).embeddings)[
        np.searchsorted(IndexVersion.load(index[1]).block_ids, alone)], atol=1e-6)
    with pytest.raises(IndexVersionError, match="no sentence vectors to weigh"):
        FixedIndex(index[1], block_weight=0.5)
    # The command line: a weight out of range is one line naming it.
    qa = _small_qa(tmp_path / "qa.jsonl")
    assert evaluate_retrieval.main([f"--qa={qa}", f"--blocks_dir={small_blocks_dir}", f"--index={sentence_index}",
                                    "--block_weight=1.5", "--no_bm25"]) == 2
    assert "block_weight 1.5 must be in [0, 1]" in capsys.readouterr().err

"""The in-graph lexical retriever (BM25 over WordPiece ids) and its fusion with dense retrieval."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError
from realm_tf.configs import FeaturesConfig, HybridConfig
from realm_tf.features import Featurizer
from realm_tf.retrieval.fusion import candidate_union, fused_scores, top_fused
from realm_tf.retrieval.index_build import publish_index_version
from realm_tf.retrieval.lexical_index import (Bm25Parameters, LexicalIndex, LexicalIndexError, LexicalScorer,
                                              stop_ids)

BLOCKS = [
    "Nikola Tesla was born on 10 July 1856 in Smiljan.",
    "Tesla worked for Thomas Edison in New York City.",
    "The city of Smiljan lies in the Lika region, and Smiljan is small.",
    "Edison, Edison and Edison: the inventor of the phonograph.",
    "A block about rivers, and the sea.",
]


@pytest.fixture(scope="module")
def featurizer():
    return Featurizer(FeaturesConfig())


def _token_lists(featurizer, texts):
    return featurizer.tokenize(tf.constant(texts)).to_list()


def _index(featurizer, block_ids, parameters=Bm25Parameters()):
    tokens = _token_lists(featurizer, BLOCKS)
    # Two passes, the second's rows after the first's, as a big corpus is built.
    passes = [(np.concatenate(tokens[:2]), np.repeat([0, 1], [len(t) for t in tokens[:2]])),
              (np.concatenate(tokens[2:]), np.repeat([2, 3, 4], [len(t) for t in tokens[2:]]))]
    return LexicalIndex.build(passes, np.asarray(block_ids), featurizer.vocabulary, parameters)


def _direct_bm25(featurizer, query, k1=1.5, b=0.75):
    """BM25 of every block for `query`, computed term by term from its definition."""
    stops = set(stop_ids(featurizer.vocabulary).tolist())
    docs = [[t for t in tokens if t not in stops] for tokens in _token_lists(featurizer, BLOCKS)]
    average = sum(map(len, docs)) / len(docs)
    scores = []
    for doc in docs:
        score = 0.0
        for term in _token_lists(featurizer, [query])[0]:
            tf_ = doc.count(term)
            if not tf_:
                continue
            df = sum(term in d for d in docs)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf_ / (tf_ + k1 * (1 - b + b * len(doc) / average))
        scores.append(score)
    return np.asarray(scores)


@pytest.mark.parametrize("query", ["When was Nikola Tesla born?", "Edison in the city of Smiljan", "the and ,"])
def test_bm25_scores_are_those_of_the_definition(featurizer, query):
    index = _index(featurizer, [10, 11, 12, 13, 14])
    scores = LexicalScorer(index).scores(featurizer.tokenize(tf.constant([query, "Smiljan"])))
    assert scores.shape == (2, 5)
    np.testing.assert_allclose(scores[0], _direct_bm25(featurizer, query), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[1], _direct_bm25(featurizer, "Smiljan"), rtol=1e-5)
    parameters = Bm25Parameters(k1=0.9, b=0.4)
    other = LexicalScorer(_index(featurizer, [10, 11, 12, 13, 14], parameters))
    np.testing.assert_allclose(other.scores(featurizer.tokenize(tf.constant([query])))[0],
                               _direct_bm25(featurizer, query, 0.9, 0.4), rtol=1e-5, atol=1e-6)


def test_stop_words_punctuation_and_special_tokens_carry_no_postings(featurizer):
    index = _index(featurizer, [10, 11, 12, 13, 14])
    vocabulary = featurizer.vocabulary
    ids = {token: i for i, token in enumerate(vocabulary.tokens())}
    for token in ("the", "and", ",", ".", ":", "[CLS]", "[SEP]", "[PAD]"):
        term = ids[token]
        assert index.term_starts[term + 1] == index.term_starts[term], token
    smiljan = _token_lists(featurizer, ["Smiljan"])[0]
    # Repeated within a block, one posting: "smiljan"'s pieces are in blocks 0 and 2.
    for term in smiljan:
        assert index.rows[index.term_starts[term]:index.term_starts[term + 1]].tolist() == [0, 2]


def test_search_ranks_the_matching_blocks_first_and_returns_block_ids(featurizer):
    scorer = LexicalScorer(_index(featurizer, [10, 11, 12, 13, 14]))
    ids, scores = scorer.search(featurizer.tokenize(tf.constant(["phonograph inventor", "Tesla born 1856"])), k=2)
    assert ids.numpy()[:, 0].tolist() == [13, 10]
    assert (np.diff(scores.numpy(), axis=1) <= 0).all()


def test_a_saved_index_loads_the_same_and_a_damaged_file_is_named(featurizer, tmp_path):
    index = _index(featurizer, [10, 11, 12, 13, 14])
    index.save(str(tmp_path / "lexical"))
    loaded = LexicalIndex.load(str(tmp_path / "lexical"))
    for name in ("term_starts", "rows", "weights", "block_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))
    assert loaded.parameters == index.parameters and loaded.vocabulary_sha256 == featurizer.vocabulary.sha256
    weights = tmp_path / "lexical" / "weights.npy"
    damaged = np.load(weights)
    damaged[0] += 1
    np.save(weights, damaged)
    with pytest.raises(LexicalIndexError, match=f"{weights}: checksum mismatch"):
        LexicalIndex.load(str(tmp_path / "lexical"))
    os.remove(weights)
    with pytest.raises(LexicalIndexError, match=f"{weights}: missing file"):
        LexicalIndex.load(str(tmp_path / "lexical"))


def test_bad_build_inputs_are_refused(featurizer):
    vocabulary = featurizer.vocabulary
    with pytest.raises(LexicalIndexError, match="at least one block"):
        LexicalIndex.build([], np.zeros([0], np.int64), vocabulary)
    with pytest.raises(LexicalIndexError, match="token ids must lie in"):
        LexicalIndex.build([(np.asarray([vocabulary.size]), np.asarray([0]))], np.asarray([5]), vocabulary)
    with pytest.raises(LexicalIndexError, match="more than one pass"):
        LexicalIndex.build([(np.asarray([15000]), np.asarray([0]))] * 2, np.asarray([5]), vocabulary)


def test_an_index_version_holds_its_lexical_index_with_checksums(featurizer, tiny_config, tmp_path):
    block_ids = np.asarray([10, 11, 12, 13, 14])
    index = _index(featurizer, block_ids)
    embeddings = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    version = publish_index_version(str(tmp_path / "root"), embeddings, block_ids, tiny_config.index, {"step": 1},
                                    lexical_index=index)
    loaded = IndexVersion.load(version)
    np.testing.assert_array_equal(LexicalIndex.load(loaded.lexical_dir).rows, index.rows)
    with open(os.path.join(loaded.lexical_dir, "rows.npy"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(IndexVersionError, match="lexical index files differ from the manifest"):
        IndexVersion.load(version)
    with pytest.raises(ValueError, match="rows must be the version's block_ids"):
        publish_index_version(str(tmp_path / "root"), embeddings, block_ids[::-1], tiny_config.index, {},
                              lexical_index=index)
    plain = publish_index_version(str(tmp_path / "other"), embeddings, block_ids, tiny_config.index, {})
    assert IndexVersion.load(plain).lexical_dir is None


# Fusion, on hand-made rankings: question 0's lists share block 7; question 1's lexical list
# holds a block of no term (score 0) and the dense list a padding slot (-1).
DENSE_IDS = [[5, 7, 9], [1, 2, -1]]
LEXICAL_IDS = [[7, 8, 6], [3, 1, 4]]
LEXICAL_SCORES = [[3.0, 2.0, 1.0], [5.0, 4.0, 0.0]]


def test_the_union_knows_each_candidates_rank_in_both_lists():
    union = candidate_union(tf.constant(DENSE_IDS, tf.int64), tf.constant(LEXICAL_IDS, tf.int64),
                            tf.constant(LEXICAL_SCORES))
    assert union.ids.numpy().tolist() == [[5, 7, 9, 7, 8, 6], [1, 2, -1, 3, 1, 4]]
    assert union.dense_rank.numpy().tolist() == [[0, 1, 2, 1, -1, -1], [0, 1, -1, -1, 0, -1]]
    assert union.lexical_rank.numpy().tolist() == [[-1, 0, -1, 0, 1, 2], [1, -1, -1, 0, 1, -1]]
    # The second 7 and 1 are their dense slots' twins; -1 is padding; 4 matched no term.
    assert union.valid.numpy().tolist() == [[True, True, True, False, True, True],
                                            [True, True, False, True, False, False]]


def test_reciprocal_rank_fusion_sums_one_over_constant_plus_rank():
    union = candidate_union(tf.constant(DENSE_IDS, tf.int64), tf.constant(LEXICAL_IDS, tf.int64),
                            tf.constant(LEXICAL_SCORES))
    zeros = tf.zeros([2, 6])
    fused = fused_scores(union, zeros, zeros, HybridConfig(fusion="rrf", rrf_constant=10.0)).numpy()
    assert fused[0, :3].tolist() == pytest.approx([1 / 11, 1 / 12 + 1 / 11, 1 / 13])
    assert fused[0, 4:].tolist() == pytest.approx([1 / 12, 1 / 13])
    assert fused[1, 0] == pytest.approx(1 / 11 + 1 / 12) and fused[1, 3] == pytest.approx(1 / 11)
    assert np.isneginf(fused[0, 3]) and np.isneginf(fused[1, 2]) and np.isneginf(fused[1, 5])

    ranking = top_fused(union, zeros, zeros, HybridConfig(fusion="rrf", rrf_constant=10.0), k=3)
    assert ranking.ids.numpy()[0].tolist() == [7, 5, 8]
    assert ranking.found_by_dense.numpy()[0].tolist() == [True, True, False]
    assert ranking.found_by_lexical.numpy()[0].tolist() == [True, False, True]


def test_interpolation_weighs_min_max_normalized_scores():
    union = candidate_union(tf.constant(DENSE_IDS, tf.int64), tf.constant(LEXICAL_IDS, tf.int64),
                            tf.constant(LEXICAL_SCORES))
    # Each retriever's exact score of every slot (both know every block).
    dense = tf.constant([[4.0, 2.0, 0.0, 2.0, 1.0, 3.0], [1.0, 3.0, 0.0, 2.0, 1.0, 9.0]])
    lexical = tf.constant([[0.0, 3.0, 0.5, 3.0, 2.0, 1.0], [4.0, 0.0, 0.0, 5.0, 4.0, 0.0]])
    fused = fused_scores(union, dense, lexical, HybridConfig(fusion="interpolation", dense_weight=0.25)).numpy()
    # Question 0, valid slots 0, 1, 2, 4, 5: dense over [0, 4], lexical over [0, 3].
    expected = [0.25 * d / 4 + 0.75 * x / 3 for d, x in zip([4, 2, 0, 1, 3], [0, 3, 0.5, 2, 1])]
    assert fused[0, [0, 1, 2, 4, 5]].tolist() == pytest.approx(expected)
    # Question 1, valid slots 0, 1, 3: dense over [1, 3], lexical over [0, 5]; the invalid 9 is not the maximum.
    assert fused[1, [0, 1, 3]].tolist() == pytest.approx([0.75 * 4 / 5, 0.25, 0.25 * 0.5 + 0.75])
    ranking = top_fused(union, dense, lexical, HybridConfig(fusion="interpolation", dense_weight=0.25), k=2)
    assert ranking.ids.numpy().tolist() == [[7, 8], [3, 1]]
    assert ranking.dense_scores.numpy()[0].tolist() == [2.0, 1.0]
    assert ranking.lexical_scores.numpy()[0].tolist() == [3.0, 2.0]


def test_evaluate_retrieval_reports_lexical_and_hybrid_beside_dense_and_bm25(ict_run, small_blocks_dir, tmp_path,
                                                                             capsys):
    from beam_pipelines import embed_and_index
    from realm_tf import evaluate_retrieval

    from conftest import CORPUS

    version = embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict_run['export']}",
                                   f"--index_root={tmp_path / 'index'}", "--config=tiny",
                                   "--override=index.hybrid.lexical_index=true"])
    assert IndexVersion.load(version).lexical_dir is not None
    docs = {json.loads(line)["id"] for line in CORPUS.read_text().splitlines()[:80]}
    qa_train = CORPUS.parent / "qa_train.jsonl"
    questions = [q for q in map(json.loads, qa_train.read_text().splitlines()) if q["gold_passage_id"] in docs][:60]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in questions))
    output = tmp_path / "recall.json"
    assert evaluate_retrieval.main([f"--qa={qa}", f"--blocks_dir={small_blocks_dir}", f"--index={version}",
                                    "--retrieval=hybrid", "--method=exact", "--override=index.hybrid.candidates=20",
                                    f"--output={output}"]) == 0
    table = capsys.readouterr().out
    results = json.loads(output.read_text())
    for name in ("bm25", "lexical", "dense", "hybrid"):
        recalls = [results[name][f"recall@{k}"] for k in (1, 5, 20)]
        assert recalls == sorted(recalls) and all(0 <= r <= 1 for r in recalls), name
        assert name in table
    assert results["hybrid_config"] == {"fusion": "interpolation", "dense_weight": 0.7, "rrf_constant": 60.0,
                                        "candidates": 20}
    # BM25 over WordPiece ids ranks much as bm25s over words does.
    assert results["lexical_vs_bm25s"]["top1_agreement"] > 0.7
    assert results["lexical"]["recall@20"] > 0.8


def test_the_hybrid_benchmark_sweeps_the_fusions_and_picks_the_best(small_blocks_dir, small_index_root, tmp_path):
    from benchmarks import hybrid_retrieval

    from conftest import CORPUS

    docs = {json.loads(line)["id"] for line in CORPUS.read_text().splitlines()[:80]}
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(line + "\n" for line in (CORPUS.parent / "qa_train.jsonl").read_text().splitlines()
                          if json.loads(line)["gold_passage_id"] in docs))
    output = tmp_path / "hybrid.json"
    results = hybrid_retrieval.main([f"--blocks_dir={small_blocks_dir}", f"--index={small_index_root}", f"--qa={qa}",
                                     "--candidates=20", "--turns=1", f"--output={output}"])
    assert json.loads(output.read_text()) == results
    assert set(results["recall"]) == {"bm25s", "lexical", "dense"} and results["candidates"] == 20
    assert len(results["fusions"]) == len(hybrid_retrieval.RRF_CONSTANTS) + len(hybrid_retrieval.DENSE_WEIGHTS)
    assert results["best"] == max(results["fusions"], key=lambda f: (f["recall@5"], f["recall@20"]))
    speed = results["speed"]
    assert speed["lexical_speedup_over_bm25s"] == pytest.approx(speed["bm25s_seconds"] / speed["lexical_seconds"],
                                                                rel=2e-3)
    assert results["memory"]["bytes_per_block"] * results["num_blocks"] == pytest.approx(
        results["memory"]["lexical_bytes"], rel=1e-3)
    assert results["command"].startswith("python -m benchmarks.hybrid_retrieval")


def test_evaluate_reads_the_lexical_and_the_hybrid_ranking(finetuned, capsys):
    import pathlib

    from realm_tf import evaluate
    from realm_tf.artifacts.model_dir import ModelDir
    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.retrieval.hybrid_retrieval import HybridRetrieval

    qa = pathlib.Path(finetuned).parent / "qa.jsonl"  # The fixture's 8 qa_train questions.
    questions = [json.loads(line)["question"] for line in qa.read_text().splitlines()]
    info = ModelDir(finetuned).read_run_info()
    featurizer = Featurizer(load_config(info.config).features)
    lexical = HybridRetrieval(info.index_version, featurizer, load_config(info.config).index.hybrid, "exact",
                              BlockStore(info.blocks_dir, featurizer)).lexical
    expected, _ = lexical.search(featurizer.tokenize(tf.constant(questions)), 5)
    for retrieval in ("lexical", "hybrid"):
        predictions = pathlib.Path(finetuned).parent / f"{retrieval}.jsonl"
        metrics = evaluate.run([f"--model_dir={finetuned}", f"--qa={qa}", f"--retrieval={retrieval}",
                                f"--output={predictions}", "--no_progress"])
        assert metrics["num_questions"] == 8 and metrics["retrieval"].startswith(
            {"lexical": "lexical (BM25 over WordPiece ids) of ", "hybrid": "hybrid (interpolation) of "}[retrieval])
        records = [json.loads(line) for line in predictions.read_text().splitlines()]
        assert all(len(r["evidence"]) == 5 for r in records)
        if retrieval == "lexical":
            assert [[e["block_id"] for e in r["evidence"]] for r in records] == expected.numpy().tolist()
    assert evaluate.main([f"--model_dir={finetuned}", f"--qa={qa}", "--retrieval=lexical", "--method=exact",
                          "--no_progress"]) == 2
    assert "error: a search method does not apply to --retrieval=lexical" in capsys.readouterr().err


def test_fine_tuning_draws_its_beam_from_the_hybrid_ranking(small_blocks_dir, small_index_root, tmp_path):
    from realm_tf.configs import load_config
    from realm_tf.tasks.finetune import FinetuneTask

    from conftest import QA_TRAIN

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(QA_TRAIN.read_text(encoding="utf-8").splitlines(keepends=True)[:4]), encoding="utf-8")
    config = load_config("tiny", ["finetune.retrieval=hybrid", "index.hybrid.candidates=30",
                                  "finetune.retriever_beam_size=500"])
    task = FinetuneTask(config, str(qa), small_blocks_dir, small_index_root)
    assert task.beam_size == 60  # At most what the fusion of 2 x 30 candidates ranks.
    batch = task.make_batch(np.arange(4))
    questions = [e.question for e in task.examples]
    embeddings = task.search_embedder(task.featurizer.query_features(tf.constant(questions))).numpy()
    ranking = task.index.rank(embeddings, questions, 60)
    np.testing.assert_array_equal(batch["candidate_ids"], ranking.ids)
    rows = np.searchsorted(task.index.block_ids, ranking.ids, sorter=np.argsort(task.index.block_ids))
    stored = np.asarray(task.index.version.embeddings)[np.argsort(task.index.block_ids)[rows]]
    np.testing.assert_allclose(batch["candidate_embeddings"], stored)
    assert ranking.found_by_lexical.any() and not ranking.found_by_dense.all()

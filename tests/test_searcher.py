import re

import numpy as np
import pytest

from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError
from realm_tf.configs import IndexConfig
from realm_tf.retrieval import Searcher, publish_index_version

DIM = 128


def _clustered(num_blocks, num_queries, seed=0, num_clusters=64):
    """Blocks around cluster centres (as topics cluster real embeddings), and queries
    near some of the blocks. float32 [num_blocks, DIM], [num_queries, DIM]."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, DIM))
    blocks = centres[rng.integers(0, num_clusters, num_blocks)] + 0.5 * rng.normal(size=(num_blocks, DIM))
    queries = blocks[rng.integers(0, num_blocks, num_queries)] + 0.3 * rng.normal(size=(num_queries, DIM))
    return blocks.astype(np.float32), queries.astype(np.float32)


def _block_ids(n):
    # Ids unlike row numbers, so a missed row -> id mapping shows.
    return np.arange(n, dtype=np.int64) * 7 + 1000


@pytest.fixture(scope="module")
def tree_index(tmp_path_factory):
    """4,000 blocks in a tree + AH + reorder ScaNN index (forced: exact_below=0)."""
    blocks, queries = _clustered(4000, 200)
    path = publish_index_version(
        str(tmp_path_factory.mktemp("tree")), blocks, _block_ids(4000), IndexConfig(exact_below=0), {"step": 1})
    return IndexVersion.load(path), queries


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """300 blocks: below exact_below, so ScaNN is brute force."""
    blocks, queries = _clustered(300, 40, seed=1, num_clusters=8)
    path = publish_index_version(str(tmp_path_factory.mktemp("small")), blocks, _block_ids(300), IndexConfig(), {})
    return IndexVersion.load(path), queries


def _reference(index, queries, k, exclude_ids=None):
    """Top-k by a plain numpy sort over all blocks, excluded ids removed."""
    scores = queries @ np.asarray(index.embeddings).T
    for q, excluded in enumerate(exclude_ids or ()):
        scores[q, np.isin(index.block_ids, excluded)] = -np.inf
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray(index.block_ids)[rows], np.take_along_axis(scores, rows, axis=1)


def _recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_scann_tree_agrees_with_exact_search(tree_index):
    index, queries = tree_index
    assert index.manifest["build"]["method"] == "tree_ah"
    assert index.manifest["build"]["num_leaves"] == 63 and index.manifest["build"]["num_leaves_to_search"] == 7
    exact_ids, exact_scores = Searcher(index, "exact").search(queries, 10)
    ids, scores = Searcher(index, "scann").search(queries, 10)
    assert ids.shape == scores.shape == (200, 10) and ids.dtype == np.int64 and scores.dtype == np.float32

    reference_ids, reference_scores = _reference(index, queries, 10)
    np.testing.assert_array_equal(exact_ids, reference_ids)
    np.testing.assert_allclose(exact_scores, reference_scores, rtol=1e-5)
    recall = _recall(ids, exact_ids)
    print(f"ScaNN tree+AH+reorder recall@10 against exact search: {recall:.3f}")
    assert recall >= 0.95
    # Re-ordered scores are the true inner products of the returned blocks, best first.
    rows = (ids - 1000) // 7
    true_scores = np.einsum("qd,qkd->qk", queries, np.asarray(index.embeddings)[rows])
    np.testing.assert_allclose(scores, true_scores, rtol=1e-4, atol=1e-3)
    assert (np.diff(scores, axis=1) <= 1e-4).all()


@pytest.mark.parametrize("dtype, min_recall", [("float32", 0.95), ("int8", 0.9)])
def test_each_reorder_dtype_is_built_as_recorded_and_scores_truly(tmp_path, dtype, min_recall):
    # The default (bfloat16) is the tree_index fixture's; old manifests without the key
    # re-score in float32, as they were built.
    blocks, queries = _clustered(4000, 100, seed=2)
    path = publish_index_version(str(tmp_path), blocks, _block_ids(4000),
                                 IndexConfig(exact_below=0, reorder_dtype=dtype), {})
    index = IndexVersion.load(path)
    assert index.build["reorder_dtype"] == dtype
    ids, scores = Searcher(index, "scann").search(queries, 10)
    exact_ids, _ = Searcher(index, "exact").search(queries, 10)
    assert _recall(ids, exact_ids) >= min_recall
    true_scores = np.einsum("qd,qkd->qk", queries, blocks[(ids - 1000) // 7])
    np.testing.assert_allclose(scores, true_scores, rtol=1e-4, atol=1e-3)


def test_the_reorder_dtype_reaches_scanns_config():
    from realm_tf.artifacts.index_version import scann_pybind
    from realm_tf.retrieval.index_build import configured_scann_builder, scann_parameters

    blocks, _ = _clustered(1000, 1)

    def reorder_config(params):
        text = configured_scann_builder(scann_pybind().builder(blocks, 10, "dot_product"), params).create_config()
        return re.sub(r"\s+", " ", text[text.index("exact_reordering"):])

    params = scann_parameters(1000, IndexConfig(exact_below=0, reorder_dtype="bfloat16"))
    assert "bfloat16 { enabled: True" in reorder_config(params)
    assert "fixed_point { enabled: True" in reorder_config({**params, "reorder_dtype": "int8"})
    old = {key: value for key, value in params.items() if key != "reorder_dtype"}
    assert "enabled: False" in reorder_config(old)


def test_scann_tree_answers_large_k_in_full(tree_index):
    # 7 of 63 leaves hold ~450 blocks, fewer than k: such queries fall back to exact search.
    index, queries = tree_index
    ids, scores = Searcher(index, "scann").search(queries[:4], 1000)
    exact_ids, exact_scores = Searcher(index, "exact").search(queries[:4], 1000)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)


def test_small_index_is_brute_force_and_equals_exact(small_index):
    index, queries = small_index
    assert index.manifest["build"]["method"] == "brute_force"
    for k in (1, 5, 300):
        ids, scores = Searcher(index, "scann").search(queries, k)
        exact_ids, exact_scores = Searcher(index, "exact").search(queries, k)
        reference_ids, _ = _reference(index, queries, k)
        np.testing.assert_array_equal(ids, exact_ids)
        np.testing.assert_array_equal(exact_ids, reference_ids)
        np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("method", ["scann", "exact"])
def test_excluded_ids_never_come_back(small_index, tree_index, method):
    for index, queries in (small_index, tree_index):
        searcher = Searcher(index, method)
        top_ids, _ = searcher.search(queries, 5)
        rng = np.random.default_rng(3)
        # Each query excludes its own top hits, some random blocks and an id not in the index;
        # lists of different lengths, one empty.
        exclude = [
            list(top_ids[q, : q % 4]) + list(rng.choice(index.block_ids, q % 3)) + [5] for q in range(len(queries))
        ]
        exclude[7] = []
        ids, scores = searcher.search(queries, 10, exclude_ids=exclude)
        for q in range(len(queries)):
            assert not set(ids[q]) & set(exclude[q])
        reference_ids, reference_scores = _reference(index, queries, 10, exclude)
        if index.manifest["build"]["method"] == "brute_force" or method == "exact":
            np.testing.assert_array_equal(ids, reference_ids)
            np.testing.assert_allclose(scores, reference_scores, rtol=1e-4, atol=1e-3)
        else:
            assert _recall(ids, reference_ids) >= 0.95


@pytest.mark.parametrize("method", ["scann", "exact"])
def test_results_are_padded_when_too_few_blocks_remain(tmp_path, method):
    blocks, queries = _clustered(20, 3, num_clusters=2)
    searcher = Searcher.from_directory(
        publish_index_version(str(tmp_path), blocks, _block_ids(20), IndexConfig(), {}), method=method)
    exclude = [[1000, 1007, 1014], [], [1000, 1000, 99]]  # Duplicates and unknown ids count once / not at all.
    ids, scores = searcher.search(queries, 25, exclude_ids=exclude)
    assert ids.shape == scores.shape == (3, 25)
    assert [int((row >= 0).sum()) for row in ids] == [17, 20, 19]
    for row_ids, row_scores, n in zip(ids, scores, [17, 20, 19]):
        assert (row_ids[n:] == -1).all() and np.isneginf(row_scores[n:]).all()
        assert np.isfinite(row_scores[:n]).all() and len(set(row_ids[:n])) == n
    reference_ids, _ = _reference(searcher.index, queries, 25, exclude)
    np.testing.assert_array_equal(ids[1, :20], reference_ids[1])
    # The exclusions of a batch may come as one int array [Q, E].
    as_array, _ = searcher.search(queries, 25, exclude_ids=np.array([[1000, 1007], [1000, 1007], [1, 2]]))
    assert [int((row >= 0).sum()) for row in as_array] == [18, 18, 20]


@pytest.mark.parametrize("method", ["scann", "exact"])
def test_search_rows_are_the_rows_of_the_searched_ids(tree_index, method):
    index, queries = tree_index
    searcher = Searcher(index, method)
    rows, row_scores = searcher.search_rows(queries, 10)
    ids, scores = searcher.search(queries, 10)
    np.testing.assert_array_equal(np.asarray(index.block_ids)[rows], ids)
    np.testing.assert_array_equal(row_scores, scores)


def test_no_queries_give_empty_results(small_index):
    index, _ = small_index
    for method in ("scann", "exact"):
        ids, scores = Searcher(index, method).search(np.zeros((0, DIM), np.float32), 4, exclude_ids=[])
        assert ids.shape == scores.shape == (0, 4) and ids.dtype == np.int64 and scores.dtype == np.float32


def test_bad_arguments_are_clear_errors(small_index):
    index, queries = small_index
    with pytest.raises(ValueError, match=r"search method 'faiss' is not one of \['scann', 'exact'\]"):
        Searcher(index, "faiss")
    searcher = Searcher(index, "exact")
    message = rf"queries must be \[Q, 128\] to match index {re.escape(index.path)}, got shape \(40, 64\)"
    with pytest.raises(ValueError, match=message):
        searcher.search(queries[:, :64], 3)
    with pytest.raises(ValueError, match="queries contain NaN or inf"):
        searcher.search(np.full((1, DIM), np.nan, np.float32), 3)
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        searcher.search(queries, 0)
    with pytest.raises(ValueError, match="exclude_ids has 1 lists for 40 queries"):
        searcher.search(queries, 3, exclude_ids=[[1]])


def test_from_directory_takes_a_version_or_the_latest_under_a_root(tmp_path):
    root = tmp_path / "index"
    with pytest.raises(IndexVersionError, match="neither an index version .* nor an index root holding one"):
        Searcher.from_directory(str(root))
    blocks, _ = _clustered(30, 1)
    first = publish_index_version(str(root), blocks, _block_ids(30), IndexConfig(), {"step": 1})
    second = publish_index_version(str(root), blocks[:20], _block_ids(20), IndexConfig(), {"step": 2})
    assert Searcher.from_directory(str(root)).index.path == second
    searcher = Searcher.from_directory(first, method="exact")
    assert (searcher.index.path, searcher.index.num_blocks, searcher.method) == (first, 30, "exact")

"""`RescoredScann`: ScaNN's AH candidates re-scored exactly from the export's own table."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.configs import IndexConfig
from realm_tf.export.scann_retrieval import RescoredScann, rescore_candidates
from realm_tf.retrieval.index_build import configured_scann_builder, scann_parameters

DIM = 32


def _clustered(num_blocks, num_queries, seed=0, num_clusters=40):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, DIM))
    blocks = centres[rng.integers(0, num_clusters, num_blocks)] + 0.5 * rng.normal(size=(num_blocks, DIM))
    queries = blocks[rng.integers(0, num_blocks, num_queries)] + 0.3 * rng.normal(size=(num_queries, DIM))
    return blocks.astype(np.float32), queries.astype(np.float32)


def _exact_top(blocks, queries, k):
    return np.argsort(-(queries @ blocks.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def tree():
    blocks, queries = _clustered(3000, 50)
    build = scann_parameters(len(blocks), IndexConfig(exact_below=0, reorder_num_neighbors=200))
    assert build["method"] == "tree_ah" and build["reorder_num_neighbors"] == 200
    table = tf.Variable(blocks, trainable=False)
    return RescoredScann(table, build, shared_name="test/tree"), blocks, queries, build


def test_tree_scores_are_the_exact_inner_products_of_the_rows_it_returns(tree):
    scann, blocks, queries, _ = tree
    scores, rows = (t.numpy() for t in scann(tf.constant(queries), 10))
    assert rows.shape == scores.shape == (50, 10)
    assert rows.min() >= 0 and rows.max() < len(blocks)
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, blocks[rows]), rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)
    exact = _exact_top(blocks, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), exact.tolist())])
    assert recall >= 0.9


def test_tree_keeps_no_copy_of_the_embeddings_to_re_score_from(tree):
    from scann.scann_ops.py import scann_ops

    scann, blocks, _, build = tree
    # The variables a SavedModel saves and a server holds: ScaNN's own re-scoring keeps all
    # of the embeddings again; the layer's searcher holds the tree and AH codes only.
    def searcher_bytes(module):
        values = [v.numpy() for v in module.variables]
        return sum(sum(map(len, a.ravel())) if a.dtype == object else a.nbytes for a in values)

    reordering = configured_scann_builder(scann_ops.builder(blocks, 10, "dot_product"),
                                          {**build, "reorder_dtype": "float32"}).build(shared_name="test/reordering")
    assert searcher_bytes(reordering.serialize_to_module()) > blocks.nbytes
    assert searcher_bytes(scann.layer) < blocks.nbytes / 2
    assert any(v is scann.table for v in scann.variables)


def test_brute_force_is_exact():
    blocks, queries = _clustered(500, 20, seed=1)
    build = scann_parameters(len(blocks), IndexConfig())
    assert build["method"] == "brute_force"
    scann = RescoredScann(tf.Variable(blocks, trainable=False), build, shared_name="test/brute")
    _, rows = scann(tf.constant(queries), 5)
    np.testing.assert_array_equal(rows.numpy(), _exact_top(blocks, queries, 5))


def test_rescoring_ranks_by_exact_score_and_keeps_padding_last():
    table = tf.constant(np.eye(4, dtype=np.float32) * np.array([[1.0], [2.0], [3.0], [4.0]], np.float32))
    queries = tf.ones([1, 4])
    # AH's order (0, 3, -1 padding, 2) is not the exact one (3, 2, 0).
    scores, rows = rescore_candidates(table, queries, tf.constant([[9.0, 8.0, float("nan"), 7.0]]),
                                      tf.constant([[0, 3, -1, 2]]), 3)
    np.testing.assert_array_equal(rows.numpy(), [[3, 2, 0]])
    np.testing.assert_allclose(scores.numpy(), [[4.0, 3.0, 1.0]])
    # Fewer real candidates than k: the padding comes last, still marked as padding.
    scores, rows = rescore_candidates(table, queries, tf.constant([[1.0, float("nan"), 1.0]]),
                                      tf.constant([[1, -1, 7]]), 2)
    np.testing.assert_array_equal(rows.numpy(), [[1, -1]])
    assert scores.numpy()[0, 0] == 2.0 and np.isnan(scores.numpy()[0, 1])

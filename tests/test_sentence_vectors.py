"""`SentenceVectors`: the mixed block-and-sentence score, its folder, and the split of a block's body."""

import numpy as np
import pytest

from realm_tf.retrieval.sentence_vectors import SentenceVectors, SentenceVectorsError, sentence_token_ids


def _vectors(seed=0, blocks=30, dim=6, weight=0.3):
    rng = np.random.default_rng(seed)
    starts = np.r_[0, np.cumsum(rng.integers(1, 5, blocks))]
    return (SentenceVectors(rng.normal(size=(starts[-1], dim)).astype(np.float32), starts, weight, 10),
            rng.normal(size=(blocks, dim)).astype(np.float32), rng)


def test_rescore_is_the_weighted_block_and_best_sentence_score_and_its_vector():
    sentences, blocks, rng = _vectors()
    queries = rng.normal(size=(4, 6)).astype(np.float32)
    rows = np.stack([rng.permutation(30)[:9] for _ in range(4)])
    rows[0, 1] = rows[1, 1]  # The same block proposed to two questions is scored for each.
    scores, vectors = sentences.rescore(queries, rows, blocks[rows])
    for b in range(4):
        for m, row in enumerate(rows[b]):
            own = sentences.embeddings[sentences.starts[row]:sentences.starts[row + 1]]
            best = own[np.argmax(own @ queries[b])]
            assert scores[b, m] == pytest.approx(0.3 * queries[b] @ blocks[row] + 0.7 * (own @ queries[b]).max(),
                                                 abs=1e-5)
            np.testing.assert_allclose(vectors[b, m], 0.3 * blocks[row] + 0.7 * best, atol=1e-6)
    assert scores.dtype == vectors.dtype == np.float32 and vectors.shape == (4, 9, 6)


def test_weight_one_is_the_block_vector_alone():
    sentences, blocks, rng = _vectors(weight=1.0)
    queries = rng.normal(size=(2, 6)).astype(np.float32)
    rows = np.array([[0, 5, 9], [29, 3, 0]])
    scores, vectors = sentences.rescore(queries, rows, blocks[rows])
    np.testing.assert_allclose(vectors, blocks[rows])
    np.testing.assert_allclose(scores, np.einsum("bd,bmd->bm", queries, blocks[rows]), atol=1e-5)


def test_the_folder_round_trips_and_a_mismatched_one_is_refused(tmp_path):
    sentences, _, _ = _vectors()
    sentences.save(str(tmp_path / "s"))
    loaded = SentenceVectors.load(str(tmp_path / "s"), num_blocks=30, dim=6)
    np.testing.assert_array_equal(loaded.embeddings, sentences.embeddings)
    np.testing.assert_array_equal(loaded.starts, sentences.starts)
    assert (loaded.block_weight, loaded.rescore_depth) == (0.3, 10)
    with pytest.raises(SentenceVectorsError, match="does not fit a version of 31 blocks"):
        SentenceVectors.load(str(tmp_path / "s"), num_blocks=31, dim=6)
    with pytest.raises(SentenceVectorsError, match="unreadable"):
        SentenceVectors.load(str(tmp_path / "absent"), num_blocks=30, dim=6)
    starts = sentences.starts.copy()
    starts[3] = starts[2]  # A block without a sentence.
    with pytest.raises(SentenceVectorsError, match="at least one a block"):
        SentenceVectors(sentences.embeddings, starts, 0.5, 10)
    with pytest.raises(SentenceVectorsError, match="block_weight 1.5"):
        SentenceVectors(sentences.embeddings, sentences.starts, 1.5, 10)


def test_a_body_splits_at_its_sentence_starts():
    assert sentence_token_ids([1, 2, 3, 4, 5], [0, 2, 4]) == [[1, 2], [3, 4], [5]]
    assert sentence_token_ids([1, 2, 3], [0, 1, 1, 3]) == [[1], [2, 3]]  # Repeats and the end add nothing.
    assert sentence_token_ids([1, 2], []) == [[1, 2]]
    assert sentence_token_ids([], [0]) == [[]]  # An empty body is one (empty) sentence: the title alone.

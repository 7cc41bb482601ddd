"""The span reader and the fine-tuning loss against direct numpy computations."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.features import Featurizer
from realm_tf.features.ragged_rows import RaggedRows
from realm_tf.features.reader_inputs import pack_reader_candidates
from realm_tf.modeling.open_qa import OpenQaModel, finetuning_loss
from realm_tf.modeling.span_reader import MASKED_LOGIT, SpanScorer, best_span, valid_spans
from realm_tf.tasks.answer_spans import AnswerMatcher, find_answer_spans


@pytest.fixture(scope="module")
def featurizer(tiny_config):
    return Featurizer(tiny_config.features)


def _layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def test_span_scores_are_the_mlp_over_start_and_end_states():
    n, length, hidden, width, span_hidden = 2, 7, 6, 3, 5
    scorer = SpanScorer(span_hidden, width, initializer_range=0.5)
    sequence = np.random.default_rng(0).normal(size=(n, length, hidden)).astype(np.float32)
    scores = scorer(tf.constant(sequence)).numpy()
    assert scores.shape == (n, length, width)
    kernel, bias = scorer.dense.get_weights()
    gamma, beta = scorer.layer_norm.get_weights()
    out_kernel, out_bias = scorer.dense_1.get_weights()
    # MLP([h_s; h_e]) with the first layer's kernel stacked from the two halves.
    first = np.concatenate([kernel[:, :span_hidden], kernel[:, span_hidden:]], axis=0)
    for i in range(n):
        for start in range(length):
            for w in range(width):
                if start + w >= length:
                    continue
                pair = np.concatenate([sequence[i, start], sequence[i, start + w]])
                hidden_units = np.maximum(pair @ first + bias[:span_hidden] + bias[span_hidden:], 0)
                expected = _layer_norm(hidden_units, gamma, beta, 1e-3) @ out_kernel + out_bias
                np.testing.assert_allclose(scores[i, start, w], expected[0], rtol=1e-4, atol=1e-5)


def test_valid_spans_stay_inside_the_body_and_on_word_boundaries(featurizer):
    # "tesla" is one token, "nikolaus" splits into pieces ("nikola", "##us").
    query = featurizer.tokenize(["who"])
    body = featurizer.tokenize(["nikolaus tesla ."])[0].numpy().tolist()
    vocab = featurizer.vocabulary
    inputs = pack_reader_candidates(featurizer, query, RaggedRows.from_lists([body]), 1)
    features = {k: tf.constant(v[0]) for k, v in inputs.features.items()}
    valid = valid_spans(features, tf.constant(vocab.continuation_mask()), 4).numpy()[0]
    continuation = vocab.continuation_mask()[body]
    assert continuation.any(), "the test needs a word split into pieces"
    offset = inputs.body_offsets[0, 0]
    expected = np.zeros_like(valid)
    for start in range(len(body)):
        for end in range(start, min(start + 4, len(body))):
            starts_word = not continuation[start]
            ends_word = end + 1 == len(body) or not continuation[end + 1]
            expected[offset + start, end - start] = starts_word and ends_word
    np.testing.assert_array_equal(valid, expected)


def _softmax(logits):
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _numpy_loss(retrieval_logits, retrieval_correct, span_logits, answer_spans):
    losses = []
    for b in range(len(retrieval_logits)):
        loss = 0.0
        correct_blocks = retrieval_correct[b] > 0
        if correct_blocks.any():
            loss -= np.log(_softmax(retrieval_logits[b])[correct_blocks].sum())
        correct_spans = answer_spans[b].reshape(-1) > 0
        if correct_spans.any():
            loss -= np.log(_softmax(span_logits[b].reshape(-1))[correct_spans].sum())
        losses.append(loss)
    return np.mean(losses)


def test_finetuning_loss_is_the_marginal_over_the_beam_and_over_matching_spans():
    rng = np.random.default_rng(1)
    b, beam, k, length, width = 4, 7, 4, 6, 3
    retrieval_logits = rng.normal(size=(b, beam)).astype(np.float32) * 3
    span_logits = rng.normal(size=(b, k, length, width)).astype(np.float32) * 2
    span_logits[:, :, -1, 1:] = MASKED_LOGIT  # Some invalid spans, as the reader masks them.
    answer_spans = np.zeros((b, k, length, width), np.float32)
    retrieval_correct = np.zeros((b, beam), np.float32)
    answer_spans[0, 1, 2, 0] = answer_spans[0, 1, 4, 1] = answer_spans[0, 3, 0, 2] = 1  # Three matches, two blocks.
    retrieval_correct[0, [1, 3, 5]] = 1  # And one block beyond the reader's top k.
    answer_spans[1, 0, 3, 0] = retrieval_correct[1, 0] = 1
    retrieval_correct[2, 6] = 1  # Question 2: only in the beam: a retriever term, no reader term.
    # Question 3: nowhere, so it adds no loss.
    batch = {"answer_spans": tf.constant(answer_spans), "retrieval_correct": tf.constant(retrieval_correct)}
    outputs = {"retrieval_logits": tf.constant(retrieval_logits), "span_logits": tf.constant(span_logits)}
    loss, metrics = finetuning_loss(outputs, batch)
    expected = _numpy_loss(retrieval_logits, retrieval_correct, span_logits, answer_spans)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    assert metrics["answer_in_beam"].numpy() == pytest.approx(3 / 4)
    assert metrics["answer_in_candidates"].numpy() == pytest.approx(2 / 4)
    # Questions with nothing correct give finite, zero gradients to that term.
    retrieval, spans = tf.Variable(retrieval_logits), tf.Variable(span_logits)
    with tf.GradientTape() as tape:
        loss, _ = finetuning_loss({"retrieval_logits": retrieval, "span_logits": spans}, batch)
    retrieval_gradient, span_gradient = (g.numpy() for g in tape.gradient(loss, [retrieval, spans]))
    assert np.isfinite(retrieval_gradient).all() and np.isfinite(span_gradient).all()
    assert retrieval_gradient[2].any() and not retrieval_gradient[3].any()
    assert span_gradient[0].any() and not span_gradient[2].any() and not span_gradient[3].any()


def test_span_logits_add_the_retrieval_score_to_the_reader_score(tiny_config, featurizer):
    model = OpenQaModel(tiny_config, featurizer.vocabulary.continuation_mask())
    query_tokens = featurizer.tokenize(["who was tesla", "where"])
    bodies = [[featurizer.tokenize(["nikola tesla was an inventor ."])[0].numpy().tolist(), []]] * 2
    reader = pack_reader_candidates(featurizer, query_tokens, RaggedRows.from_lists(sum(bodies, [])), 2)
    embeddings = np.random.default_rng(2).normal(size=(2, 2, tiny_config.retriever.projection_size)).astype(np.float32)
    outputs = model({"query": featurizer.pack_query(query_tokens), "candidate_embeddings": tf.constant(embeddings),
                     "reader": {k: tf.constant(v) for k, v in reader.features.items()}})
    queries = model.query_embedder(featurizer.pack_query(query_tokens)).numpy()
    np.testing.assert_allclose(outputs["retrieval_logits"].numpy(), np.einsum("bp,bkp->bk", queries, embeddings),
                               rtol=1e-5, atol=1e-5)
    flat = {k: tf.constant(v.reshape(4, -1)) for k, v in reader.features.items()}
    reader_logits, valid = model.reader(flat)
    reader_logits, valid = reader_logits.numpy().reshape(2, 2, *reader_logits.shape[1:]), valid.numpy().reshape(
        2, 2, *valid.shape[1:])
    expected = reader_logits + outputs["retrieval_logits"].numpy()[:, :, None, None]
    got = outputs["span_logits"].numpy()
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-5, atol=1e-4)
    assert (got[~valid] == MASKED_LOGIT).all()
    assert not valid[:, 1].any()  # The empty block (null document) has no span.


def test_every_occurrence_of_an_answer_is_a_target(featurizer):
    text = "Tesla was born in 1856. Later, Tesla moved to the U.S., where the Tesla coil made Teslas famous."
    ids, begins, ends = featurizer.tokenize_with_char_offsets([text])[0]
    word_start = ~featurizer.vocabulary.continuation_mask()[ids]

    def spans(answers, num_tokens=len(ids), max_length=10, regex=False):
        found = find_answer_spans(AnswerMatcher(answers, regex), text, begins, ends, word_start, num_tokens, max_length)
        return [text[begins[s]:ends[e]] for s, e in found]

    # Three times "Tesla" ("Teslas" does not match); not with an article or punctuation around it.
    assert spans(["Tesla"]) == ["Tesla", "Tesla", "Tesla"]
    assert spans(["the u.s."]) == ["U.S"]
    assert spans(["1856"]) == ["1856"]
    assert spans(["born in 1856"], max_length=2) == []  # Three tokens: longer than allowed.
    assert spans(["Tesla"], num_tokens=3) == ["Tesla"]  # The rest was truncated away.
    assert spans(["tesl"]) == []  # Never a piece of a word.
    assert spans([r"18[0-9]{2}"], regex=True) == ["1856"]


def test_a_frozen_query_tower_leaves_only_the_reader_to_train(featurizer):
    from realm_tf.configs import load_config

    built = {}
    for train_query_tower in (True, False):
        config = load_config("tiny", [f"finetune.train_query_tower={str(train_query_tower).lower()}"])
        model = OpenQaModel(config, featurizer.vocabulary.continuation_mask())
        query_tokens = featurizer.tokenize(["who was tesla"])
        reader = pack_reader_candidates(featurizer, query_tokens, RaggedRows.from_lists([[]]), 1)
        model({"query": featurizer.pack_query(query_tokens), "reader": {k: tf.constant(v) for k, v in reader.features.items()},
               "candidate_embeddings": tf.zeros([1, 1, config.retriever.projection_size])})
        built[train_query_tower] = model
    trained, frozen = built[True], built[False]
    query_variables = {v.ref() for v in frozen.query_embedder.variables}
    assert query_variables and not query_variables & {v.ref() for v in frozen.trainable_variables}
    assert len(frozen.trainable_variables) == len(trained.trainable_variables) - len(query_variables)


def test_a_frozen_query_tower_scores_without_dropout_in_training(featurizer):
    from realm_tf.configs import load_config

    query_tokens = featurizer.tokenize(["who was tesla"])
    reader = pack_reader_candidates(featurizer, query_tokens, RaggedRows.from_lists([[]]), 1)
    logits = {}
    for train_query_tower in (True, False):
        config = load_config("tiny", [f"finetune.train_query_tower={str(train_query_tower).lower()}",
                                      "retriever.encoder.dropout_rate=0.5"])
        model = OpenQaModel(config, featurizer.vocabulary.continuation_mask())
        batch = {"query": featurizer.pack_query(query_tokens),
                 "reader": {k: tf.constant(v) for k, v in reader.features.items()},
                 # Not all ones: a LayerNormed query sums to zero, so every score would be 0.
                 "candidate_embeddings": tf.random.stateless_normal(
                     [1, 1, config.retriever.projection_size], seed=[1, 2])}
        logits[train_query_tower] = [model(batch, training=training)["retrieval_logits"].numpy()
                                     for training in (False, True, True)]
    inference, *training = logits[False]
    for scores in training:
        np.testing.assert_allclose(scores, inference, rtol=1e-6)
    inference, first, second = logits[True]  # A training tower drops out: its scores move.
    assert not np.allclose(first, inference) and not np.allclose(first, second)


def test_best_span_picks_the_top_logit_within_the_answer_length_over_every_block():
    logits = np.full([3, 2, 4, 3], MASKED_LOGIT, np.float32)  # [B, K, L, W]
    logits[0, 1, 2, 0] = 1.0
    logits[0, 0, 3, 2] = 5.0  # Best, but 3 wordpieces long: out of reach at max_answer_length 2.
    logits[1, 0, 1, 1] = 2.0  # A tie: the first in (block, position, width) order wins.
    logits[1, 1, 0, 0] = 2.0
    best = best_span(tf.constant(logits), 2)
    np.testing.assert_array_equal(best.score.numpy(), [1.0, 2.0, MASKED_LOGIT])
    np.testing.assert_array_equal(best.candidate.numpy()[:2], [1, 0])
    np.testing.assert_array_equal(best.position.numpy()[:2], [2, 1])
    np.testing.assert_array_equal(best.width.numpy()[:2], [0, 1])
    np.testing.assert_array_equal(best.found.numpy(), [True, True, False])
    assert best_span(tf.constant(logits), 3).score.numpy()[0] == 5.0
    empty = best_span(tf.zeros([0, 2, 4, 3]), tf.constant(2))
    assert empty.score.shape == [0] and empty.found.shape == [0]

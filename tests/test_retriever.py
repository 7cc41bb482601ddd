import numpy as np
import pytest
import tensorflow as tf

from realm_tf.configs import load_config
from realm_tf.features import Featurizer
from realm_tf.modeling import Retriever
from realm_tf.modeling.retriever import relevance


@pytest.fixture(scope="module")
def featurizer(tiny_config):
    return Featurizer(tiny_config.features)


def test_towers_embed_to_128_float32_and_relevance_is_the_inner_product(tiny_config, featurizer):
    retriever = Retriever(tiny_config.retriever)
    queries = retriever.embed_queries(featurizer.query_features(["who was nikola tesla?", "when?"]))
    blocks = retriever.embed_blocks(featurizer.block_features(["Nikola Tesla", "", "X"], ["Tesla was born.", "", "y"]))
    assert queries.shape == (2, 128) and blocks.shape == (3, 128)
    assert queries.dtype == tf.float32
    np.testing.assert_allclose(relevance(queries, blocks).numpy(), queries.numpy() @ blocks.numpy().T, rtol=1e-5)
    # The projection ends in a LayerNorm: each embedding has zero mean and unit variance (gamma 1, beta 0 at init).
    np.testing.assert_allclose(blocks.numpy().mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(blocks.numpy().std(axis=1), 1, atol=1e-3)


def test_the_projection_gain_scales_every_score_by_its_square(featurizer):
    queries, blocks = featurizer.query_features(["who was tesla?"]), featurizer.block_features(["T"], ["tesla was born"])
    scores = {}
    for gain in (1.0, 0.5):
        tf.keras.utils.set_random_seed(0)
        retriever = Retriever(load_config("tiny", [f"retriever.projection_norm_gain={gain}"]).retriever)
        query, block = retriever.embed_queries(queries).numpy(), retriever.embed_blocks(blocks).numpy()
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), gain * np.sqrt(block.shape[1]), rtol=1e-3)
        scores[gain] = relevance(query, block).numpy()
    np.testing.assert_allclose(scores[0.5], 0.25 * scores[1.0], rtol=1e-4)
    with pytest.raises(ValueError, match="retriever.projection_norm_gain"):
        load_config("tiny", ["retriever.projection_norm_gain=0"])


def test_towers_are_shared_by_default_and_separate_by_switch(featurizer):
    shared = Retriever(load_config("tiny").retriever)
    separate = Retriever(load_config("tiny", ["retriever.share_towers=false"]).retriever)
    query = featurizer.query_features(["who?"])
    block = featurizer.block_features(["T"], ["text"])
    for retriever in (shared, separate):
        retriever({"query": query, "block": block})
    assert shared.query_embedder is shared.block_embedder
    assert separate.query_embedder is not separate.block_embedder
    assert len(separate.trainable_variables) == 2 * len(shared.trainable_variables)
    encoder = shared.query_embedder.encoder
    assert encoder.get_config()["num_layers"] == 2 and encoder.get_config()["hidden_size"] == 128


def test_the_null_document_is_the_empty_block(tiny_config, featurizer):
    retriever = Retriever(tiny_config.retriever)
    null = featurizer.block_features([""], [""])
    assert null["input_word_ids"].numpy()[0, :4].tolist() == [101, 102, 102, 0]
    embedding = retriever.embed_blocks(null)
    assert embedding.shape == (1, 128) and np.isfinite(embedding.numpy()).all()


def test_inner_activation_is_the_tanh_gelu(tiny_config):
    # Released BERT checkpoints use the tanh approximation of GELU.
    retriever = Retriever(tiny_config.retriever)
    activation = retriever.query_embedder.encoder.get_config()["inner_activation"]
    x = tf.constant([-2.0, -0.5, 0.7, 3.0])
    tanh_gelu = 0.5 * x * (1 + tf.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    fn = tf.keras.activations.get(activation) if isinstance(activation, (str, dict)) else activation
    np.testing.assert_allclose(fn(x).numpy(), tanh_gelu.numpy(), atol=1e-6)

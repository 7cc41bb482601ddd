"""Starting points that fit a pretrained checkpoint: pooling, the trainable layers, the
masked-LM head over loaded word embeddings, zero-step runs, and what the start-up logs say."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf import train
from realm_tf.checkpoints.formats import open_checkpoint
from realm_tf.checkpoints.initialize import initialize_from_checkpoints, load_knowledge_encoder
from realm_tf.configs import ConfigError, load_config
from realm_tf.features import Featurizer
from realm_tf.modeling import Retriever
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.span_reader import SpanReader
from realm_tf.retrieval.embedder_export import EmbedderExport

from checkpoint_writers import Sizes, random_hugging_face_model, write_hugging_face

KEYS = ("input_word_ids", "input_mask", "input_type_ids")
TINY_BERT = Sizes(vocab_size=30522, hidden_size=128, num_layers=2, num_attention_heads=2, intermediate_size=512,
                  max_position_embeddings=512)


@pytest.fixture(scope="module")
def featurizer(tiny_config):
    return Featurizer(tiny_config.features)


@pytest.fixture(scope="module")
def hugging_face_bert(tmp_path_factory):
    """A random BertModel (no masked-LM head) of the tiny config's encoder sizes."""
    directory = str(tmp_path_factory.mktemp("hf_bert"))
    return write_hugging_face(directory, random_hugging_face_model(TINY_BERT, seed=3, pretraining=False))


def test_mean_pooling_projects_the_mean_of_the_unpadded_token_states(featurizer):
    config = load_config("tiny", ["retriever.pooling=mean"]).retriever
    embedder = ProjectedEmbedder(config)
    features = featurizer.block_features(["Nikola Tesla", "Tesla"], ["was born in 1856 in Smiljan.", "an engineer"])
    embedded = embedder(features).numpy()
    states = embedder.encoder({k: features[k] for k in KEYS})["sequence_output"].numpy()
    mask = features["input_mask"].numpy().astype(bool)
    means = np.stack([states[i][mask[i]].mean(axis=0) for i in range(len(states))])
    expected = embedder.layer_norm(embedder.projection(tf.constant(means))).numpy()
    np.testing.assert_allclose(embedded, expected, rtol=1e-4, atol=1e-5)
    # Padding changes nothing: the same block packed into a longer input embeds the same.
    longer = Featurizer(load_config("tiny", ["features.block_length=200"]).features)
    padded = embedder(longer.block_features(["Nikola Tesla"], ["was born in 1856 in Smiljan."])).numpy()
    np.testing.assert_allclose(padded[0], embedded[0], rtol=1e-4, atol=1e-4)
    # [CLS] pooling (the default, the paper's) reads another vector.
    cls = ProjectedEmbedder(load_config("tiny").retriever)
    cls(features)
    cls.set_weights(embedder.get_weights())
    assert not np.allclose(cls(features).numpy(), embedded, atol=1e-3)


def test_identity_projection_keeps_the_pooled_geometry(featurizer):
    hidden = load_config("tiny").retriever.encoder.hidden_size
    config = load_config("tiny", ["retriever.pooling=mean", "retriever.projection_initializer=identity",
                                  f"retriever.projection_size={hidden}"]).retriever
    embedder = ProjectedEmbedder(config)
    features = featurizer.block_features(["Nikola Tesla", "Tesla", "Smiljan"],
                                         ["was born in 1856 in Smiljan.", "an engineer", "a village in Lika"])
    embedded = embedder(features).numpy()
    states = embedder.encoder({k: features[k] for k in KEYS})["sequence_output"].numpy()
    mask = features["input_mask"].numpy().astype(bool)
    means = np.stack([states[i][mask[i]].mean(axis=0) for i in range(len(states))])
    np.testing.assert_array_equal(embedder.projection.kernel.numpy(), np.eye(hidden, dtype=np.float32))
    # LayerNorm'd means: inner products are gain^2 x width x the means' correlations.
    centred = means - means.mean(axis=1, keepdims=True)
    correlations = np.corrcoef(centred)
    gain = config.projection_norm_gain
    np.testing.assert_allclose(embedded @ embedded.T, gain ** 2 * hidden * correlations, rtol=1e-3, atol=1e-3)


def test_identity_projection_needs_the_encoder_width():
    with pytest.raises(ConfigError, match="retriever.projection_size = 64 must be retriever.encoder.hidden_size"):
        load_config("tiny", ["retriever.projection_initializer=identity", "retriever.projection_size=64"])
    with pytest.raises(ConfigError, match="retriever.projection_initializer"):
        load_config("tiny", ["retriever.projection_initializer=orthogonal"])


@pytest.mark.parametrize("override, words", [
    ("retriever.pooling=max", "retriever.pooling"),
    ("reader.trainable_layers=3", "reader.trainable_layers"),
    ("reader.trainable_layers=-1", "reader.trainable_layers"),
])
def test_pooling_and_trainable_layers_are_checked(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config("tiny", [override])


def test_ict_may_run_zero_steps(tiny_config):
    config = load_config("tiny", ["ict.training.train_steps=0"])
    assert config.ict.training.train_steps == 0
    with pytest.raises(ConfigError, match="ict.training.train_steps"):
        load_config("tiny", ["ict.training.train_steps=-1"])


def _reader_features(featurizer, question, body):
    return featurizer.pack_reader(featurizer.tokenize([question]), featurizer.tokenize([body]))


def _reader_loss(model, features, training=True):
    if isinstance(model, SpanReader):
        logits, valid = model(features, training=training)
        return tf.reduce_sum(tf.where(valid, logits, 0.0))
    return tf.reduce_sum(model(features, tf.constant([[1, 2]]), training=training))


@pytest.mark.parametrize("model_class", [SpanReader, KnowledgeAugmentedEncoder])
def test_only_the_top_layers_train_and_gradients_stop_there(model_class, featurizer):
    def build(overrides):
        config = load_config("tiny", overrides).reader
        if model_class is SpanReader:
            return model_class(config, featurizer.vocabulary.continuation_mask())
        return model_class(config)

    features = _reader_features(featurizer, "when was tesla born?", "Tesla was born in 1856.")
    model, everything = build(["reader.trainable_layers=1"]), build([])
    with tf.GradientTape() as tape:
        loss = _reader_loss(model, features)
    _reader_loss(everything, features)
    names = {v.name for v in model.trainable_variables}
    assert not any(part in n for n in names for part in ("position_embedding", "type_embeddings", "embeddings/layer_norm"))
    assert not any("transformer/layer_0/" in n for n in names) and any("transformer/layer_1/" in n for n in names)
    # The word embeddings stay as loaded in the reader; the masked-LM head's output matrix is
    # the same variable, and there it trains (only the head's gradient reaches it).
    word_embeddings_train = any("word_embeddings" in n for n in names)
    assert word_embeddings_train == (model_class is KnowledgeAugmentedEncoder)
    assert len(everything.trainable_variables) > len(model.trainable_variables)
    # The trainable layer gets gradients; the frozen ones are not even asked for.
    gradients = dict(zip([v.name for v in model.trainable_variables],
                         tape.gradient(loss, model.trainable_variables)))
    assert any(g is not None for n, g in gradients.items() if "transformer/layer_1/" in n)


def test_masked_lm_head_over_a_bert_without_one_uses_the_loaded_word_embeddings(hugging_face_bert, featurizer):
    config = load_config("tiny", ["reader.encoder.hidden_activation=gelu_exact"]).reader
    reader = KnowledgeAugmentedEncoder(config)
    features = _reader_features(featurizer, "who?", "Tesla was born in 1856.")
    positions = tf.constant([[3, 4]])
    reader(features, positions)
    report = load_knowledge_encoder(reader, open_checkpoint(hugging_face_bert))
    assert report.left_initialized == [
        "masked-LM transform and output bias (its output matrix is the loaded word embeddings)"]
    loaded = reader.encoder.get_embedding_table().numpy()
    # The head's output matrix is the same variable: the logits are transform(h) . E^T + bias.
    head = reader.masked_lm
    states = reader.encoder({k: features[k] for k in KEYS})["sequence_output"]
    hidden = tf.reshape(tf.gather(states, positions, batch_dims=1), [-1, states.shape[-1]])
    transformed = head.layer_norm(head.dense(hidden)).numpy()
    expected = (transformed @ loaded.T + head.bias.numpy()).reshape(1, 2, -1)
    np.testing.assert_allclose(reader(features, positions).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_parts_an_earlier_stage_restores_are_not_reported_as_loaded(hugging_face_bert, featurizer, caplog):
    config = load_config("tiny", [f"retriever.init_checkpoint={hugging_face_bert}",
                                  "retriever.encoder.hidden_activation=gelu_exact"])
    retriever = Retriever(config.retriever)
    retriever({"query": featurizer.query_features(["q"]), "block": featurizer.block_features(["t"], ["b"])})
    caplog.set_level("INFO")
    assert [r.part for r in initialize_from_checkpoints(retriever, config)] == ["retriever.query_embedder"]
    assert "left at initialization: projection" in caplog.text
    caplog.clear()
    assert initialize_from_checkpoints(retriever, config, skip=("retriever",)) == []
    assert "left at initialization" not in caplog.text


def test_zero_step_ict_exports_the_imported_towers(hugging_face_bert, small_blocks_dir, tmp_path):
    model_dir = tmp_path / "ict"
    overrides = [f"retriever.init_checkpoint={hugging_face_bert}", "retriever.encoder.hidden_activation=gelu_exact",
                 "retriever.pooling=mean", "ict.training.train_steps=0"]
    result = train.run(["--task=ict", "--config=tiny", f"--blocks_dir={small_blocks_dir}",
                        f"--model_dir={model_dir}", "--skip_heldout_eval", "--no_progress"]
                       + [f"--override={o}" for o in overrides])
    assert result["step"] == 0 and result["eval"] == {} and not (model_dir / "eval.json").exists()
    # Its start is saved for the next stage's --init_from, and exported for indexing.
    assert (model_dir / "checkpoints" / "ckpt-0.index").is_file()
    export = EmbedderExport.load(str(model_dir / "embedder" / "0"))
    assert export.step == 0
    stored = tf.train.load_variable(str(model_dir / "checkpoints" / "ckpt-0"),
                                    "model/query_embedder/encoder/_embedding_layer/embeddings/.ATTRIBUTES/VARIABLE_VALUE")
    from checkpoint_writers import read_hugging_face

    np.testing.assert_allclose(stored, read_hugging_face(hugging_face_bert)["embeddings.word_embeddings.weight"])

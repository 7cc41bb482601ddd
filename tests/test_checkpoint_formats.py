"""Pretrained checkpoints in the three real formats, loaded and checked tensor by tensor.

Each test writes a checkpoint with the exact names, layouts and files of a release
(`checkpoint_writers`), loads it through `realm_tf.checkpoints`, and checks every variable
of the model part against the raw stored tensor through a mapping written out here,
independently of the loader's own name tables.
"""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from checkpoint_writers import (
    PROJECTION_SIZE, Sizes, copy_tf1_checkpoint, edit_hugging_face_config, random_hugging_face_model,
    random_model_garden_encoder, read_hugging_face, read_tf_checkpoint, realm_batch, truncated_bert_vocab,
    write_hugging_face, write_model_garden, write_orqa_finetuned, write_realm_bert_module,
    write_realm_embedder_module)
from realm_tf.checkpoints.formats import is_optimizer_state, open_checkpoint
from realm_tf.checkpoints.initialize import (
    initialize_from_checkpoints, load_embedder, load_knowledge_encoder, load_span_reader, unread_names)
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.configs import BertConfig, ExperimentConfig, FeaturesConfig, ReaderConfig, RetrieverConfig
from realm_tf.features.featurizer import Featurizer
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.realm_pretrainer import RealmPretrainer
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import Retriever
from realm_tf.tasks.finetune import build_open_qa_model

# The REALM/ORQA family: heads are not in any shape, and the releases use one per 64
# dimensions, so 128 wide gives 2 heads by the same rule as BERT-base's 12.
TF1_SIZES = Sizes(vocab_size=1000, hidden_size=128, num_layers=2, num_attention_heads=2, intermediate_size=256)
SPAN_HIDDEN = 32
NUM_BLOCKS = 20
HF_SIZES = Sizes(vocab_size=200, hidden_size=48, num_layers=2, num_attention_heads=4, intermediate_size=192)
# MiniLM-L12-H384's shape (4x intermediate, 32 dims per head), smaller.
MINILM_SIZES = Sizes(vocab_size=180, hidden_size=64, num_layers=2, num_attention_heads=2, intermediate_size=256)
MG_SIZES = Sizes(vocab_size=150, hidden_size=32, num_layers=2, num_attention_heads=2, intermediate_size=128)
KEYS = ("input_word_ids", "input_mask", "input_type_ids")


def bert_config(sizes, activation="gelu", **changes) -> BertConfig:
    fields = dict(dataclasses.asdict(sizes), **changes)
    return BertConfig(**fields, hidden_activation=activation, dropout_rate=0.0, attention_dropout_rate=0.0)


def experiment(sizes, activation="gelu", retriever="", reader="", vocab_file="", epsilon=1e-12, share_towers=True,
               **encoder_changes) -> ExperimentConfig:
    return ExperimentConfig(
        features=FeaturesConfig(vocab_file=vocab_file, query_length=12, block_length=16, reader_length=26),
        retriever=RetrieverConfig(encoder=bert_config(sizes, activation, **encoder_changes), init_checkpoint=retriever,
                                  projection_norm_epsilon=epsilon, share_towers=share_towers),
        reader=ReaderConfig(encoder=bert_config(sizes, activation, **encoder_changes), init_checkpoint=reader,
                            span_hidden_size=SPAN_HIDDEN, max_span_length=4))


def expected_sizes(sizes, activation):
    return dict(dataclasses.asdict(sizes), hidden_activation=activation)


def call_once(layer, length=8):
    """Builds a tower or encoder by calling it."""
    return layer({k: tf.zeros([1, length], tf.int32) for k in KEYS})


def built_embedder(sizes, activation="gelu", epsilon=1e-12):
    embedder = ProjectedEmbedder(RetrieverConfig(encoder=bert_config(sizes, activation),
                                                 projection_norm_epsilon=epsilon))
    call_once(embedder)
    return embedder


def built_knowledge_encoder(sizes, activation="gelu"):
    reader = KnowledgeAugmentedEncoder(ReaderConfig(encoder=bert_config(sizes, activation)))
    reader({k: tf.zeros([1, 8], tf.int32) for k in KEYS}, tf.zeros([1, 1], tf.int32))
    return reader


def build_pretrainer(config, rng):
    model = RealmPretrainer(config)
    model(realm_batch(rng, config.reader.encoder.vocab_size), training=False)
    return model


# --- independent mappings: stored tensor -> the variable it must fill ------------------------


def tf1_encoder_pairs(encoder, t, scope, heads):
    """(variable, expected value) for every variable of a `BertEncoderV2` from TF1 BERT names
    `<scope>bert/...`: kernels [in, out]; the attention's Einsum kernels split the heads out."""
    b = scope + "bert/"
    hidden = t[b + "embeddings/word_embeddings"].shape[1]
    size = hidden // heads
    pairs = [(encoder._embedding_layer.embeddings, t[b + "embeddings/word_embeddings"]),
             (encoder._position_embedding_layer._position_embeddings, t[b + "embeddings/position_embeddings"]),
             (encoder._type_embedding_layer.embeddings, t[b + "embeddings/token_type_embeddings"]),
             (encoder._embedding_norm_layer.gamma, t[b + "embeddings/LayerNorm/gamma"]),
             (encoder._embedding_norm_layer.beta, t[b + "embeddings/LayerNorm/beta"])]
    for i, block in enumerate(encoder.transformer_layers):
        layer, attention = f"{b}encoder/layer_{i}/", block._attention_layer
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            pairs += [(dense.kernel, t[f"{layer}attention/self/{part}/kernel"].reshape(hidden, heads, size)),
                      (dense.bias, t[f"{layer}attention/self/{part}/bias"].reshape(heads, size))]
        pairs += [
            (attention._output_dense.kernel, t[layer + "attention/output/dense/kernel"].reshape(heads, size, hidden)),
            (attention._output_dense.bias, t[layer + "attention/output/dense/bias"]),
            (block._attention_layer_norm.gamma, t[layer + "attention/output/LayerNorm/gamma"]),
            (block._attention_layer_norm.beta, t[layer + "attention/output/LayerNorm/beta"]),
            (block._intermediate_dense.kernel, t[layer + "intermediate/dense/kernel"]),
            (block._intermediate_dense.bias, t[layer + "intermediate/dense/bias"]),
            (block._output_dense.kernel, t[layer + "output/dense/kernel"]),
            (block._output_dense.bias, t[layer + "output/dense/bias"]),
            (block._output_layer_norm.gamma, t[layer + "output/LayerNorm/gamma"]),
            (block._output_layer_norm.beta, t[layer + "output/LayerNorm/beta"])]
    return pairs + [(encoder.pooler_layer.kernel, t[b + "pooler/dense/kernel"]),
                    (encoder.pooler_layer.bias, t[b + "pooler/dense/bias"])]


def tf1_masked_lm_pairs(masked_lm, t, scope):
    c = scope + "cls/predictions/"
    return [(masked_lm.dense.kernel, t[c + "transform/dense/kernel"]),
            (masked_lm.dense.bias, t[c + "transform/dense/bias"]),
            (masked_lm.layer_norm.gamma, t[c + "transform/LayerNorm/gamma"]),
            (masked_lm.layer_norm.beta, t[c + "transform/LayerNorm/beta"]),
            (masked_lm.bias, t[c + "output_bias"])]


def tf1_projection_pairs(embedder, t, scope, norm="LayerNorm"):
    return [(embedder.projection.kernel, t[scope + "dense/kernel"]),
            (embedder.projection.bias, t[scope + "dense/bias"]),
            (embedder.layer_norm.gamma, t[f"{scope}{norm}/gamma"]),
            (embedder.layer_norm.beta, t[f"{scope}{norm}/beta"])]


def hf_encoder_pairs(encoder, w, prefix, heads, gamma_beta=False):
    """The same for Hugging Face names: `torch.nn.Linear` weights are [out, in], transposed here."""
    p = prefix
    hidden = w[p + "embeddings.word_embeddings.weight"].shape[1]
    size = hidden // heads
    scale, shift = (".gamma", ".beta") if gamma_beta else (".weight", ".bias")
    pairs = [(encoder._embedding_layer.embeddings, w[p + "embeddings.word_embeddings.weight"]),
             (encoder._position_embedding_layer._position_embeddings, w[p + "embeddings.position_embeddings.weight"]),
             (encoder._type_embedding_layer.embeddings, w[p + "embeddings.token_type_embeddings.weight"]),
             (encoder._embedding_norm_layer.gamma, w[p + "embeddings.LayerNorm" + scale]),
             (encoder._embedding_norm_layer.beta, w[p + "embeddings.LayerNorm" + shift])]
    for i, block in enumerate(encoder.transformer_layers):
        layer, attention = f"{p}encoder.layer.{i}.", block._attention_layer
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            pairs += [(dense.kernel, w[f"{layer}attention.self.{part}.weight"].T.reshape(hidden, heads, size)),
                      (dense.bias, w[f"{layer}attention.self.{part}.bias"].reshape(heads, size))]
        pairs += [
            (attention._output_dense.kernel, w[layer + "attention.output.dense.weight"].T.reshape(heads, size, hidden)),
            (attention._output_dense.bias, w[layer + "attention.output.dense.bias"]),
            (block._attention_layer_norm.gamma, w[layer + "attention.output.LayerNorm" + scale]),
            (block._attention_layer_norm.beta, w[layer + "attention.output.LayerNorm" + shift]),
            (block._intermediate_dense.kernel, w[layer + "intermediate.dense.weight"].T),
            (block._intermediate_dense.bias, w[layer + "intermediate.dense.bias"]),
            (block._output_dense.kernel, w[layer + "output.dense.weight"].T),
            (block._output_dense.bias, w[layer + "output.dense.bias"]),
            (block._output_layer_norm.gamma, w[layer + "output.LayerNorm" + scale]),
            (block._output_layer_norm.beta, w[layer + "output.LayerNorm" + shift])]
    return pairs + [(encoder.pooler_layer.kernel, w[p + "pooler.dense.weight"].T),
                    (encoder.pooler_layer.bias, w[p + "pooler.dense.bias"])]


def hf_masked_lm_pairs(masked_lm, w, gamma_beta=False):
    scale, shift = (".gamma", ".beta") if gamma_beta else (".weight", ".bias")
    return [(masked_lm.dense.kernel, w["cls.predictions.transform.dense.weight"].T),
            (masked_lm.dense.bias, w["cls.predictions.transform.dense.bias"]),
            (masked_lm.layer_norm.gamma, w["cls.predictions.transform.LayerNorm" + scale]),
            (masked_lm.layer_norm.beta, w["cls.predictions.transform.LayerNorm" + shift]),
            (masked_lm.bias, w["cls.predictions.bias"])]


def mg_encoder_pairs(encoder, t, num_layers):
    """The same for `tf.train.Checkpoint(encoder=BertEncoder)`: the functional encoder's weighted
    layers in order (word, position, type embeddings, embedding LayerNorm, the blocks, the
    pooler); its Einsum kernels have this project's shapes already."""
    v = lambda path: t[f"encoder/layer_with_weights-{path}/.ATTRIBUTES/VARIABLE_VALUE"]  # noqa: E731
    pairs = [(encoder._embedding_layer.embeddings, v("0/embeddings")),
             (encoder._position_embedding_layer._position_embeddings, v("1/embeddings")),
             (encoder._type_embedding_layer.embeddings, v("2/embeddings")),
             (encoder._embedding_norm_layer.gamma, v("3/gamma")),
             (encoder._embedding_norm_layer.beta, v("3/beta"))]
    for i, block in enumerate(encoder.transformer_layers):
        n, attention = 4 + i, block._attention_layer
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense), ("output", attention._output_dense)):
            pairs += [(dense.kernel, v(f"{n}/_attention_layer/_{part}_dense/kernel")),
                      (dense.bias, v(f"{n}/_attention_layer/_{part}_dense/bias"))]
        pairs += [(block._attention_layer_norm.gamma, v(f"{n}/_attention_layer_norm/gamma")),
                  (block._attention_layer_norm.beta, v(f"{n}/_attention_layer_norm/beta")),
                  (block._intermediate_dense.kernel, v(f"{n}/_intermediate_dense/kernel")),
                  (block._intermediate_dense.bias, v(f"{n}/_intermediate_dense/bias")),
                  (block._output_dense.kernel, v(f"{n}/_output_dense/kernel")),
                  (block._output_dense.bias, v(f"{n}/_output_dense/bias")),
                  (block._output_layer_norm.gamma, v(f"{n}/_output_layer_norm/gamma")),
                  (block._output_layer_norm.beta, v(f"{n}/_output_layer_norm/beta"))]
    return pairs + [(encoder.pooler_layer.kernel, v(f"{4 + num_layers}/kernel")),
                    (encoder.pooler_layer.bias, v(f"{4 + num_layers}/bias"))]


def snapshot(layer):
    return {id(v): v.numpy().copy() for v in layer.weights}


def assert_every_variable(layer, pairs, before=None, untouched=()):
    """Every variable of `layer` is in `pairs` and holds exactly its expected value, or is one
    of the layers in `untouched`, whose variables kept their values from `before`."""
    expected_ids = {id(variable) for variable, _ in pairs}
    # A MaskedLM's weights include the word embeddings it shares with the encoder.
    untouched_vars = {id(v): v for part in untouched for v in part.weights if id(v) not in expected_ids}
    all_vars = {id(v): v for v in layer.weights}
    assert len(expected_ids) == len(pairs), "a variable is mapped twice"
    missing = [v.name for i, v in all_vars.items() if i not in expected_ids and i not in untouched_vars]
    assert not missing, f"variables the test does not check: {missing}"
    assert expected_ids | set(untouched_vars) == set(all_vars)
    for variable, value in pairs:
        assert tuple(variable.shape) == value.shape, (variable.name, variable.shape, value.shape)
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.name)
    for i, variable in untouched_vars.items():
        np.testing.assert_array_equal(variable.numpy(), before[i], err_msg=f"{variable.name} changed")


def non_optimizer(names):
    return sorted(n for n in names if not is_optimizer_state(n))


# --- the checkpoints --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hugging_face(tmp_path_factory):
    """BertForPreTraining as model.safetensors, sharded safetensors, pytorch_model.bin and a
    gamma/beta-named .bin;
    a MiniLM-shaped BertModel (no `bert.` prefix) as model.safetensors."""
    root = tmp_path_factory.mktemp("hugging_face")
    model = random_hugging_face_model(HF_SIZES, seed=1)
    dirs = {variant: write_hugging_face(str(root / variant), model, variant)
            for variant in ("safetensors", "sharded", "bin", "bin_gamma_beta")}
    dirs["minilm"] = write_hugging_face(str(root / "minilm"),
                                        random_hugging_face_model(MINILM_SIZES, seed=2, pretraining=False))
    return dirs


@pytest.fixture(scope="module")
def model_garden(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("model_garden") / "uncased_L-2_H-32_A-2")
    prefix = write_model_garden(directory, random_model_garden_encoder(MG_SIZES, seed=3), MG_SIZES)
    return {"dir": directory, "prefix": prefix}


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    """The REALM release's `cc_news_pretrained/{bert,embedder}` and `orqa_nq_model_from_realm`,
    and an ORQA-ICT-style embedder (`layer_normalization`)."""
    root = tmp_path_factory.mktemp("realm")
    rng = np.random.default_rng(4)
    vocab = truncated_bert_vocab(TF1_SIZES.vocab_size)
    bert = str(root / "cc_news_pretrained" / "bert")
    embedder = str(root / "cc_news_pretrained" / "embedder")
    orqa = str(root / "orqa_nq_model_from_realm")
    ict = str(root / "orqa_ict" / "embedder")
    return {
        "bert": bert, "embedder": embedder, "orqa": orqa, "ict": ict,
        "vocab": os.path.join(bert, "assets", "vocab.txt"),
        "bert_tensors": write_realm_bert_module(bert, rng, TF1_SIZES, vocab),
        "embedder_tensors": write_realm_embedder_module(embedder, rng, TF1_SIZES, vocab, NUM_BLOCKS),
        "orqa_tensors": write_orqa_finetuned(orqa, rng, TF1_SIZES, SPAN_HIDDEN, NUM_BLOCKS),
        "ict_tensors": write_realm_embedder_module(ict, rng, TF1_SIZES, None, norm_name="layer_normalization"),
    }


# --- Hugging Face ---------------------------------------------------------------------


HF_PRETRAINING_UNUSED = {
    "safetensors": ["cls.seq_relationship.bias", "cls.seq_relationship.weight"],
    # The .bin keeps the decoder tied to the word embeddings and cls.predictions.bias.
    "bin": ["cls.predictions.decoder.bias", "cls.predictions.decoder.weight", "cls.seq_relationship.bias",
            "cls.seq_relationship.weight"],
}
HF_PRETRAINING_UNUSED["sharded"] = HF_PRETRAINING_UNUSED["safetensors"]
HF_PRETRAINING_UNUSED["bin_gamma_beta"] = HF_PRETRAINING_UNUSED["bin"]
HF_WEIGHTS_FILE = {"safetensors": "model.safetensors", "sharded": "model.safetensors.index.json",
                   "bin": "pytorch_model.bin", "bin_gamma_beta": "pytorch_model.bin"}


@pytest.mark.parametrize("variant", ["safetensors", "sharded", "bin", "bin_gamma_beta"])
def test_hugging_face_bert_for_pretraining(hugging_face, variant):
    directory = hugging_face[variant]
    stored = read_hugging_face(directory)
    gamma_beta = variant == "bin_gamma_beta"
    assert ("bert.embeddings.LayerNorm.gamma" in stored) == gamma_beta
    checkpoint = open_checkpoint(directory)
    assert checkpoint.format == "hugging_face"
    assert checkpoint.encoder_sizes == expected_sizes(HF_SIZES, "gelu_exact")  # HF "gelu" is the erf form.
    assert checkpoint.source.path == os.path.join(directory, HF_WEIGHTS_FILE[variant])

    reader = built_knowledge_encoder(HF_SIZES, "gelu_exact")
    report = load_knowledge_encoder(reader, checkpoint)
    assert report.left_initialized == [] and report.format == "hugging_face"
    assert_every_variable(reader, hf_encoder_pairs(reader.encoder, stored, "bert.", HF_SIZES.num_attention_heads,
                                                   gamma_beta)
                          + hf_masked_lm_pairs(reader.masked_lm, stored, gamma_beta))

    embedder = built_embedder(HF_SIZES, "gelu_exact")
    before = snapshot(embedder)
    tower = load_embedder(embedder, checkpoint)
    assert tower.left_initialized == ["projection and its LayerNorm"]
    assert_every_variable(embedder, hf_encoder_pairs(embedder.encoder, stored, "bert.",
                                                     HF_SIZES.num_attention_heads, gamma_beta),
                          before, untouched=[embedder.projection, embedder.layer_norm])

    unused = HF_PRETRAINING_UNUSED[variant]
    assert sorted(report.read) == sorted(set(stored) - set(unused))
    assert sorted(tower.read) == sorted(n for n in stored if n.startswith("bert."))
    assert unread_names(checkpoint, [report, tower]) == unused


def test_hugging_face_minilm_bert_model_into_a_retriever(hugging_face):
    """A smaller BERT (MiniLM's shape) saved as `BertModel`: names without `bert.`."""
    directory = hugging_face["minilm"]
    stored = read_hugging_face(directory)
    assert not any(name.startswith(("bert.", "cls.")) for name in stored)
    checkpoint = open_checkpoint(directory)
    assert checkpoint.encoder_sizes == expected_sizes(MINILM_SIZES, "gelu_exact")

    config = experiment(MINILM_SIZES, "gelu_exact", retriever=directory, share_towers=False)
    retriever = Retriever(config.retriever)
    retriever({"query": {k: tf.zeros([1, 8], tf.int32) for k in KEYS},
               "block": {k: tf.zeros([1, 8], tf.int32) for k in KEYS}})
    before = snapshot(retriever)
    reports = initialize_from_checkpoints(retriever, config)
    assert [r.part for r in reports] == ["retriever.query_embedder", "retriever.block_embedder"]
    heads = MINILM_SIZES.num_attention_heads
    for tower in (retriever.query_embedder, retriever.block_embedder):
        assert_every_variable(tower, hf_encoder_pairs(tower.encoder, stored, "", heads), before,
                              untouched=[tower.projection, tower.layer_norm])
    for report in reports:
        assert sorted(report.read) == sorted(stored)
        assert report.left_initialized == ["projection and its LayerNorm"]
    assert unread_names(checkpoint, reports) == []

    # No masked-LM head in a BertModel: the reader keeps its own.
    reader = built_knowledge_encoder(MINILM_SIZES, "gelu_exact")
    before = snapshot(reader)
    report = load_knowledge_encoder(reader, checkpoint)
    assert report.left_initialized == [
        "masked-LM transform and output bias (its output matrix is the loaded word embeddings)"]
    assert_every_variable(reader, hf_encoder_pairs(reader.encoder, stored, "", heads), before,
                          untouched=[reader.masked_lm])


@pytest.mark.parametrize("hidden_act, ours", [("gelu", "gelu_exact"), ("gelu_new", "gelu"),
                                              ("gelu_pytorch_tanh", "gelu"), ("relu", "relu")])
def test_hugging_face_activation(hugging_face, tmp_path, hidden_act, ours):
    directory = edit_hugging_face_config(hugging_face["minilm"], str(tmp_path / "edited"), hidden_act=hidden_act)
    assert open_checkpoint(directory).encoder_sizes["hidden_activation"] == ours


@pytest.mark.parametrize("field, value, words", [
    ("layer_norm_eps", 1e-5, "layer_norm_eps 1e-05"),
    ("model_type", "roberta", "model_type 'roberta'"),
    ("position_embedding_type", "relative_key", "position_embedding_type 'relative_key'"),
    ("hidden_act", "silu", "hidden_act 'silu'"),
])
def test_hugging_face_config_that_does_not_fit(hugging_face, tmp_path, field, value, words):
    directory = edit_hugging_face_config(hugging_face["safetensors"], str(tmp_path / "edited"), **{field: value})
    with pytest.raises(CheckpointError) as error:
        open_checkpoint(directory)
    assert os.path.join(directory, "config.json") in str(error.value)
    assert words in str(error.value)


# --- Model Garden -----------------------------------------------------------------------


def test_model_garden_into_an_open_qa_model(model_garden):
    directory = model_garden["dir"]
    stored = read_tf_checkpoint(model_garden["prefix"])
    checkpoint = open_checkpoint(directory)
    assert checkpoint.format == "model_garden"
    # Heads from bert_config.json (the shapes would say 1); the released tanh GELU.
    assert checkpoint.encoder_sizes == expected_sizes(MG_SIZES, "gelu")
    # The prefix itself names it as well (bert_config.json beside it).
    assert open_checkpoint(model_garden["prefix"]).encoder_sizes == checkpoint.encoder_sizes

    config = experiment(MG_SIZES, retriever=directory, reader=directory)
    model = build_open_qa_model(config, Featurizer(config.features))
    before = snapshot(model)
    reports = initialize_from_checkpoints(model, config)
    assert [r.part for r in reports] == ["retriever.query_embedder", "reader"]
    assert [r.left_initialized for r in reports] == [["projection and its LayerNorm"], ["span head"]]
    n = MG_SIZES.num_layers
    query, reader = model.query_embedder, model.reader
    assert_every_variable(model, mg_encoder_pairs(query.encoder, stored, n)
                          + mg_encoder_pairs(reader.encoder, stored, n),
                          before, untouched=[query.projection, query.layer_norm, reader.span_scorer])
    weights = sorted(n for n in stored if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    for report in reports:
        assert sorted(report.read) == weights
    assert unread_names(checkpoint, reports) == []


# --- REALM / ORQA TF1 -------------------------------------------------------------------


def test_realm_pretrainer_from_the_cc_news_release(realm):
    bert, embedder = realm["bert_tensors"], realm["embedder_tensors"]
    config = experiment(TF1_SIZES, retriever=realm["embedder"], reader=realm["bert"], vocab_file=realm["vocab"])
    model = build_pretrainer(config, np.random.default_rng(0))
    reports = initialize_from_checkpoints(model, config)

    tower, reader = model.retriever.query_embedder, model.reader
    assert model.retriever.block_embedder is tower  # Shared towers: one report.
    heads = TF1_SIZES.num_attention_heads
    assert_every_variable(model, tf1_encoder_pairs(tower.encoder, embedder, "module/module/module/", heads)
                          + tf1_projection_pairs(tower, embedder, "module/module/")
                          + tf1_encoder_pairs(reader.encoder, bert, "", heads)
                          + tf1_masked_lm_pairs(reader.masked_lm, bert, ""))

    assert [r.part for r in reports] == ["retriever.query_embedder", "reader"]
    assert all(r.left_initialized == [] and r.format == "tf1" for r in reports)
    tower_report, reader_report = reports
    assert sorted(tower_report.read) == sorted(set(embedder) - {"block_emb"})  # block_emb: encoded/encoded.ckpt.
    assert sorted(reader_report.read) == sorted(bert)
    for path, report in ((realm["embedder"], tower_report), (realm["bert"], reader_report)):
        checkpoint = open_checkpoint(path)
        assert checkpoint.format == "tf1" and checkpoint.encoder_sizes == expected_sizes(TF1_SIZES, "gelu")
        assert checkpoint.vocab_file == os.path.join(path, "assets", "vocab.txt")
        names = checkpoint.source.names()
        slots = [n for n in names if is_optimizer_state(n)]
        assert "global_step" in slots and len(slots) == 2 * len(report.read) + 1
        assert not set(slots) & set(report.read)
        assert sorted(report.read) == non_optimizer(names)
        assert unread_names(checkpoint, [report]) == []


def test_retriever_from_the_embedder_release_fills_both_towers(realm):
    embedder = realm["embedder_tensors"]
    config = experiment(TF1_SIZES, retriever=realm["embedder"], vocab_file=realm["vocab"], share_towers=False)
    retriever = Retriever(config.retriever)
    retriever({"query": {k: tf.zeros([1, 8], tf.int32) for k in KEYS},
               "block": {k: tf.zeros([1, 8], tf.int32) for k in KEYS}})
    reports = initialize_from_checkpoints(retriever, config)
    assert [r.part for r in reports] == ["retriever.query_embedder", "retriever.block_embedder"]
    pairs = []
    for tower in (retriever.query_embedder, retriever.block_embedder):
        pairs += tf1_encoder_pairs(tower.encoder, embedder, "module/module/module/", TF1_SIZES.num_attention_heads)
        pairs += tf1_projection_pairs(tower, embedder, "module/module/")
    assert_every_variable(retriever, pairs)


def test_open_qa_model_from_the_orqa_release(realm):
    orqa = realm["orqa_tensors"]
    config = experiment(TF1_SIZES, retriever=realm["orqa"], reader=realm["orqa"], vocab_file=realm["vocab"])
    checkpoint = open_checkpoint(realm["orqa"])
    assert checkpoint.format == "tf1" and checkpoint.roles() == ["reader", "retriever"]
    assert checkpoint.block_embeddings == "block_emb"
    assert checkpoint.source.shape("block_emb") == (NUM_BLOCKS, PROJECTION_SIZE)
    assert checkpoint.source.path == os.path.join(realm["orqa"], "model.ckpt-300")
    assert checkpoint.vocab_file is None  # Shipped without one: nothing to compare.

    model = build_open_qa_model(config, Featurizer(config.features))
    reports = initialize_from_checkpoints(model, config)
    query, reader = model.query_embedder, model.reader
    span = reader.span_scorer
    heads = TF1_SIZES.num_attention_heads
    assert_every_variable(model, tf1_encoder_pairs(query.encoder, orqa, "module/module/module/module/", heads)
                          + tf1_projection_pairs(query, orqa, "module/module/module/")
                          + tf1_encoder_pairs(reader.encoder, orqa, "reader/module/", heads)
                          + [(span.dense.kernel, orqa["reader/dense/kernel"]),
                             (span.dense.bias, orqa["reader/dense/bias"]),
                             (span.layer_norm.gamma, orqa["reader/layer_normalization/gamma"]),
                             (span.layer_norm.beta, orqa["reader/layer_normalization/beta"]),
                             (span.dense_1.kernel, orqa["reader/dense_1/kernel"]),
                             (span.dense_1.bias, orqa["reader/dense_1/bias"])])
    assert [r.part for r in reports] == ["retriever.query_embedder", "reader"]
    assert all(r.left_initialized == [] for r in reports)
    tower_report, reader_report = reports
    assert sorted(tower_report.read) == sorted(n for n in orqa if n.startswith("module/"))
    assert sorted(reader_report.read) == sorted(n for n in orqa if n.startswith("reader/")
                                                and not n.startswith("reader/module/cls/"))
    assert not any(is_optimizer_state(n) for r in reports for n in r.read)
    # The span reader has no masked-LM head; block_emb goes to an index, not a model.
    assert unread_names(checkpoint, reports) == sorted(
        ["block_emb"] + [n for n in orqa if n.startswith("reader/module/cls/")])

    # The fine-tuned reader's BERT and masked-LM head also start a knowledge-augmented encoder.
    knowledge = built_knowledge_encoder(TF1_SIZES)
    load_knowledge_encoder(knowledge, checkpoint)
    assert_every_variable(knowledge, tf1_encoder_pairs(knowledge.encoder, orqa, "reader/module/", heads)
                          + tf1_masked_lm_pairs(knowledge.masked_lm, orqa, "reader/module/"))


def test_projection_layer_norm_epsilon_must_match(realm):
    """ORQA's ICT code builds the projection's LayerNorm with Keras (eps 1e-3, `layer_normalization`)."""
    ict = realm["ict_tensors"]
    checkpoint = open_checkpoint(realm["ict"])
    assert checkpoint.projection.norm_name == "layer_normalization"
    embedder = built_embedder(TF1_SIZES, epsilon=1e-12)
    before = snapshot(embedder)
    with pytest.raises(CheckpointError) as error:
        load_embedder(embedder, checkpoint)
    message = str(error.value)
    assert realm["ict"] in message and "layer_normalization" in message and "0.001" in message
    assert "retriever.projection_norm_epsilon" in message
    np.testing.assert_array_equal(embedder.layer_norm.gamma.numpy(), before[id(embedder.layer_norm.gamma)])

    embedder = built_embedder(TF1_SIZES, epsilon=1e-3)
    report = load_embedder(embedder, checkpoint)
    assert_every_variable(embedder, tf1_encoder_pairs(embedder.encoder, ict, "module/module/module/",
                                                      TF1_SIZES.num_attention_heads)
                          + tf1_projection_pairs(embedder, ict, "module/module/", "layer_normalization"))
    assert sorted(report.read) == sorted(ict)

    # And the REALM embedder's LayerNorm (eps 1e-12) does not go into a 1e-3 one.
    with pytest.raises(CheckpointError, match="LayerNorm was trained with epsilon 1e-12"):
        load_embedder(built_embedder(TF1_SIZES, epsilon=1e-3), open_checkpoint(realm["embedder"]))


# --- what does not fit ------------------------------------------------------------------


def _broken_copy(kind, hugging_face, model_garden, realm, tmp_path, drop=None, replace=None):
    """(path to open, the stored name of the changed tensor's file) of a copy with one tensor
    dropped or replaced. kind: "hugging_face", "model_garden", "tf1"."""
    directory = str(tmp_path / kind)
    if kind == "hugging_face":
        from safetensors.numpy import save_file

        os.makedirs(directory)
        shutil.copy(os.path.join(hugging_face["safetensors"], "config.json"), directory)
        tensors = {n: v for n, v in read_hugging_face(hugging_face["safetensors"]).items() if n != drop}
        tensors.update(replace or {})
        save_file(tensors, os.path.join(directory, "model.safetensors"))
        return directory, os.path.join(directory, "model.safetensors")
    if kind == "model_garden":
        os.makedirs(directory)
        shutil.copy(os.path.join(model_garden["dir"], "bert_config.json"), directory)
        prefix = copy_tf1_checkpoint(model_garden["prefix"], os.path.join(directory, "bert_model.ckpt"),
                                     drop=[drop], replace=replace)
        return directory, prefix
    prefix = copy_tf1_checkpoint(os.path.join(realm["bert"], "variables", "variables"),
                                 os.path.join(directory, "model.ckpt-7"), drop=[drop], replace=replace)
    return prefix, prefix


MISSING = {
    "hugging_face": "bert.encoder.layer.1.output.dense.bias",
    "model_garden": "encoder/layer_with_weights-5/_output_dense/bias/.ATTRIBUTES/VARIABLE_VALUE",
    "tf1": "bert/encoder/layer_1/output/dense/bias",
}
SIZES = {"hugging_face": (HF_SIZES, "gelu_exact"), "model_garden": (MG_SIZES, "gelu"), "tf1": (TF1_SIZES, "gelu")}


@pytest.mark.parametrize("kind", ["hugging_face", "model_garden", "tf1"])
def test_missing_variable(hugging_face, model_garden, realm, tmp_path, kind):
    path, file = _broken_copy(kind, hugging_face, model_garden, realm, tmp_path, drop=MISSING[kind])
    checkpoint = open_checkpoint(path)
    reader = built_knowledge_encoder(*SIZES[kind])
    before = snapshot(reader)
    with pytest.raises(CheckpointError) as error:
        load_knowledge_encoder(reader, checkpoint)
    message = str(error.value)
    assert file in message and f"missing {MISSING[kind]}" in message
    assert "1 variable(s)" in message
    # Nothing is assigned when anything is wrong.
    assert all(np.array_equal(v.numpy(), before[id(v)]) for v in reader.weights)


MISSHAPED = {  # name, stored shape, the shape the model needs, as the message gives them
    "hugging_face": ("bert.encoder.layer.1.intermediate.dense.weight", (200, 48), "[48, 200]", "[48, 192]"),
    "model_garden": ("encoder/layer_with_weights-5/_intermediate_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE",
                     (32, 100), "[32, 100]", "[32, 128]"),
    "tf1": ("bert/encoder/layer_1/intermediate/dense/kernel", (128, 300), "[128, 300]", "[128, 256]"),
}


@pytest.mark.parametrize("kind", ["hugging_face", "model_garden", "tf1"])
def test_misshaped_variable(hugging_face, model_garden, realm, tmp_path, kind):
    name, shape, stored, needed = MISSHAPED[kind]
    path, file = _broken_copy(kind, hugging_face, model_garden, realm, tmp_path,
                              replace={name: np.ones(shape, np.float32)})
    checkpoint = open_checkpoint(path)
    reader = built_knowledge_encoder(*SIZES[kind])
    before = snapshot(reader)
    with pytest.raises(CheckpointError) as error:
        load_knowledge_encoder(reader, checkpoint)
    message = str(error.value)
    assert file in message and f"{name} has shape {stored}" in message and f"needs {needed}" in message
    # Nothing is assigned, not even the tensors that fit (the word embeddings, say).
    assert all(np.array_equal(v.numpy(), before[id(v)]) for v in reader.weights)


@pytest.mark.parametrize("field, value", [("num_layers", 3), ("intermediate_size", 512), ("hidden_size", 64),
                                          ("vocab_size", 30522), ("max_position_embeddings", 512)])
def test_config_sized_otherwise(realm, field, value):
    config = experiment(TF1_SIZES, reader=realm["bert"], vocab_file=realm["vocab"], **{field: value})
    model = build_pretrainer(config, np.random.default_rng(0))
    before = snapshot(model)
    with pytest.raises(CheckpointError) as error:
        initialize_from_checkpoints(model, config)
    message = str(error.value)
    assert realm["bert"] in message
    assert f"reader.encoder.{field}: config {value}, checkpoint {getattr(TF1_SIZES, field)}" in message
    assert all(np.array_equal(v.numpy(), before[id(v)]) for v in model.weights)


def test_vocabulary_that_differs(realm, tmp_path):
    # The bundled 30522-token vocabulary is not the one the checkpoint ships.
    config = experiment(TF1_SIZES, retriever=realm["embedder"], vocab_file="")
    retriever = Retriever(config.retriever)
    call_once(retriever.query_embedder)
    with pytest.raises(CheckpointError) as error:
        initialize_from_checkpoints(retriever, config)
    message = str(error.value)
    assert os.path.join(realm["embedder"], "assets", "vocab.txt") in message
    assert "features.vocab_file" in message

    # One line changed is another vocabulary too.
    lines = open(realm["vocab"], encoding="utf-8").read().splitlines()
    lines[500] = "changed"
    other = tmp_path / "vocab.txt"
    other.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match="vocabulary differs"):
        initialize_from_checkpoints(retriever, experiment(TF1_SIZES, retriever=realm["embedder"],
                                                          vocab_file=str(other)))


def test_paths_that_are_not_checkpoints(hugging_face, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint", encoding="utf-8")
    bogus = tmp_path / "bogus"
    (bogus / "variables").mkdir(parents=True)
    (bogus / "variables" / "variables.index").write_bytes(b"\x00garbage" * 10)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(os.path.join(hugging_face["safetensors"], "config.json"), no_weights)
    cases = [
        (str(empty), "not a checkpoint this project reads"),
        (str(text), "not a checkpoint this project reads"),
        (str(tmp_path / "absent"), "no such file or directory"),
        (str(bogus), "not a readable TensorFlow checkpoint"),
        (str(no_weights), "no model.safetensors"),
    ]
    for path, words in cases:
        with pytest.raises(CheckpointError) as error:
            open_checkpoint(path)
        assert path in str(error.value) and words in str(error.value), str(error.value)


def test_plain_bert_has_no_projection_nor_span_head(realm):
    """The knowledge-augmented encoder's `bert/` is also a plain BERT for a tower or the span reader."""
    checkpoint = open_checkpoint(realm["bert"])
    assert checkpoint.projection is None and checkpoint.span_head is None and checkpoint.block_embeddings is None
    config = experiment(TF1_SIZES, vocab_file=realm["vocab"])
    model = build_open_qa_model(config, Featurizer(config.features))
    before = snapshot(model)
    report = load_span_reader(model.reader, checkpoint)
    assert report.left_initialized == ["span head"]
    assert_every_variable(model.reader, tf1_encoder_pairs(model.reader.encoder, realm["bert_tensors"], "",
                                                          TF1_SIZES.num_attention_heads),
                          before, untouched=[model.reader.span_scorer])


def test_hugging_face_masked_lm_without_a_pooler_starts_the_reader(tmp_path):
    """`BertForMaskedLM` checkpoints have no pooler; the reader never uses it, so it loads
    everything else and says the pooler stays at initialization."""
    import torch
    import transformers

    source = random_hugging_face_model(HF_SIZES, seed=5)
    model = transformers.BertForMaskedLM(source.config).eval()
    with torch.no_grad():
        model.bert.load_state_dict(source.bert.state_dict(), strict=False)
        model.cls.load_state_dict(source.cls.state_dict(), strict=False)
    directory = str(tmp_path / "masked_lm")
    write_hugging_face(directory, model)
    stored = read_hugging_face(directory)
    assert not any("pooler" in name for name in stored)

    reader = built_knowledge_encoder(HF_SIZES, "gelu_exact")
    before = snapshot(reader)
    report = load_knowledge_encoder(reader, open_checkpoint(directory))
    assert report.left_initialized == ["pooler (unused by the reader)"]
    pooler = reader.encoder.pooler_layer
    np.testing.assert_array_equal(pooler.kernel.numpy(), before[id(pooler.kernel)])
    word_embeddings = reader.encoder.get_embedding_table().numpy()
    np.testing.assert_array_equal(word_embeddings, stored["bert.embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(reader.masked_lm.bias.numpy(), stored["cls.predictions.bias"])


def test_an_unbuilt_model_is_named(hugging_face):
    reader = KnowledgeAugmentedEncoder(ReaderConfig(encoder=bert_config(HF_SIZES, "gelu_exact")))
    with pytest.raises(ValueError, match="build the model"):
        load_knowledge_encoder(reader, open_checkpoint(hugging_face["safetensors"]))

"""Numerical parity of this project's models after importing a pretrained checkpoint.

  Hugging Face   our encoder (and masked-LM head) vs transformers' BertModel /
                 BertForPreTraining on the same random weights and inputs
  Model Garden   our encoder vs tfm's own BertEncoder, the one that wrote the checkpoint
  REALM TF1      relevance scores and the masked-LM marginal log p(y | x) vs a numpy BERT
                 written here from the raw checkpoint arrays (tanh GELU, LayerNorm eps 1e-12)

Inputs have padding and two segments; every comparison is at most 1e-4 apart.
"""

import dataclasses

import numpy as np
import pytest
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from checkpoint_writers import (
    MASK_ID, Sizes, pack, random_hugging_face_model, random_model_garden_encoder, realm_batch, stack,
    truncated_bert_vocab, words, write_hugging_face, write_model_garden, write_realm_bert_module,
    write_realm_embedder_module)
from realm_tf.checkpoints.formats import open_checkpoint
from realm_tf.checkpoints.initialize import initialize_from_checkpoints, load_embedder, load_knowledge_encoder
from realm_tf.configs import BertConfig, ExperimentConfig, FeaturesConfig, ReaderConfig, RetrieverConfig
from realm_tf.modeling.embedder import ProjectedEmbedder
from realm_tf.modeling.realm_pretrainer import RealmPretrainer
from realm_tf.modeling.reader import KnowledgeAugmentedEncoder
from realm_tf.modeling.retriever import Retriever, relevance

TOLERANCE = 1e-4
KEYS = ("input_word_ids", "input_mask", "input_type_ids")
HF_SIZES = Sizes(vocab_size=200, hidden_size=48, num_layers=2, num_attention_heads=4, intermediate_size=192)
MINILM_SIZES = Sizes(vocab_size=180, hidden_size=64, num_layers=2, num_attention_heads=2, intermediate_size=256)
MG_SIZES = Sizes(vocab_size=150, hidden_size=32, num_layers=2, num_attention_heads=2, intermediate_size=128)
TF1_SIZES = Sizes(vocab_size=1000, hidden_size=128, num_layers=2, num_attention_heads=2, intermediate_size=256)


def bert_config(sizes, activation) -> BertConfig:
    return BertConfig(**dataclasses.asdict(sizes), hidden_activation=activation, dropout_rate=0.0,
                      attention_dropout_rate=0.0)


def encoder_inputs(rng, vocab_size, lengths=(16, 11, 7), segment_a=(9, 5, 3), length=16):
    """`[CLS] a [SEP] b [SEP]` packings of the given total lengths, padded to `length`."""
    packings = []
    for total, a in zip(lengths, segment_a):
        packings.append(pack([words(rng, vocab_size, a), words(rng, vocab_size, total - a - 3)], length))
    return stack(packings)


def max_diff(ours, theirs, where=None):
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    return float(diff[where].max() if where is not None else diff.max())


# --- Hugging Face ---------------------------------------------------------------------


def _torch_outputs(model, inputs):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.from_numpy(inputs["input_word_ids"].astype(np.int64)),
                     attention_mask=torch.from_numpy(inputs["input_mask"].astype(np.int64)),
                     token_type_ids=torch.from_numpy(inputs["input_type_ids"].astype(np.int64)))


def test_hugging_face_bert_for_pretraining_parity(tmp_path):
    torch_model = random_hugging_face_model(HF_SIZES, seed=21)
    checkpoint = open_checkpoint(write_hugging_face(str(tmp_path / "hf"), torch_model))
    activation = checkpoint.encoder_sizes["hidden_activation"]
    assert activation == "gelu_exact"  # Hugging Face's "gelu" is the erf form.
    reader = KnowledgeAugmentedEncoder(ReaderConfig(encoder=bert_config(HF_SIZES, activation)))
    reader({k: tf.zeros([1, 4], tf.int32) for k in KEYS}, tf.zeros([1, 1], tf.int32))
    load_knowledge_encoder(reader, checkpoint)

    inputs = encoder_inputs(np.random.default_rng(22), HF_SIZES.vocab_size)
    ours = reader.encoder(inputs)
    theirs = _torch_outputs(torch_model, inputs)
    theirs_body = _torch_outputs(torch_model.bert, inputs)
    real = inputs["input_mask"].astype(bool)
    sequence = max_diff(ours["sequence_output"], theirs_body.last_hidden_state.numpy(), real)
    pooled = max_diff(ours["pooled_output"], theirs_body.pooler_output.numpy())
    print(f"\nHugging Face BertModel: sequence {sequence:.2e}, pooled {pooled:.2e}")
    assert sequence <= TOLERANCE and pooled <= TOLERANCE
    # The outputs are far from trivial: a wrong tensor would show.
    assert np.abs(theirs_body.pooler_output.numpy()).mean() > 0.1

    positions = np.asarray([[1, 5, 14], [2, 7, 9], [1, 3, 5]], np.int32)  # Unpadded positions.
    logits = reader(inputs, tf.constant(positions)).numpy()
    expected = np.take_along_axis(theirs.prediction_logits.numpy(), positions[:, :, None], axis=1)
    mlm = max_diff(logits, expected)
    print(f"Hugging Face BertForPreTraining prediction_logits: {mlm:.2e} (scale {np.abs(expected).max():.1f})")
    assert mlm <= TOLERANCE


def test_hugging_face_minilm_bert_model_parity(tmp_path):
    torch_model = random_hugging_face_model(MINILM_SIZES, seed=23, pretraining=False)
    checkpoint = open_checkpoint(write_hugging_face(str(tmp_path / "minilm"), torch_model))
    embedder = ProjectedEmbedder(RetrieverConfig(
        encoder=bert_config(MINILM_SIZES, checkpoint.encoder_sizes["hidden_activation"])))
    embedder({k: tf.zeros([1, 4], tf.int32) for k in KEYS})
    load_embedder(embedder, checkpoint)

    inputs = encoder_inputs(np.random.default_rng(24), MINILM_SIZES.vocab_size)
    ours = embedder.encoder(inputs)
    theirs = _torch_outputs(torch_model, inputs)
    sequence = max_diff(ours["sequence_output"], theirs.last_hidden_state.numpy(), inputs["input_mask"].astype(bool))
    pooled = max_diff(ours["pooled_output"], theirs.pooler_output.numpy())
    print(f"\nHugging Face MiniLM-shaped BertModel: sequence {sequence:.2e}, pooled {pooled:.2e}")
    assert sequence <= TOLERANCE and pooled <= TOLERANCE


# --- Model Garden -----------------------------------------------------------------------


def test_model_garden_encoder_parity(tmp_path):
    theirs_encoder = random_model_garden_encoder(MG_SIZES, seed=31)
    write_model_garden(str(tmp_path / "mg"), theirs_encoder, MG_SIZES)
    checkpoint = open_checkpoint(str(tmp_path / "mg"))
    reader = KnowledgeAugmentedEncoder(
        ReaderConfig(encoder=bert_config(MG_SIZES, checkpoint.encoder_sizes["hidden_activation"])))
    load_knowledge_encoder(reader, checkpoint)

    inputs = encoder_inputs(np.random.default_rng(32), MG_SIZES.vocab_size)
    ours, theirs = reader.encoder(inputs), theirs_encoder(inputs)
    sequence = max_diff(ours["sequence_output"], theirs["sequence_output"], inputs["input_mask"].astype(bool))
    pooled = max_diff(ours["pooled_output"], theirs["pooled_output"])
    print(f"\nModel Garden BertEncoder: sequence {sequence:.2e}, pooled {pooled:.2e}")
    assert sequence <= TOLERANCE and pooled <= TOLERANCE
    assert np.abs(np.asarray(theirs["pooled_output"])).mean() > 0.1


# --- REALM TF1: an independent numpy computation from the raw variables -------------------


def np_layer_norm(x, gamma, beta, epsilon=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def np_gelu(x):
    """The original BERT's GELU, the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def np_bert(t, scope, inputs, heads):
    """Original BERT's forward pass over the TF1 variables `<scope>bert/...`, float64.

    Returns (sequence [N, L, H], pooled [N, H])."""
    w = lambda name: t[f"{scope}bert/{name}"].astype(np.float64)  # noqa: E731
    ids, mask, types = inputs["input_word_ids"], inputs["input_mask"], inputs["input_type_ids"]
    n, length = ids.shape
    x = w("embeddings/word_embeddings")[ids] + w("embeddings/position_embeddings")[:length][None] \
        + w("embeddings/token_type_embeddings")[types]
    x = np_layer_norm(x, w("embeddings/LayerNorm/gamma"), w("embeddings/LayerNorm/beta"))
    hidden = x.shape[-1]
    size = hidden // heads
    adder = (1.0 - mask[:, None, None, :].astype(np.float64)) * -10000.0  # BERT's attention mask.
    layer = 0
    while f"{scope}bert/encoder/layer_{layer}/attention/self/query/kernel" in t:
        p = f"encoder/layer_{layer}/"
        split = lambda v: v.reshape(n, length, heads, size).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(x @ w(f"{p}attention/self/{part}/kernel") + w(f"{p}attention/self/{part}/bias"))
                   for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + adder
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        attended = context @ w(p + "attention/output/dense/kernel") + w(p + "attention/output/dense/bias")
        x = np_layer_norm(x + attended, w(p + "attention/output/LayerNorm/gamma"),
                          w(p + "attention/output/LayerNorm/beta"))
        inner = np_gelu(x @ w(p + "intermediate/dense/kernel") + w(p + "intermediate/dense/bias"))
        out = inner @ w(p + "output/dense/kernel") + w(p + "output/dense/bias")
        x = np_layer_norm(x + out, w(p + "output/LayerNorm/gamma"), w(p + "output/LayerNorm/beta"))
        layer += 1
    assert layer == TF1_SIZES.num_layers
    pooled = np.tanh(x[:, 0] @ w("pooler/dense/kernel") + w("pooler/dense/bias"))
    return x, pooled


def np_embed(t, inputs, heads):
    """REALM's Embed(x) = LayerNorm_eps1e-12(Dense_128(pooled)) from the embedder release."""
    _, pooled = np_bert(t, "module/module/module/", inputs, heads)
    projected = pooled @ t["module/module/dense/kernel"].astype(np.float64) + t["module/module/dense/bias"]
    return np_layer_norm(projected, t["module/module/LayerNorm/gamma"], t["module/module/LayerNorm/beta"])


def np_log_softmax(x, axis=-1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def np_logsumexp(x, axis):
    top = x.max(axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(x - top).sum(axis))


def np_masked_lm_log_probs(t, sequence, positions):
    """BERT's masked-LM head (`cls/predictions/`): log p(. | z, x) at `positions`, [N, M, V]."""
    c = lambda name: t[f"cls/predictions/{name}"].astype(np.float64)  # noqa: E731
    h = np.take_along_axis(sequence, positions[:, :, None], axis=1)
    h = np_gelu(h @ c("transform/dense/kernel") + c("transform/dense/bias"))
    h = np_layer_norm(h, c("transform/LayerNorm/gamma"), c("transform/LayerNorm/beta"))
    logits = h @ t["bert/embeddings/word_embeddings"].astype(np.float64).T + c("output_bias")
    return np_log_softmax(logits)


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    root = tmp_path_factory.mktemp("realm_parity")
    rng = np.random.default_rng(41)
    vocab = truncated_bert_vocab(TF1_SIZES.vocab_size)
    bert, embedder = str(root / "bert"), str(root / "embedder")
    return {"bert": bert, "embedder": embedder, "vocab": str(root / "bert" / "assets" / "vocab.txt"),
            "bert_tensors": write_realm_bert_module(bert, rng, TF1_SIZES, vocab),
            "embedder_tensors": write_realm_embedder_module(embedder, rng, TF1_SIZES, vocab)}


def realm_config(realm, reader=True) -> ExperimentConfig:
    sizes = open_checkpoint(realm["embedder"]).encoder_sizes  # Heads by the releases' rule: hidden / 64.
    assert sizes == dict(dataclasses.asdict(TF1_SIZES), hidden_activation="gelu")
    encoder = lambda: BertConfig(**sizes, dropout_rate=0.0, attention_dropout_rate=0.0)  # noqa: E731
    return ExperimentConfig(
        features=FeaturesConfig(vocab_file=realm["vocab"], query_length=12, block_length=16, reader_length=26),
        retriever=RetrieverConfig(encoder=encoder(), init_checkpoint=realm["embedder"]),
        reader=ReaderConfig(encoder=encoder(), init_checkpoint=realm["bert"] if reader else ""))


def test_realm_relevance_scores_parity(realm):
    config = realm_config(realm, reader=False)
    retriever = Retriever(config.retriever)
    rng = np.random.default_rng(42)
    queries = stack([pack([words(rng, TF1_SIZES.vocab_size, n)], 12) for n in (10, 7, 4)])  # `[CLS] query [SEP]`
    blocks = encoder_inputs(rng, TF1_SIZES.vocab_size, lengths=(16, 13, 10, 8, 6), segment_a=(2, 3, 1, 2, 1))
    retriever({"query": queries, "block": blocks})
    reports = initialize_from_checkpoints(retriever, config)
    assert [r.part for r in reports] == ["retriever.query_embedder"]

    scores = relevance(retriever.embed_queries(queries), retriever.embed_blocks(blocks)).numpy()
    t, heads = realm["embedder_tensors"], TF1_SIZES.num_attention_heads
    expected = np_embed(t, queries, heads) @ np_embed(t, blocks, heads).T
    diff = max_diff(scores, expected)
    print(f"\nREALM relevance scores: {diff:.2e} (scores up to {np.abs(expected).max():.1f})")
    assert diff <= TOLERANCE
    assert np.ptp(expected, axis=1).min() > 1.0  # The blocks' scores differ: a real ranking.


def test_realm_masked_lm_marginal_parity(realm):
    config = realm_config(realm)
    model = RealmPretrainer(config)
    batch = realm_batch(np.random.default_rng(43), TF1_SIZES.vocab_size, batch_size=2, num_candidates=3,
                        num_masks=2)
    assert (np.take_along_axis(batch["reader"]["input_word_ids"][:, 0], batch["masked_positions"], 1)
            == MASK_ID).all()
    model(batch)
    reports = initialize_from_checkpoints(model, config)
    assert [r.part for r in reports] == ["retriever.query_embedder", "reader"]
    outputs = {k: v.numpy() for k, v in model(batch, training=False).items()}

    heads, embedder, bert = TF1_SIZES.num_attention_heads, realm["embedder_tensors"], realm["bert_tensors"]
    b, k, m = batch["masked_ids"].shape[0], batch["candidates"]["input_word_ids"].shape[1], batch["masked_ids"].shape[1]
    flat = lambda features: {key: value.reshape(b * k, -1) for key, value in features.items()}  # noqa: E731
    # log p(z | x): softmax over each query's candidates of <Embed(query), Embed(block)>.
    query = np_embed(embedder, batch["query"], heads)
    blocks = np_embed(embedder, flat(batch["candidates"]), heads).reshape(b, k, -1)
    log_p_z = np_log_softmax(np.einsum("bp,bkp->bk", query, blocks))
    # log p(y_j | z, x): BERT over `[CLS] query [SEP] block [SEP]`, its masked-LM head.
    sequence, _ = np_bert(bert, "", flat(batch["reader"]), heads)
    log_probs = np_masked_lm_log_probs(bert, sequence, np.repeat(batch["masked_positions"], k, axis=0))
    targets = np.repeat(batch["masked_ids"], k, axis=0)
    token_log_probs = np.take_along_axis(log_probs, targets[:, :, None], axis=2)[:, :, 0].reshape(b, k, m)
    # log p(y_j | x) = logsumexp_z [log p(z | x) + log p(y_j | z, x)].
    marginal = np_logsumexp(log_p_z[:, :, None] + token_log_probs, axis=1)

    diffs = {"retrieval_log_probs": max_diff(outputs["retrieval_log_probs"], log_p_z),
             "token_log_probs": max_diff(outputs["token_log_probs"], token_log_probs),
             "marginal": max_diff(outputs["marginal"], marginal),
             "mlm_log_probs": max_diff(outputs["mlm_log_probs"], log_probs.reshape(b, k, m, -1))}
    print("\nREALM masked-LM marginal: " + ", ".join(f"{name} {d:.2e}" for name, d in diffs.items())
          + f" (marginal values {marginal.min():.2f}..{marginal.max():.2f})")
    assert max(diffs.values()) <= TOLERANCE, diffs
    # Non-trivial: retrieval is far from uniform and the candidates disagree about the tokens.
    assert np.ptp(log_p_z, axis=1).min() > 0.5
    assert np.ptp(token_log_probs, axis=1).max() > 0.5

"""`python -m realm_tf.checkpoints config`: a config fitted to pretrained checkpoints.

Checkpoints are the small ones `checkpoint_writers` writes in the releases' formats: a
sentence-transformers-style Hugging Face `BertModel` directory (its `1_Pooling/config.json`
and `modules.json` written here) and TF1 name-based BERT / REALM embedder checkpoints.
The base is tiny.yaml: from-scratch learning rates, no dropout, a 128-wide 2-head encoder.
"""

import json
import pathlib
import re

import numpy as np
import pytest
import yaml

from checkpoint_writers import (
    Sizes, bert_tf1_tensors, bias, gamma, kernel, random_hugging_face_model, write_hugging_face,
    write_tf1_checkpoint)
from realm_tf.checkpoints import __main__ as checkpoints_cli
from realm_tf.checkpoints.fitting import fitted_config
from realm_tf.checkpoints.formats import open_checkpoint, sentence_transformers_pooling
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.configs import ConfigError, load_config

# MiniLM's shape at a tenth of the width: 12 heads would not divide tiny's 128, 4 do not fit 48.
HF_SIZES = Sizes(vocab_size=120, hidden_size=48, num_layers=1, num_attention_heads=12, intermediate_size=96,
                 max_position_embeddings=512)
# 96 wide: the releases' rule guesses 96 // 64 = 1 head when no bert_config.json says.
TF1_SIZES = Sizes(vocab_size=120, hidden_size=96, num_layers=1, num_attention_heads=1, intermediate_size=64,
                  max_position_embeddings=512)
POOLING_MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]


def write_json(path, value) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def pooling_config(mean=False, cls=False, max_tokens=False, mean_sqrt_len=False):
    return {"word_embedding_dimension": HF_SIZES.hidden_size, "pooling_mode_cls_token": cls,
            "pooling_mode_mean_tokens": mean, "pooling_mode_max_tokens": max_tokens,
            "pooling_mode_mean_sqrt_len_tokens": mean_sqrt_len}


def write_hf_bert(directory, sizes=HF_SIZES, dropout=(0.1, 0.15), seed=0) -> str:
    """A Hugging Face BertModel directory whose config.json states these dropouts."""
    pytest.importorskip("transformers")
    write_hugging_face(str(directory), random_hugging_face_model(sizes, seed=seed, pretraining=False))
    config_path = pathlib.Path(directory, "config.json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=dropout[0], attention_probs_dropout_prob=dropout[1])
    write_json(config_path, config)
    return str(directory)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """A sentence-transformers model directory: BERT weights, mean pooling, modules.json."""
    directory = write_hf_bert(tmp_path_factory.mktemp("minilm"))
    write_json(pathlib.Path(directory, "1_Pooling", "config.json"), pooling_config(mean=True))
    write_json(pathlib.Path(directory, "modules.json"), POOLING_MODULES)
    return directory


@pytest.fixture(scope="module")
def tf1_bert(tmp_path_factory):
    """A TF1 BERT checkpoint without bert_config.json: its head count is guessed."""
    prefix = tmp_path_factory.mktemp("tf1_bert") / "bert_model.ckpt"
    write_tf1_checkpoint(str(prefix), bert_tf1_tensors(np.random.default_rng(0), TF1_SIZES), optimizer_state=False)
    return str(prefix)


def choices_of(fitted):
    return {choice.field: choice for choice in fitted.choices}


# --- pooling ----------------------------------------------------------------------------


def test_pooling_is_read_from_the_sentence_transformers_config(tmp_path):
    mean, cls, plain = tmp_path / "mean", tmp_path / "cls", tmp_path / "plain"
    write_json(mean / "modules.json", POOLING_MODULES)
    write_json(mean / "1_Pooling" / "config.json", pooling_config(mean=True))
    write_json(cls / "1_Pooling" / "config.json", pooling_config(cls=True))  # No modules.json: the folder.
    plain.mkdir()
    assert sentence_transformers_pooling(str(mean)) == ("mean", str(mean / "1_Pooling" / "config.json"))
    assert sentence_transformers_pooling(str(cls)) == ("cls", str(cls / "1_Pooling" / "config.json"))
    assert sentence_transformers_pooling(str(plain)) == (None, None)


def test_modules_json_names_the_pooling_folder(tmp_path):
    modules = [dict(module, path="pool") if module["type"].endswith("Pooling") else module
               for module in POOLING_MODULES]
    write_json(tmp_path / "modules.json", modules)
    write_json(tmp_path / "pool" / "config.json", pooling_config(cls=True))
    write_json(tmp_path / "1_Pooling" / "config.json", pooling_config(mean=True))  # Not the one modules.json names.
    assert sentence_transformers_pooling(str(tmp_path))[0] == "cls"
    write_json(tmp_path / "modules.json", POOLING_MODULES[:1])  # A Transformer alone: nothing said.
    assert sentence_transformers_pooling(str(tmp_path)) == (None, None)


@pytest.mark.parametrize("modes, named", [(dict(max_tokens=True), "pooling_mode_max_tokens"),
                                          (dict(mean_sqrt_len=True), "pooling_mode_mean_sqrt_len_tokens"),
                                          (dict(mean=True, cls=True), "pooling_mode_cls_token + pooling_mode_mean")])
def test_pooling_the_towers_do_not_implement_is_refused(tmp_path, modes, named):
    config = tmp_path / "1_Pooling" / "config.json"
    write_json(config, pooling_config(**modes))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(config))}: pools by {re.escape(named)}"):
        sentence_transformers_pooling(str(tmp_path))


def test_inspect_shows_the_pooling(minilm, tf1_bert, capsys):
    assert open_checkpoint(minilm).pooling == "mean"
    assert checkpoints_cli.main(["inspect", minilm]) == 0
    out = capsys.readouterr().out
    assert f"pooling: mean (from {minilm}/1_Pooling/config.json)" in out
    assert "pooler weights unused" in out
    assert checkpoints_cli.main(["inspect", tf1_bert]) == 0
    out = capsys.readouterr().out
    assert "pooling: not stated (towers pool [CLS])" in out and "pooler weights unused" not in out


def test_the_fitted_retriever_pools_as_the_checkpoint_unless_overridden(minilm, tf1_bert):
    fitted = fitted_config("tiny", [], minilm, None)
    assert fitted.config.retriever.pooling == "mean"
    assert choices_of(fitted)["retriever.pooling"].reason.endswith("1_Pooling/config.json")
    overridden = fitted_config("tiny", ["retriever.pooling=cls"], minilm, None)
    assert overridden.config.retriever.pooling == "cls"
    assert choices_of(overridden)["retriever.pooling"].reason.startswith("your --override; else mean")
    assert fitted_config("tiny", [], tf1_bert, None).config.retriever.pooling == "cls"  # Nothing said: the base's.


# --- sizes --------------------------------------------------------------------------------


def test_a_head_count_override_wins_over_a_guessed_one(tf1_bert):
    guessed = fitted_config("tiny", [], tf1_bert, None)
    assert open_checkpoint(tf1_bert).guessed == {"num_attention_heads", "hidden_activation"}
    assert guessed.config.retriever.encoder.num_attention_heads == 1
    assert choices_of(guessed)["retriever.encoder.num_attention_heads"].reason.startswith("guessed")
    # 3 heads divide the checkpoint's 96 but not tiny's 128: the override must apply after the sizes.
    fitted = fitted_config("tiny", ["retriever.encoder.num_attention_heads=3"], tf1_bert, tf1_bert)
    assert fitted.config.retriever.encoder.num_attention_heads == 3
    assert fitted.config.reader.encoder.num_attention_heads == 1  # Only the retriever's was overridden.
    assert fitted.config.retriever.encoder.hidden_size == 96


def test_a_head_count_override_against_a_stated_one_is_refused(tf1_bert, tmp_path):
    prefix = tmp_path / "bert_model.ckpt"
    write_tf1_checkpoint(str(prefix), bert_tf1_tensors(np.random.default_rng(1), TF1_SIZES), optimizer_state=False)
    write_json(tmp_path / "bert_config.json", {"num_attention_heads": 4, "hidden_act": "gelu",
                                               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})
    assert open_checkpoint(str(prefix)).guessed == frozenset()
    with pytest.raises(CheckpointError) as error:
        fitted_config("tiny", ["retriever.encoder.num_attention_heads=3"], str(prefix), None)
    message = str(error.value)
    assert "retriever.encoder.num_attention_heads=3" in message and "checkpoint's 4" in message
    assert "bert_config.json" in message
    # An override that agrees is no contradiction.
    agreed = fitted_config("tiny", ["retriever.encoder.num_attention_heads=4"], str(prefix), None)
    assert agreed.config.retriever.encoder.num_attention_heads == 4


def test_projection_size_comes_from_the_embedder_checkpoint(tmp_path):
    from realm_tf.checkpoints.initialize import load_embedder
    from realm_tf.modeling.embedder import ProjectedEmbedder

    rng, width, scope = np.random.default_rng(2), 48, "module/module/"
    tensors = bert_tf1_tensors(rng, TF1_SIZES, scope=scope + "module/")
    tensors.update({scope + "dense/kernel": kernel(rng, TF1_SIZES.hidden_size, width),
                    scope + "dense/bias": bias(rng, width), scope + "LayerNorm/gamma": gamma(rng, width),
                    scope + "LayerNorm/beta": bias(rng, width)})
    prefix = str(tmp_path / "embedder" / "variables" / "variables")
    write_tf1_checkpoint(prefix, tensors, optimizer_state=False)
    fitted = fitted_config("tiny", [], prefix, None)
    assert fitted.config.retriever.projection_size == width
    # The checkpoint's LayerNorm gain is restored: no initial one is suggested.
    assert "retriever.projection_norm_gain" not in choices_of(fitted)
    # The fitted tower takes every tensor, the projection's [96, 48] included.
    embedder = ProjectedEmbedder(fitted.config.retriever)
    embedder({key: np.zeros([1, 8], np.int32) for key in ("input_word_ids", "input_mask", "input_type_ids")})
    assert len(load_embedder(embedder, open_checkpoint(prefix)).read) == len(tensors)
    with pytest.raises(CheckpointError, match=r"--override retriever.projection_size=128 contradicts .* 48"):
        fitted_config("tiny", ["retriever.projection_size=128"], prefix, None)


def test_a_fresh_projection_starts_at_the_contrastive_score_scale(minilm, tmp_path):
    from realm_tf.checkpoints.fitting import FRESH_SCORE_SCALE

    fitted = fitted_config("tiny", [], minilm, None)
    gain = fitted.config.retriever.projection_norm_gain
    # LayerNorm'd P-wide embeddings score gain^2 x P x their correlation.
    assert gain ** 2 * fitted.config.retriever.projection_size == pytest.approx(FRESH_SCORE_SCALE, rel=1e-3)
    assert "starts fresh" in choices_of(fitted)["retriever.projection_norm_gain"].reason
    kept = fitted_config("tiny", ["retriever.projection_norm_gain=1.0"], minilm, None)
    assert kept.config.retriever.projection_norm_gain == 1.0


def test_a_shallower_reader_trains_every_layer_it_has(minilm):
    fitted = fitted_config("minilm", [], None, minilm)  # minilm.yaml trains the top 4 of 6 layers.
    assert fitted.config.reader.encoder.num_layers == HF_SIZES.num_layers == 1
    assert fitted.config.reader.trainable_layers == 1
    assert "the checkpoint has 1" in choices_of(fitted)["reader.trainable_layers"].reason


# --- lengths --------------------------------------------------------------------------------


def test_lengths_beyond_the_position_table_are_an_error_that_writes_nothing(tmp_path, capsys):
    short = write_hf_bert(tmp_path / "short", Sizes(vocab_size=120, hidden_size=48, num_layers=1,
                                                    num_attention_heads=12, intermediate_size=96,
                                                    max_position_embeddings=64))
    output = tmp_path / "fitted.yaml"
    capsys.readouterr()  # The writer's progress output.
    # tiny reads blocks of 128 and reader inputs of 160 wordpieces; queries of 32 fit.
    assert checkpoints_cli.main(["config", f"--retriever={short}", f"--reader={short}", "--config=tiny",
                                 f"--output={output}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and not output.exists()  # One line.
    assert "features.block_length = 128" in error and "reads at most 64" in error
    assert "--override features.block_length=64" in error and "features.query_length" not in error
    # The retriever error comes first; with its fix the reader's names its own field.
    assert checkpoints_cli.main(["config", f"--retriever={short}", f"--reader={short}", "--config=tiny",
                                 f"--output={output}", "--override=features.block_length=64"]) == 2
    assert "--override features.reader_length=64" in capsys.readouterr().err
    # Following the advice writes a config that loads.
    assert checkpoints_cli.main(["config", f"--retriever={short}", f"--reader={short}", "--config=tiny",
                                 f"--output={output}", "--override=features.block_length=64",
                                 "--override=features.reader_length=64"]) == 0
    assert load_config(str(output)).features.reader_length == 64


def test_a_fitted_config_that_would_not_load_is_refused(tf1_bert):
    with pytest.raises(ConfigError, match=r"^the fitted config would not load: .*retriever.encoder.hidden_size = 96 "
                                          r"must be divisible by num_attention_heads \(5\)"):
        fitted_config("tiny", ["retriever.encoder.num_attention_heads=5"], tf1_bert, None)


# --- settings for training a pretrained start -----------------------------------------------


def test_dropout_comes_from_the_checkpoint_unless_overridden(minilm, tf1_bert):
    fitted = fitted_config("tiny", [], minilm, minilm)
    for encoder in (fitted.config.retriever.encoder, fitted.config.reader.encoder):
        assert (encoder.dropout_rate, encoder.attention_dropout_rate) == (0.1, 0.15)  # tiny.yaml has 0.0.
    assert choices_of(fitted)["reader.encoder.attention_dropout_rate"].line() == (
        "reader.encoder.attention_dropout_rate = 0.15 (from the checkpoint's config.json "
        "attention_probs_dropout_prob)")
    overridden = fitted_config("tiny", ["reader.encoder.dropout_rate=0.3"], minilm, minilm).config
    assert (overridden.reader.encoder.dropout_rate, overridden.retriever.encoder.dropout_rate) == (0.3, 0.1)
    # A checkpoint that states no dropout leaves the base's.
    assert fitted_config("tiny", [], tf1_bert, None).config.retriever.encoder.dropout_rate == 0.0


def test_from_scratch_learning_rates_become_pretrained_start_ones(minilm):
    fitted = fitted_config("tiny", [], minilm, minilm)
    rates = {task: getattr(fitted.config, task).training.learning_rate for task in ("ict", "pretrain", "finetune")}
    assert rates == {"ict": 1e-4, "pretrain": 3e-5, "finetune": 1e-5}  # tiny.yaml: 2e-3, 1e-3, 1e-4.
    assert "0.002 is over 5x that" in choices_of(fitted)["ict.training.learning_rate"].reason
    # With the retriever alone, the reader of pre-training and fine-tuning starts from scratch.
    alone = fitted_config("tiny", [], minilm, None)
    assert alone.config.ict.training.learning_rate == 1e-4
    assert alone.config.pretrain.training.learning_rate == 1e-3
    assert choices_of(alone)["pretrain.training.learning_rate"].reason.startswith("kept: the reader starts from")


def test_a_learning_rate_the_user_set_is_kept(minilm, tmp_path):
    fitted = fitted_config("tiny", ["finetune.training.learning_rate=5e-4"], minilm, minilm)
    assert fitted.config.finetune.training.learning_rate == 5e-4
    assert choices_of(fitted)["finetune.training.learning_rate"].reason.startswith("your --override; else 1e-05")
    # So is a base's rate within 5x of the pretrained-start one: BERT's 5e-5 for fine-tuning.
    base = tmp_path / "base.yaml"
    tiny = (pathlib.Path(checkpoints_cli.__file__).parents[2] / "configs" / "tiny.yaml").read_text(encoding="utf-8")
    base.write_text(tiny.replace("learning_rate: 1.0e-4, warmup_steps: 20", "learning_rate: 5.0e-5, "
                                 "warmup_steps: 20"), encoding="utf-8")
    assert load_config(str(base)).finetune.training.learning_rate == 5e-5
    fitted = fitted_config(str(base), [], minilm, minilm)
    assert fitted.config.finetune.training.learning_rate == 5e-5
    assert "finetune.training.learning_rate" not in choices_of(fitted)


def test_a_warm_up_longer_than_a_tenth_of_the_run_is_shortened(minilm):
    fitted = fitted_config("tiny", ["ict.training.train_steps=100"], minilm, None)
    assert fitted.config.ict.training.warmup_steps == 10  # tiny.yaml's 20 of 100 steps.
    assert choices_of(fitted)["ict.training.warmup_steps"].line() == (
        "ict.training.warmup_steps = 10 (10% of the 100 train_steps, for a pretrained start; 20 is 20% of it)")
    assert fitted.config.pretrain.training.warmup_steps == 20  # 20 of 200: a tenth, kept.
    kept = fitted_config("tiny", ["ict.training.train_steps=100", "ict.training.warmup_steps=50"], minilm, None)
    assert kept.config.ict.training.warmup_steps == 50


# --- the command and its file ----------------------------------------------------------------


def test_the_written_yaml_loads_equal_and_records_every_choice(minilm, tmp_path, capsys):
    output = tmp_path / "fitted.yaml"
    args = ["config", f"--retriever={minilm}", f"--reader={minilm}", "--config=tiny", f"--output={output}",
            "--override=ict.training.train_steps=100"]
    assert checkpoints_cli.main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    fitted = fitted_config("tiny", ["ict.training.train_steps=100"], minilm, minilm)
    assert load_config(str(output)).as_dict() == fitted.config.as_dict()
    lines = [choice.line() for choice in fitted.choices]
    assert "retriever.encoder.dropout_rate = 0.1 (from the checkpoint's config.json hidden_dropout_prob)" in lines
    assert printed[1:] == [f"  {line}" for line in lines]
    comments = [line[len("#   "):] for line in output.read_text(encoding="utf-8").splitlines()
                if line.startswith("#   ")]
    assert comments == lines
    assert yaml.safe_load(output.read_text(encoding="utf-8"))["retriever"]["pooling"] == "mean"


def test_a_sentence_embedding_checkpoint_gets_an_identity_projection_of_its_width(minilm):
    fitted = fitted_config("tiny", [], minilm, None)
    retriever = fitted.config.retriever
    assert retriever.projection_initializer == "identity"
    assert retriever.projection_size == retriever.encoder.hidden_size
    assert "cosine of its pooled outputs" in choices_of(fitted)["retriever.projection_initializer"].reason
    # An override keeps the paper's random projection, at the base's width.
    kept = fitted_config("tiny", ["retriever.projection_initializer=truncated_normal"], minilm, None).config.retriever
    assert (kept.projection_initializer, kept.projection_size) == ("truncated_normal", 128)

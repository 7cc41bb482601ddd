import pytest

from realm_tf.configs import ConfigError, ExperimentConfig, load_config


def test_base_yaml_is_the_papers_setting():
    config = load_config("base")
    for encoder in (config.retriever.encoder, config.reader.encoder):
        assert (encoder.num_layers, encoder.hidden_size, encoder.num_attention_heads, encoder.intermediate_size) == (
            12, 768, 12, 3072)
        assert encoder.hidden_activation == "gelu"
    assert (config.features.query_length, config.features.block_length, config.features.reader_length) == (96, 288, 384)
    assert config.retriever.projection_size == 128
    assert config.retriever.share_towers is True
    assert config.pretrain.top_k == 8 and config.finetune.top_k == 5
    assert config.pretrain.training.batch_size == 512
    assert config.pretrain.training.train_steps == 200_000
    assert config.pretrain.training.learning_rate == pytest.approx(3e-5)
    assert config.pretrain.refresh_every_steps == 500
    assert config.finetune.training.learning_rate == pytest.approx(1e-5)
    assert config.reader.max_span_length == 10
    # base.yaml spells out the defaults: the two must not drift apart.
    assert config.as_dict() == ExperimentConfig().as_dict()


def test_tiny_yaml_is_small_and_shares_the_structure():
    config = load_config("tiny")
    assert config.retriever.encoder.num_layers == 2
    assert config.retriever.encoder.hidden_size == 128
    assert config.reader.encoder.hidden_size == 128
    assert config.features.block_length < 288
    assert config.retriever.projection_size == 128


def test_overrides_apply_on_top_of_the_yaml():
    config = load_config(
        "tiny", ["ict.training.batch_size=8", "retriever.share_towers=false", "pretrain.training.learning_rate=2e-5"]
    )
    assert config.ict.training.batch_size == 8
    assert config.retriever.share_towers is False
    assert config.pretrain.training.learning_rate == pytest.approx(2e-5)


def test_a_yaml_path_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("features: {block_length: 64}\ncorpus: {max_title_tokens: 8}\n")
    assert load_config(str(path)).features.block_length == 64


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["features.blok_length=12"], "unknown key 'features.blok_length'"),
        (["ict.training.batch_size=eight"], "'ict.training.batch_size' must be int"),
        (["retriever.share_towers=3"], "'retriever.share_towers' must be bool"),
        (["retriever=3"], "'retriever' is a section"),
        (["features.reader_length=16"], "features.reader_length = 16 must exceed features.query_length"),
        (["corpus.max_title_tokens=100"], "corpus.max_title_tokens = 100 must be in [1, 62]"),
        (["retriever.encoder.num_attention_heads=3"], "retriever.encoder.hidden_size = 128 must be divisible"),
        (["reader.encoder.max_position_embeddings=64"], "reader.encoder.max_position_embeddings = 64"),
        (["pretrain.top_k=0"], "pretrain.top_k = 0 must be positive"),
        (["ict.remove_sentence_probability=1.5"], "ict.remove_sentence_probability = 1.5"),
        (["index.reorder_dtype=float16"], "index.reorder_dtype = 'float16' must be one of"),
        (["index.sentence_vectors.block_weight=1.5"], "index.sentence_vectors.block_weight = 1.5 must be in [0, 1]"),
        (["index.sentence_vectors.rescore_depth=0"], "index.sentence_vectors.rescore_depth = 0 must be positive"),
        (["no_equals_sign"], "not of the form dotted.key=value"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config("tiny", overrides)
    assert message in str(error.value)


def test_bad_yaml_files_name_the_file(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("features:\n  vocab: x\n")
    with pytest.raises(ConfigError, match=r"unknown\.yaml: unknown key 'features\.vocab'"):
        load_config(str(unknown))
    broken = tmp_path / "broken.yaml"
    broken.write_text("features: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(str(broken))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match=r"unknown config 'nonesuch'.*'base'.*'tiny'"):
        load_config("nonesuch")

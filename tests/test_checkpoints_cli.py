"""`python -m realm_tf.checkpoints` and the `*.init_checkpoint` options, end to end:
a Hugging Face BERT fitted into a config and trained from; a release's blocks.tfr and
block_emb turned into blocks and an index version without re-embedding."""

import json

import numpy as np
import pytest
import tensorflow as tf

from checkpoint_writers import Sizes, bert_tf1_tensors, projection_tf1_tensors, write_tf1_checkpoint
from realm_tf.checkpoints import __main__ as checkpoints_cli
from realm_tf.checkpoints.inspection import inspect_checkpoint


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """A random tiny-sized Hugging Face BertModel (positions for the tiny reader length)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=256)
    model = transformers.BertModel(config)
    directory = tmp_path_factory.mktemp("hf_bert")
    model.save_pretrained(directory)
    return str(directory), {name: value.detach().numpy() for name, value in model.state_dict().items()}


def test_config_then_ict_training_starts_from_the_checkpoint(hf_bert, small_blocks_dir, tmp_path, capsys):
    from realm_tf import train
    from realm_tf.configs import load_config

    directory, weights = hf_bert
    config_path = tmp_path / "fitted.yaml"
    assert checkpoints_cli.main(["config", f"--retriever={directory}", f"--reader={directory}", "--config=tiny",
                                 f"--output={config_path}"]) == 0
    config = load_config(str(config_path))
    assert (config.retriever.encoder.hidden_size, config.retriever.encoder.num_attention_heads) == (64, 4)
    assert config.retriever.encoder.hidden_activation == "gelu_exact"  # HF's "gelu" is the erf form.
    assert config.reader.init_checkpoint.endswith("hf_bert0")
    assert config.features.query_length == 32  # The rest is the base config's (tiny).

    # A learning rate of 1e-12 leaves the loaded weights as they were (Adam moves each by about
    # the rate), so the saved checkpoint shows them.
    model_dir = tmp_path / "ict"
    train.run(["--task=ict", f"--config={config_path}", f"--blocks_dir={small_blocks_dir}",
               f"--model_dir={model_dir}", "--no_progress", "--override=ict.training.train_steps=1",
               "--override=ict.training.learning_rate=1e-12", "--override=ict.training.batch_size=4"])
    path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    saved = tf.train.load_checkpoint(path)
    value = lambda name: saved.get_tensor(f"model/query_embedder/encoder/{name}/.ATTRIBUTES/VARIABLE_VALUE")  # noqa: E731
    np.testing.assert_allclose(value("_embedding_layer/embeddings"), weights["embeddings.word_embeddings.weight"],
                               atol=1e-6)
    np.testing.assert_allclose(value("_transformer_layers/1/_intermediate_dense/kernel"),
                               weights["encoder.layer.1.intermediate.dense.weight"].T, atol=1e-6)


def test_a_config_sized_otherwise_is_refused_by_train(hf_bert, small_blocks_dir, tmp_path, capsys):
    from realm_tf import train

    directory, _ = hf_bert
    status = train.main(["--task=ict", "--config=tiny", f"--blocks_dir={small_blocks_dir}",
                         f"--model_dir={tmp_path / 'ict'}", "--no_progress",
                         f"--override=retriever.init_checkpoint={directory}"])
    assert status == 2
    error = capsys.readouterr().err
    assert directory in error and "retriever.encoder.hidden_size: config 128, checkpoint 64" in error


def _write_blocks_tfr(path, texts):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for text in texts:
            writer.write(text if isinstance(text, bytes) else text.encode("utf-8"))


def test_release_blocks_and_block_emb_become_an_index_version(tmp_path, tiny_config, monkeypatch):
    from realm_tf.checkpoints import block_embeddings
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.artifacts.index_version import IndexVersion
    from realm_tf.retrieval.searcher import Searcher

    texts = ["Nikola Tesla was born in 1856 in Smiljan.", "The Eiffel Tower is in Paris.", "Warsaw is on the Vistula.",
             "Ünïcödé text survives the round trip."]
    blocks_tfr = tmp_path / "blocks.tfr"
    _write_blocks_tfr(blocks_tfr, texts)
    blocks_dir = tmp_path / "blocks"
    assert checkpoints_cli.main(["convert-blocks", f"--blocks_tfr={blocks_tfr}", f"--output_dir={blocks_dir}",
                                 "--config=tiny", "--no_progress"]) == 0
    store = BlockStore(str(blocks_dir))
    assert len(store) == len(texts)

    rng = np.random.default_rng(0)
    block_emb = rng.normal(size=[len(texts), 128]).astype(np.float32)
    embedder = tmp_path / "embedder"
    (embedder / "encoded").mkdir(parents=True)
    write_tf1_checkpoint(str(embedder / "encoded" / "encoded.ckpt"), {"block_emb": block_emb}, optimizer_state=False)
    index_root = tmp_path / "index"
    monkeypatch.setattr(block_embeddings, "IMPORT_ROWS", 3)  # Read in two slices, the second one short.
    assert checkpoints_cli.main(["import-index", f"--checkpoint={embedder}", f"--blocks_dir={blocks_dir}",
                                 f"--index_root={index_root}", "--config=tiny"]) == 0
    [published] = list(index_root.iterdir())  # The import's scratch copy is gone.
    version = IndexVersion.load(str(published))
    np.testing.assert_array_equal(version.embeddings, block_emb)

    # Row i is the i-th record of blocks.tfr: searching with row i's embedding finds that text.
    from realm_tf.corpus.block_store import BlockStore as Store
    from realm_tf.features.featurizer import Featurizer

    texts_by_id = Store(str(blocks_dir), Featurizer(tiny_config.features)).texts
    searcher = Searcher.from_directory(str(index_root), method="exact")
    ids, _ = searcher.search(block_emb, k=1)
    assert [texts_by_id[int(i)] for i in np.asarray(ids)[:, 0]] == texts


def test_block_emb_rows_must_match_the_blocks(tmp_path):
    blocks_tfr = tmp_path / "blocks.tfr"
    _write_blocks_tfr(blocks_tfr, ["one block", "another block"])
    blocks_dir = tmp_path / "blocks"
    checkpoints_cli.run(["convert-blocks", f"--blocks_tfr={blocks_tfr}", f"--output_dir={blocks_dir}",
                         "--config=tiny", "--no_progress"])
    prefix = tmp_path / "model.ckpt"
    write_tf1_checkpoint(str(prefix), {"block_emb": np.zeros([3, 128], np.float32)}, optimizer_state=False)
    with pytest.raises(Exception, match=r"model.ckpt.*3 rows but .*blocks holds 2 blocks"):
        checkpoints_cli.run(["import-index", f"--checkpoint={prefix}", f"--blocks_dir={blocks_dir}",
                             f"--index_root={tmp_path / 'index'}", "--config=tiny"])


def test_a_block_that_is_not_utf8_is_named(tmp_path, capsys):
    blocks_tfr = tmp_path / "blocks.tfr"
    _write_blocks_tfr(blocks_tfr, ["fine", b"\xff\xfe broken"])
    status = checkpoints_cli.main(["convert-blocks", f"--blocks_tfr={blocks_tfr}",
                                   f"--output_dir={tmp_path / 'out'}", "--config=tiny", "--no_progress"])
    assert status == 2
    assert f"{blocks_tfr}: record 1 is not UTF-8" in capsys.readouterr().err


def test_inspect_lists_the_parts_of_an_orqa_style_checkpoint(tmp_path, capsys):
    hidden, layers = 8, 1
    rng = np.random.default_rng(1)
    sizes = Sizes(vocab_size=30522, hidden_size=hidden, num_layers=layers, num_attention_heads=1,
                  intermediate_size=4 * hidden, max_position_embeddings=512)
    tensors = {"block_emb": rng.normal(size=[5, 128]).astype(np.float32),
               **bert_tf1_tensors(rng, sizes, "module/module/module/module/"),
               **bert_tf1_tensors(rng, sizes, "reader/module/"),
               **projection_tf1_tensors(rng, hidden, "module/module/module/")}
    tensors.update({"reader/dense/kernel": np.zeros([hidden, 16], np.float32),
                    "reader/dense/bias": np.zeros([16], np.float32),
                    "reader/layer_normalization/gamma": np.ones([8], np.float32),
                    "reader/layer_normalization/beta": np.zeros([8], np.float32),
                    "reader/dense_1/kernel": np.zeros([8, 1], np.float32),
                    "reader/dense_1/bias": np.zeros([1], np.float32),
                    "extra/unknown": np.zeros([2], np.float32)})
    prefix = tmp_path / "orqa_nq_model_from_realm" / "model.ckpt-100"
    write_tf1_checkpoint(str(prefix), tensors)  # With adam_m/adam_v of every trained tensor, and global_step.
    result = inspect_checkpoint(str(prefix.parent / "model.ckpt-100"))
    body = 5 + 16 * layers + 2
    assert result["format"] == "tf1"
    assert result["parts"] == {"reader BERT": body, "retriever BERT": body, "retriever projection": 4,
                               "reader span head": 6, "block embeddings": 1}
    assert result["encoder"]["hidden_size"] == hidden and result["encoder"]["num_layers"] == layers
    assert result["optimizer_state_skipped"] == 2 * (len(tensors) - 1) + 1  # All but block_emb, and global_step.
    assert result["unread"] == ["extra/unknown"]
    assert checkpoints_cli.main(["inspect", str(prefix)]) == 0
    assert "reader span head: 6 tensors" in capsys.readouterr().out
    json.dumps(result)  # Plain data, for scripts.

    # `config` sizes the reader's span MLP (dense is 2 x span_hidden_size wide) and both encoders.
    from realm_tf.checkpoints.__main__ import fitted_config

    config = fitted_config("tiny", [], str(prefix), str(prefix)).config
    assert config.reader.span_hidden_size == 8
    assert (config.reader.encoder.hidden_size, config.retriever.encoder.num_attention_heads) == (hidden, 1)
    assert config.retriever.projection_norm_epsilon == 1e-12  # REALM's `LayerNorm`, not Keras' 1e-3.
    assert config.retriever.init_checkpoint == config.reader.init_checkpoint == str(prefix)


def test_import_benchmark_times_every_format_against_the_own_restore(tmp_path):
    pytest.importorskip("transformers")
    from benchmarks import checkpoint_import

    results = checkpoint_import.main(["--config=tiny", "--repeats=1", f"--workdir={tmp_path / 'work'}",
                                      f"--output={tmp_path / 'results.json'}"])
    runs = results["runs"]
    assert set(runs) == {"own", "hugging_face", "model_garden", "realm_tf1"}
    assert runs["own"]["ratio_to_own_restore"] == 1.0
    body = 5 + 16 * 2 + 2  # Embeddings, two layers, pooler of the tiny BERT.
    assert {name: run.get("tensors_read") for name, run in runs.items() if name != "own"} == {
        "hugging_face": body, "model_garden": body, "realm_tf1": body + 4}
    assert json.loads((tmp_path / "results.json").read_text())["parameters"] == results["parameters"]

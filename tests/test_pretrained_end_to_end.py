"""The user's whole path from a pretrained Hugging Face BERT to a SavedModel that answers.

The test writes its own small sentence-transformers-style BERT (random weights, the tiny
config's encoder sizes, the bundled BERT vocabulary, mean pooling), then runs what a user
runs: `python -m realm_tf.checkpoints config`, chunking (the shared small corpus), a
zero-step ICT (the imported tower exported as is), embed-and-index, a few fine-tuning
steps, `python -m realm_tf.export --retrieval exact`, and a question to the SavedModel in
a fresh process that imports only TensorFlow and TF Text. Random weights answer nothing
correctly: what is checked is that it answers, with evidence from the corpus.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from checkpoint_writers import Sizes, random_hugging_face_model, write_hugging_face

from conftest import CORPUS, QA_TRAIN, SMALL_CORPUS_DOCS, VOCAB

# The tiny config's encoder, over the bundled BERT vocabulary.
SIZES = Sizes(vocab_size=30522, hidden_size=128, num_layers=2, num_attention_heads=2, intermediate_size=512,
              max_position_embeddings=512)
QUESTION = "When was Nikola Tesla born?"
NUM_QUESTIONS = 32

# TensorFlow and TF Text only, as a stock server: serving_default's outputs as JSON.
CLIENT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
loaded = tf.saved_model.load(sys.argv[1])
out = loaded.signatures["serving_default"](questions=tf.constant([sys.argv[2]]))
decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
nested = lambda v: [nested(x) for x in v] if isinstance(v, list) else decode(v)
print(json.dumps({"imported": [m for m in ("realm_tf", "scann") if m in sys.modules],
                  "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list(), "value": nested(v.numpy().tolist())}
                              for k, v in out.items()}}))
"""


def _write_json(path: pathlib.Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def _write_sentence_transformers_bert(directory: pathlib.Path):
    """A random HF `BertModel` directory with vocab.txt, modules.json and a mean-pooling 1_Pooling."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    model = random_hugging_face_model(SIZES, seed=7, pretraining=False)
    write_hugging_face(str(directory), model)
    shutil.copyfile(VOCAB, directory / "vocab.txt")
    _write_json(directory / "1_Pooling" / "config.json",
                {"word_embedding_dimension": SIZES.hidden_size, "pooling_mode_cls_token": False,
                 "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                 "pooling_mode_mean_sqrt_len_tokens": False})
    _write_json(directory / "modules.json",
                [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                 {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    return {name: value.detach().numpy() for name, value in model.state_dict().items()}


def _small_qa(path: pathlib.Path) -> pathlib.Path:
    """Training questions whose gold passage is one of the small corpus's documents."""
    doc_ids = {json.loads(line)["id"] for line in CORPUS.read_text(encoding="utf-8").splitlines()[:SMALL_CORPUS_DOCS]}
    articles = {doc_id.split("#")[0] for doc_id in doc_ids}
    lines = [line for line in QA_TRAIN.read_text(encoding="utf-8").splitlines()
             if json.loads(line)["gold_passage_id"] in doc_ids]
    assert all(json.loads(line)["gold_passage_id"].split("#")[0] in articles for line in lines)
    # Spread over the articles rather than the first passage's questions alone.
    lines = lines[::max(1, len(lines) // NUM_QUESTIONS)][:NUM_QUESTIONS]
    assert len(lines) == NUM_QUESTIONS
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _variable(reader, suffix: str) -> np.ndarray:
    """The one variable of a TF2 checkpoint whose name ends with `suffix`."""
    names = [name for name in reader.get_variable_to_shape_map() if name.endswith(suffix)]
    assert len(names) == 1, (suffix, sorted(reader.get_variable_to_shape_map())[:40])
    return reader.get_tensor(names[0])


def _assert_tower_is_the_checkpoint(reader, prefix: str, hf, atol: float = 1e-6) -> None:
    value = lambda name: _variable(reader, f"{prefix}{name}/.ATTRIBUTES/VARIABLE_VALUE")  # noqa: E731
    np.testing.assert_allclose(value("_embedding_layer/embeddings"), hf["embeddings.word_embeddings.weight"],
                               atol=atol)
    np.testing.assert_allclose(value("_transformer_layers/1/_intermediate_dense/kernel"),
                               hf["encoder.layer.1.intermediate.dense.weight"].T, atol=atol)


@pytest.mark.slow
def test_a_hugging_face_bert_becomes_a_saved_model_that_answers(small_blocks_dir, tmp_path):
    import tensorflow as tf

    from beam_pipelines import embed_and_index
    from realm_tf import train
    from realm_tf.checkpoints import __main__ as checkpoints_cli
    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import NULL_BLOCK_ID, BlockStore
    from realm_tf.export import __main__ as export_cli

    # 1. A pretrained model as a user downloads it.
    hf_dir = tmp_path / "my-minilm"
    hf = _write_sentence_transformers_bert(hf_dir)

    # 2. A config fitted to it, for both the retriever towers and the reader.
    config_path = tmp_path / "fitted.yaml"
    assert checkpoints_cli.main(["config", f"--retriever={hf_dir}", f"--reader={hf_dir}", "--config=tiny",
                                 f"--output={config_path}"]) == 0
    fitted = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    assert fitted["retriever"]["pooling"] == "mean"
    assert fitted["retriever"]["init_checkpoint"] == str(hf_dir)
    assert fitted["reader"]["init_checkpoint"] == str(hf_dir)
    config = load_config(str(config_path))
    assert config.retriever.pooling == "mean" and config.retriever.encoder.hidden_size == SIZES.hidden_size
    assert config.retriever.encoder.num_layers == SIZES.num_layers

    # 3. The corpus, chunked (the shared fixture); its block ids.
    block_ids = {i for i in BlockStore(small_blocks_dir).bodies if i != NULL_BLOCK_ID}
    assert block_ids

    # 4. ICT with no steps: the imported tower, checkpointed and exported as is (zero-shot).
    ict_dir = tmp_path / "ict"
    ict = train.run(["--task=ict", f"--config={config_path}", f"--blocks_dir={small_blocks_dir}",
                     f"--model_dir={ict_dir}", "--no_progress", "--skip_heldout_eval",
                     "--override=ict.training.train_steps=0"])
    assert ict["step"] == 0 and ict["eval"] == {}
    assert tf.train.latest_checkpoint(str(ict_dir / "checkpoints")) == str(ict_dir / "checkpoints" / "ckpt-0")
    assert ict["export"] == str(ict_dir / "embedder" / "0")
    assert (ict_dir / "embedder" / "0" / "saved_model.pb").exists()
    saved = tf.train.load_checkpoint(str(ict_dir / "checkpoints" / "ckpt-0"))
    _assert_tower_is_the_checkpoint(saved, "model/query_embedder/encoder/", hf)
    # The export's own variables: its query tower is the imported BERT (the projection is new).
    exported = {v.name: v.numpy() for v in tf.saved_model.load(ict["export"]).retriever.variables}
    bert = "retriever/query_embedder/bert/"
    np.testing.assert_allclose(exported[bert + "word_embeddings/embeddings:0"],
                               hf["embeddings.word_embeddings.weight"], atol=1e-6)
    np.testing.assert_allclose(exported[bert + "transformer/layer_1/intermediate/kernel:0"],
                               hf["encoder.layer.1.intermediate.dense.weight"].T, atol=1e-6)

    # 5. The blocks embedded with that export, as an index version.
    index_root = tmp_path / "index"
    version = embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict['export']}",
                                   f"--index_root={index_root}", f"--config={config_path}",
                                   "--runner=DirectRunner"])
    assert pathlib.Path(version).parent == index_root

    # 6. A few fine-tuning steps from the ICT query tower and the imported reader.
    finetune_dir = tmp_path / "finetune"
    qa_train = _small_qa(tmp_path / "qa_train.jsonl")
    finetuned = train.run(["--task=finetune", f"--config={config_path}", f"--blocks_dir={small_blocks_dir}",
                           f"--index={index_root}", f"--qa_train={qa_train}", f"--model_dir={finetune_dir}",
                           f"--init_from={ict_dir}", "--no_progress"]
                          + [f"--override={o}" for o in (
                              "finetune.training.train_steps=4", "finetune.training.batch_size=2",
                              "finetune.training.warmup_steps=1", "finetune.training.summary_every_steps=2",
                              "finetune.retriever_beam_size=20")])
    assert finetuned["step"] == 4 and np.isfinite(finetuned["train"]["loss"])
    assert finetuned["index_version"] == version
    # The reader started from the Hugging Face BERT: 4 Adam steps at the fitted 1e-5 move a weight by < 1e-3.
    trained = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(finetune_dir / "checkpoints")))
    _assert_tower_is_the_checkpoint(trained, "model/reader/encoder/", hf, atol=1e-3)

    # 7. The SavedModel that answers, then a question to it from a process without realm_tf.
    export_dir = export_cli.run([f"--model_dir={finetune_dir}", "--retrieval=exact",
                                 f"--output_root={tmp_path / 'saved_models'}", "--model_name=realm_qa"])
    assert pathlib.Path(export_dir) == tmp_path / "saved_models" / "realm_qa" / "1"
    done = subprocess.run([sys.executable, "-c", CLIENT, export_dir, QUESTION], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    out = report["outputs"]
    assert {"answer", "score", "answer_block_id", "block_ids", "titles", "texts", "probabilities"} <= set(out)
    assert out["answer"]["dtype"] == "string" and out["answer"]["shape"] == [1]
    k = config.finetune.top_k
    assert out["block_ids"]["shape"] == [1, k] == out["texts"]["shape"] == out["probabilities"]["shape"]
    retrieved = out["block_ids"]["value"][0]
    assert set(retrieved) <= block_ids and len(set(retrieved)) == k
    assert sum(out["probabilities"]["value"][0]) == pytest.approx(1.0, abs=1e-4)
    # The answer, if any, is a slice of the block it names among the retrieved ones.
    answer, answer_block = out["answer"]["value"][0], out["answer_block_id"]["value"][0]
    if answer:
        assert answer_block in retrieved
        assert answer in out["texts"]["value"][0][retrieved.index(answer_block)]
    else:
        assert answer_block == -1

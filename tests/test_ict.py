"""ICT: its examples, its learning, the trainer's checkpoints and resumption."""

import gc
import logging
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.configs import load_config
from realm_tf.corpus.block_records import BlockRecord
from realm_tf.modeling import Retriever
from realm_tf.retrieval.embedder_export import EmbedderExport
from realm_tf.tasks.ict import IctTask
from realm_tf.training.trainer import Trainer

from conftest import ICT_OVERRIDES


def _config(*overrides):
    return load_config("tiny", ICT_OVERRIDES + list(overrides))


def _blocks(blocks_dir):
    manifest = BlocksManifest.read(blocks_dir)
    return [BlockRecord.from_bytes(r) for r in tf.data.TFRecordDataset(manifest.block_paths(blocks_dir)).as_numpy_iterator()]


def _unpack(ids, mask):
    return [int(t) for t, m in zip(ids, mask) if m]


@pytest.mark.parametrize("remove", [0.0, 1.0])
def test_an_example_is_a_sentence_and_its_block_with_or_without_it(small_blocks_dir, remove):
    task = IctTask(_config(f"ict.remove_sentence_probability={remove}"), small_blocks_dir)
    blocks = _blocks(small_blocks_dir)
    batch = next(iter(task.build_train_dataset(16, seed=3)))
    assert batch["query"]["input_word_ids"].shape == (16, 32) and batch["block"]["input_word_ids"].shape == (16, 128)
    for q_ids, q_mask, b_ids, b_types, b_mask in zip(
            *(batch["query"][k].numpy() for k in ("input_word_ids", "input_mask")),
            *(batch["block"][k].numpy() for k in ("input_word_ids", "input_type_ids", "input_mask"))):
        query = _unpack(q_ids, q_mask)[1:-1]  # Without [CLS] and [SEP]; cut to query_length - 2.
        packed, types = _unpack(b_ids, b_mask), _unpack(b_types, b_mask)
        title, context = packed[1:types.index(1) - 1], packed[types.index(1):-1]
        # Where the query is a sentence of a block with this title, the context is that
        # block whole (no removal, or a one-sentence block) or without that sentence.
        matches = []
        for block in blocks:
            if block.title_token_ids != title:
                continue
            body, starts = block.body_token_ids, block.sentence_starts + [len(block.body_token_ids)]
            for a, b in zip(starts, starts[1:]):
                if body[a:b][:len(query)] != query:
                    continue
                keeps = remove == 0.0 or len(block.sentence_starts) == 1
                matches.append(context == (body if keeps else body[:a] + body[b:]))
        assert any(matches)


def test_ict_loss_falls_within_a_few_dozen_steps(ict_run):
    events = [e for path in tf.io.gfile.glob(os.path.join(ict_run["model_dir"], "train", "*"))
              for e in tf.compat.v1.train.summary_iterator(path)]
    loss = {e.step: float(tf.make_ndarray(v.tensor)) for e in events for v in e.summary.value if v.tag == "loss"}
    uniform = math.log(16)  # The loss of a retriever that cannot tell blocks apart.
    assert abs(loss[10] - uniform) < 0.3
    assert loss[60] < uniform - 0.5
    assert ict_run["train"]["loss"] < uniform - 1.0
    assert ict_run["train"]["accuracy"] > 0.5


def test_after_ict_a_blocks_own_text_retrieves_it_first_far_more_often(ict_run, small_blocks_dir, tiny_config):
    blocks = _blocks(small_blocks_dir)
    export = EmbedderExport.load(ict_run["export"])

    def first_hit_rate(embed_blocks, embed_queries):
        top = np.argmax(embed_queries([b.text for b in blocks]) @ embed_blocks(blocks).T, axis=1)
        return float(np.mean(top == np.arange(len(blocks))))

    trained = first_hit_rate(lambda bs: export.embed_block_tokens([b.title_token_ids for b in bs],
                                                                  [b.body_token_ids for b in bs]),
                             export.embed_query_texts)
    untrained_model = Retriever(tiny_config.retriever)
    featurizer = export.featurizer
    untrained = first_hit_rate(
        lambda bs: untrained_model.embed_blocks(featurizer.block_features([b.title for b in bs], [b.text for b in bs])).numpy(),
        lambda texts: untrained_model.embed_queries(featurizer.query_features(texts)).numpy())
    # 120 steps from scratch on ~140 blocks: about a third of the blocks come first for
    # their own text (0.375 measured), against a few percent untrained.
    assert trained >= 0.25 and trained >= 5 * max(untrained, 0.01)


def test_ict_reports_heldout_recall_and_exports_the_embedder(ict_run):
    assert ict_run["step"] == 120
    assert set(ict_run["eval"]) == {"recall@1", "recall@5", "recall@20", "num_queries"}
    assert ict_run["eval"]["num_queries"] > 0
    assert 0 <= ict_run["eval"]["recall@1"] <= ict_run["eval"]["recall@5"] <= ict_run["eval"]["recall@20"] <= 1
    assert os.path.isfile(os.path.join(ict_run["model_dir"], "eval.json"))
    assert EmbedderExport.load(ict_run["export"]).step == 120


class _Interrupted(IctTask):
    """ICT whose input ends after a few batches, as if the job were killed."""

    def build_train_dataset(self, global_batch_size, seed, start_step=0):
        return super().build_train_dataset(global_batch_size, seed, start_step).take(7)


def test_training_resumes_from_the_last_checkpoint_after_an_interruption(small_blocks_dir, tmp_path, caplog):
    config = _config("ict.training.train_steps=12", "ict.training.checkpoint_every_steps=100")
    with pytest.raises((StopIteration, tf.errors.OutOfRangeError)):
        Trainer(_Interrupted(config, small_blocks_dir), config.ict.training, str(tmp_path)).train(progress=False)
    resumed = Trainer(IctTask(config, small_blocks_dir), config.ict.training, str(tmp_path))
    assert resumed.step == 7  # The interrupted run saved its last step on the way out.
    saved = tf.train.load_checkpoint(os.path.join(tmp_path, "checkpoints", "ckpt-7"))
    kernel = resumed.model.query_embedder.projection.kernel
    key = next(k for k in saved.get_variable_to_shape_map() if "projection/kernel" in k and "optimizer" not in k)
    np.testing.assert_array_equal(kernel.numpy(), saved.get_tensor(key))  # Restored, not re-initialized.
    resumed.train(progress=False)
    assert resumed.step == 12
    assert not np.array_equal(kernel.numpy(), saved.get_tensor(key))
    finished = Trainer(IctTask(config, small_blocks_dir), config.ict.training, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        assert finished.train() == {}
        del finished
        gc.collect()
    # No step ran, so the optimizer's slots were never made: not a warning for each of them.
    assert not [r for r in caplog.records if "could not be found in the restored object" in r.getMessage()]


def test_blocks_from_another_block_length_are_refused(small_blocks_dir):
    with pytest.raises(ManifestError, match="chunked for block_length 128, but the model packs blocks of 64"):
        IctTask(load_config("tiny", ["features.block_length=64", "corpus.max_title_tokens=8"]), small_blocks_dir)


def test_ict_trains_under_a_mirrored_strategy_of_two_logical_cpus(small_blocks_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    command = [sys.executable, "-m", "realm_tf.train", "--task=ict", "--config=tiny", f"--blocks_dir={small_blocks_dir}",
               f"--model_dir={tmp_path}", "--strategy=mirrored", "--cpu_devices=2", "--no_progress",
               "--override=ict.training.train_steps=4", "--override=ict.training.batch_size=8"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "step 4: held-out" in run.stdout
    assert "Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/device:CPU:0', " \
           "'/job:localhost/replica:0/task:0/device:CPU:1')" in run.stderr
    assert EmbedderExport.load(str(tmp_path / "embedder" / "4")).step == 4

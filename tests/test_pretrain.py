"""REALM pre-training on the small corpus: candidates, resumption and the live index refresh."""

import os
import shutil
import time

import numpy as np
import pytest

from realm_tf import train
from realm_tf.artifacts.index_version import list_versions
from realm_tf.configs import load_config
from realm_tf.tasks.pretrain import PretrainTask
from realm_tf.training.trainer import Trainer

OVERRIDES = ["pretrain.training.batch_size=4", "pretrain.training.warmup_steps=2",
             "pretrain.training.checkpoint_every_steps=100", "pretrain.training.summary_every_steps=1"]


def _copy_index(root, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(root, copy)
    return str(copy)


@pytest.fixture
def task(small_examples_dir, small_blocks_dir, small_index_root, tmp_path):
    config = load_config("tiny", OVERRIDES)
    task = PretrainTask(config, small_examples_dir, small_blocks_dir, _copy_index(small_index_root, tmp_path),
                        str(tmp_path / "model"), poll_seconds=0)
    yield task
    task.finish()


def test_candidates_exclude_the_source_block_and_start_with_the_null_document(task):
    batch = task.make_batch(task.stream.head(32))
    ids, sources = batch["candidate_ids"], batch["source_block_id"]
    assert ids.shape == (32, task.config.pretrain.top_k)
    assert (ids[:, 0] == -1).all()  # The null document, always first.
    assert not (ids[:, 1:] == -1).any()  # The small index has enough blocks for every query.
    assert not (ids == sources[:, None]).any()  # No trivial retrievals.
    null = batch["candidates"]["input_word_ids"][:, 0, :4]
    assert (null == [101, 102, 102, 0]).all()
    # The reader reads the query, then the block; the masks sit where [MASK] is in both packings.
    for row in range(32):
        for position, weight in zip(batch["masked_positions"][row], batch["masked_weights"][row]):
            if weight:
                assert batch["query"]["input_word_ids"][row, position] == 103
                assert (batch["reader"]["input_word_ids"][row, :, position] == 103).all()
    assert (batch["index_step"] == 0).all()  # The initial index comes from another run (ICT).


def test_a_resumed_run_continues_from_its_step_and_its_place_in_the_data(task, tmp_path):
    config = load_config("tiny", OVERRIDES + ["pretrain.training.train_steps=3", "pretrain.refresh_every_steps=100"])
    first = Trainer(task, config.pretrain.training, str(tmp_path / "model"))
    first.train(progress=False)
    assert first.step == 3
    config.pretrain.training.train_steps = 5
    resumed = Trainer(task, config.pretrain.training, str(tmp_path / "model"))
    assert resumed.restored_from.endswith("ckpt-3") and resumed.step == 3
    # The data position is part of the resumption: step 3 of a resumed run gets the
    # batch an uninterrupted run would have had at step 3.
    uninterrupted = iter(task.build_train_dataset(4, seed=0, start_step=0))
    for _ in range(3):
        next(uninterrupted)
    expected = next(uninterrupted)
    got = next(iter(task.build_train_dataset(4, seed=0, start_step=3)))
    np.testing.assert_array_equal(got["source_block_id"].numpy(), expected["source_block_id"].numpy())
    np.testing.assert_array_equal(got["masked_ids"].numpy(), expected["masked_ids"].numpy())
    resumed.train(progress=False)
    assert resumed.step == 5


class _WaitsForRefresh(PretrainTask):
    """Pre-training whose steps outlast a refresh: after each export, wait (bounded) for the
    background refresher to publish its index version, as a slow real step would."""

    def after_step(self, trainer, step, metrics):
        extra = super().after_step(trainer, step, metrics)
        if step % self.config.pretrain.refresh_every_steps == 0:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(v.endswith(f"step{step:010d}") for v in
                                                          list_versions(self.watcher.index_root)):
                time.sleep(0.5)
        return extra


def test_refresh_publishes_versions_while_training_and_training_uses_the_newer_one(
        small_examples_dir, small_blocks_dir, small_index_root, ict_run, tmp_path, monkeypatch):
    import realm_tf.tasks.pretrain as pretrain_module

    monkeypatch.setattr(pretrain_module, "PretrainTask", _WaitsForRefresh)
    index_root = _copy_index(small_index_root, tmp_path)
    initial = list_versions(index_root)
    model_dir = tmp_path / "model"
    result = train.run(["--task=pretrain", "--config=tiny", f"--blocks_dir={small_blocks_dir}",
                        f"--examples_dir={small_examples_dir}", f"--index_root={index_root}",
                        f"--model_dir={model_dir}", f"--init_from={ict_run['model_dir']}", "--refresh_in_background",
                        "--no_progress", "--override=pretrain.training.train_steps=9",
                        "--override=pretrain.refresh_every_steps=3"] + [f"--override={o}" for o in OVERRIDES])
    published = [v for v in list_versions(index_root) if v not in initial]
    assert [v[-4:] for v in published][-2:] == ["0006", "0009"]  # keep_versions prunes the oldest.
    assert len(published) >= 2
    used = result["index_versions_used"]
    assert used[0] == initial[-1] and len(used) >= 2  # Started on the initial index, then a newer one.
    assert os.path.isfile(model_dir / "embedder" / "TRAINING_DONE")
    assert "Published index version" in (model_dir / "refresh.log").read_text()
    assert result["step"] == 9 and np.isfinite(result["train"]["loss"])


def test_the_train_step_runs_with_xla_compiled_forward_and_backward(task, tmp_path):
    config = load_config("tiny", OVERRIDES + ["pretrain.training.train_steps=2", "pretrain.refresh_every_steps=100"])
    trainer = Trainer(task, config.pretrain.training, str(tmp_path / "xla"), jit_compile=True)
    before = trainer.model.reader.masked_lm.bias.numpy().copy()
    metrics = trainer.train(progress=False)
    assert trainer.step == 2 and np.isfinite(metrics["loss"])
    assert not np.array_equal(before, trainer.model.reader.masked_lm.bias.numpy())

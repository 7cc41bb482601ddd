"""kill -9 anywhere: the trainer (with its refresher), the refresher alone and embed_and_index,
each SIGKILLed at a random point (seeded), then run again.

After every kill, each index version that is visible verifies its checksums. After the
run that follows it: training resumed from the newest checkpoint on disk, at its step
(and so at its place in the data: `build_train_dataset(start_step=step)`, which
test_pretrain checks batch for batch); the refresher indexed what was left to index, once;
embed_and_index published the same embeddings an uninterrupted run did; and no staging
directory of a killed publisher is left anywhere.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from realm_tf.artifacts.index_version import IndexVersion, latest_version, list_versions
from realm_tf.artifacts.staging import STAGING_PREFIX

from conftest import REPO
from test_refresh import corpus, finish_training, place_export  # noqa: F401  (corpus: a fixture)

SEEDS = (0, 1, 2)
RUN_TIMEOUT_S = 600  # Bounds a broken run; a working one takes well under a minute here.
PRETRAIN_STEPS = 12
PRETRAIN_OVERRIDES = [f"pretrain.training.train_steps={PRETRAIN_STEPS}", "pretrain.refresh_every_steps=3",
                      "pretrain.training.checkpoint_every_steps=2", "pretrain.training.batch_size=4",
                      "pretrain.training.warmup_steps=2", "index.keep_versions=3"]


def _start(command, log_path):
    """`python -m ...` in a process group of its own (its children too), output to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", *command], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _run(command, log_path):
    """Runs to completion; returns the log's text of this run."""
    start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    process = _start(command, log_path)
    try:
        returncode = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        pytest.fail(f"{command[0]} did not finish in {RUN_TIMEOUT_S}s")
    with open(log_path, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        text = f.read()
    assert returncode == 0, text[-3000:]
    return text


def _kill_group(process):
    """SIGKILL to the process and every child it started (the trainer's refresher, Beam's workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _kill_at(process, seconds):
    """Kills the group `seconds` after now, or not at all if it ends first; returns whether it was killed."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return True


def _staging_leftovers(*roots):
    found = []
    for root in roots:
        for parent, dirs, _ in os.walk(root):
            found += [os.path.join(parent, d) for d in dirs if d.startswith(STAGING_PREFIX)]
    return found


def _assert_visible_versions_verify(index_root):
    for version in list_versions(str(index_root)):
        IndexVersion.load(version, verify=True)  # Raises IndexVersionError on any damage.


def _embed_command(corpus, export, index_root, name):  # noqa: F811  (corpus: the fixture's value)
    return ["beam_pipelines.embed_and_index", f"--blocks_dir={corpus['blocks_dir']}", f"--embedder_export={export}",
            f"--index_root={index_root}", "--config=tiny", f"--version_name={name}"]


@pytest.mark.slow  # Three kills and reruns of a Beam pipeline in fresh processes: minutes on 2 cores.
def test_embed_and_index_killed_anywhere_publishes_whole_versions_only(corpus, tmp_path):  # noqa: F811
    export = corpus["exports"][0]
    log = tmp_path / "embed.log"
    # The first run over a blocks directory also builds its compact store, so it is longer
    # than the runs after it; it is the reference, not the clock.
    _run(_embed_command(corpus, export, tmp_path / "reference", "v"), log)
    reference = IndexVersion.load(str(tmp_path / "reference" / "v"))
    kills = left = 0
    for seed in SEEDS:
        root = tmp_path / f"index{seed}"
        started = time.monotonic()
        _run(_embed_command(corpus, export, root, "v0"), log)  # A version there before the kill.
        # The run just before, on the same inputs, is the best guess at how long the killed one would take.
        when = random.Random(seed).uniform(0.1, 0.95) * (time.monotonic() - started)
        kills += _kill_at(_start(_embed_command(corpus, export, root, "v1"), log), when)
        _assert_visible_versions_verify(root)
        left += len(_staging_leftovers(root))
        _run(_embed_command(corpus, export, root, "v2"), log)
        _assert_visible_versions_verify(root)
        assert not _staging_leftovers(root), f"seed {seed}, killed after {when:.1f}s"
        again = IndexVersion.load(str(root / "v2"))
        np.testing.assert_array_equal(again.block_ids, reference.block_ids)
        np.testing.assert_allclose(again.embeddings, reference.embeddings, atol=1e-6)
    print(f"embed_and_index: {kills} kill(s) made of {len(SEEDS)} tries, {kills} survived; the killed runs left "
          f"{left} staging director(ies), all removed by the next run")
    assert kills >= 2, "most kill points fall inside the run"


def _refresh_command(corpus, model_dir, index_root):  # noqa: F811
    return ["beam_pipelines.refresh", f"--model_dir={model_dir}", f"--blocks_dir={corpus['blocks_dir']}",
            f"--index_root={index_root}", "--config=tiny", "--poll_seconds=0.2"]


@pytest.mark.slow  # Three kills and reruns of the refresher in fresh processes: minutes on 2 cores.
def test_a_killed_refresher_picks_up_where_it_left_off(corpus, tmp_path):  # noqa: F811
    log = tmp_path / "refresh.log"
    # Uninterrupted: how long indexing one export takes, start to exit.
    model_dir = tmp_path / "model-reference"
    place_export(model_dir, 10, corpus["exports"][0])
    finish_training(model_dir)
    started = time.monotonic()
    _run(_refresh_command(corpus, model_dir, tmp_path / "index-reference"), log)
    duration = time.monotonic() - started
    kills = left = 0
    for seed in SEEDS:
        model_dir, index_root = tmp_path / f"model{seed}", tmp_path / f"index{seed}"
        place_export(model_dir, 10, corpus["exports"][0])
        when = random.Random(seed).uniform(0.1, 0.95) * duration
        # Not done yet: the refresher waits for more after indexing step 10, so the kill always lands.
        kills += _kill_at(_start(_refresh_command(corpus, model_dir, index_root), log), when)
        _assert_visible_versions_verify(index_root)
        left += len(_staging_leftovers(index_root, model_dir))
        before = [IndexVersion.load(v).manifest["metadata"]["step"] for v in list_versions(str(index_root))]
        place_export(model_dir, 20, corpus["exports"][1])
        finish_training(model_dir)
        text = _run(_refresh_command(corpus, model_dir, index_root), log)
        _assert_visible_versions_verify(index_root)
        steps = [IndexVersion.load(v).manifest["metadata"]["step"] for v in list_versions(str(index_root))]
        # The newest export is indexed, once; an export indexed before the kill is not indexed again.
        assert steps[-1] == 20 and steps.count(20) == 1 and steps[:len(before)] == before, (seed, when, steps)
        assert "1 index version(s) published" in text
        assert not _staging_leftovers(index_root, model_dir), f"seed {seed}, killed after {when:.1f}s"
    print(f"refresher: {kills} kill(s) made of {len(SEEDS)} tries, {kills} survived; the killed ones left {left} "
          "staging director(ies), all removed by the next")
    assert kills == len(SEEDS)


def _newest_checkpoint_step(model_dir):
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(str(model_dir), "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


@pytest.mark.slow  # Three pre-training runs killed and resumed, each with its refresher: minutes on 2 cores.
def test_pretraining_killed_with_its_refresher_resumes_and_leaves_nothing_behind(
        small_examples_dir, small_blocks_dir, small_index_root, ict_run, tmp_path):
    kills = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        index_root, model_dir = tmp_path / f"index{seed}", tmp_path / f"model{seed}"
        shutil.copytree(small_index_root, index_root)
        log = tmp_path / f"train{seed}.log"
        command = ["realm_tf.train", "--task=pretrain", "--config=tiny", f"--blocks_dir={small_blocks_dir}",
                   f"--examples_dir={small_examples_dir}", f"--index_root={index_root}", f"--model_dir={model_dir}",
                   f"--init_from={ict_run['model_dir']}", "--refresh_in_background", "--no_progress",
                   *[f"--override={o}" for o in PRETRAIN_OVERRIDES]]
        # A random point: a random step's checkpoint, then up to 3 s more (mid-step, mid-export, mid-refresh).
        after_step, extra = rng.randrange(2, PRETRAIN_STEPS - 1, 2), rng.uniform(0.0, 3.0)
        trainer = _start(command, log)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while _newest_checkpoint_step(model_dir) < after_step and trainer.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint of the step to kill after"
            time.sleep(0.2)
        killed = _kill_at(trainer, extra)
        kills += killed
        _assert_visible_versions_verify(index_root)
        left = len(_staging_leftovers(index_root, model_dir))
        newest = _newest_checkpoint_step(model_dir)
        text = _run(command, log)
        if killed and newest:
            assert re.search(rf"resumed from \S*ckpt-{newest} at step {newest}\b", text), (seed, newest)
        assert f"step {PRETRAIN_STEPS}:" in text
        _assert_visible_versions_verify(index_root)
        assert IndexVersion.load(latest_version(str(index_root))).manifest["metadata"]["step"] == PRETRAIN_STEPS
        assert os.path.isfile(model_dir / "embedder" / "TRAINING_DONE")
        assert not _staging_leftovers(index_root, model_dir), (seed, after_step, extra)
        assert not [n for n in os.listdir(model_dir / "checkpoints") if "_temp" in n], (seed, after_step, extra)
        print(f"seed {seed}: killed after step {after_step} + {extra:.1f}s: {killed}; newest checkpoint {newest}; "
              f"{left} staging director(ies) left by the kill, none after the resumed run")
    print(f"pre-training: {kills} kill(s) made of {len(SEEDS)} tries, {kills} survived")
    assert kills >= 2


def test_a_checkpoint_save_killed_midway_leaves_a_temp_folder_the_next_trainer_removes(tmp_path):
    from realm_tf.artifacts.model_dir import ModelDir

    model_dir = ModelDir(str(tmp_path / "model"))
    os.makedirs(os.path.join(model_dir.checkpoints_dir, "ckpt-11_temp"))  # What TF's sharded save writes first.
    open(os.path.join(model_dir.checkpoints_dir, "ckpt-11_temp", "part-00000-of-00001.data-00000-of-00001"),
         "wb").close()
    kept = ["checkpoint", "ckpt-10.index", "ckpt-10.data-00000-of-00001"]
    for name in kept:
        open(os.path.join(model_dir.checkpoints_dir, name), "wb").close()
    assert model_dir.remove_unfinished_checkpoints() == ["ckpt-11_temp"]
    assert sorted(os.listdir(model_dir.checkpoints_dir)) == sorted(kept)
    assert model_dir.remove_unfinished_checkpoints() == []
    assert ModelDir(str(tmp_path / "none")).remove_unfinished_checkpoints() == []

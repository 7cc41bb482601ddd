"""The asynchronous index refresher: real exports, the real embed-and-index pipeline, a real child process."""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from beam_pipelines import chunk_corpus, refresh
from realm_tf.artifacts.embedder_export import METADATA_PATH
from realm_tf.artifacts.index_version import IndexVersion, latest_version, list_versions
from realm_tf.artifacts.model_dir import ModelDir

from conftest import CORPUS

# A run that works stops in seconds; these only bound a broken one.
MAX_SECONDS = 60
CHILD_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{"blocks_dir", "exports": [two embedder exports with different weights]}.

    Exporting takes seconds, so the tests copy these under the step they need
    (`place_export`) instead of exporting again.
    """
    from realm_tf.configs import load_config
    from realm_tf.retrieval.embedder_export import export_embedder
    from realm_tf.features import Featurizer
    from realm_tf.modeling import Retriever

    root = tmp_path_factory.mktemp("refresh")
    docs = root / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:20]), encoding="utf-8")
    chunk_corpus.run([f"--input={docs}", f"--output_dir={root / 'blocks'}", "--config=tiny"])

    config = load_config("tiny")
    featurizer = Featurizer(config.features)
    retriever = Retriever(config.retriever)
    retriever.embed_blocks(featurizer.block_features([""], [""]))  # Builds the weights.
    kernel = retriever.block_embedder.projection.kernel
    exports = []
    for seed in (1, 2):
        kernel.assign(np.random.default_rng(seed).normal(0.0, 0.02, kernel.shape).astype(np.float32))
        exports.append(export_embedder(retriever, featurizer, str(root / "pool" / str(seed)), step=seed))
    return {"blocks_dir": str(root / "blocks"), "exports": exports}


def place_export(model_dir, step, source):
    """Copies export `source` to `<model_dir>/embedder/<step>` as the trainer writes one: a hidden
    copy renamed into place, its metadata saying `step`. Returns the export's path."""
    exports_dir = ModelDir(str(model_dir)).exports_dir
    staging = os.path.join(exports_dir, f".staging-{step}-copy")
    shutil.copytree(source, staging)
    metadata_path = os.path.join(staging, METADATA_PATH)
    with open(metadata_path, encoding="utf-8") as f:
        metadata = json.load(f)
    with open(metadata_path, "w", encoding="utf-8") as f:
        json.dump(dict(metadata, step=step), f)
    path = os.path.join(exports_dir, str(step))
    os.rename(staging, path)
    return path


def finish_training(model_dir):
    ModelDir(str(model_dir)).mark_training_done()


def make_refresher(corpus, tmp_path, **kwargs):
    return refresh.Refresher(str(tmp_path / "model"), corpus["blocks_dir"], str(tmp_path / "index"),
                             config="tiny", **kwargs)


def version_step(version):
    return IndexVersion.load(version).manifest["metadata"]["step"]


def test_refresh_once_indexes_the_newest_export_and_then_waits_for_a_newer_one(corpus, tmp_path):
    model_dir = tmp_path / "model"
    first = place_export(model_dir, 10, corpus["exports"][0])
    # Not exports: one in progress, one not named by a step, one without its metadata yet.
    shutil.copytree(corpus["exports"][1], model_dir / "embedder" / ".staging-40-abc")
    shutil.copytree(corpus["exports"][1], model_dir / "embedder" / "latest")
    (model_dir / "embedder" / "50").mkdir()
    refresher = make_refresher(corpus, tmp_path)
    assert refresher.newest_unindexed_export() == first

    version = refresher.refresh_once()
    manifest = IndexVersion.load(version).manifest
    assert manifest["metadata"]["step"] == 10
    assert manifest["metadata"]["embedder_export"] == os.path.abspath(first)
    assert refresher.newest_unindexed_export() is None
    assert refresher.refresh_once() is None

    second = place_export(model_dir, 20, corpus["exports"][1])
    assert refresher.newest_unindexed_export() == second
    newer = refresher.refresh_once()
    assert version_step(newer) == 20
    assert list_versions(str(tmp_path / "index")) == [version, newer]
    # Other weights, other index.
    assert not np.allclose(IndexVersion.load(version).embeddings, IndexVersion.load(newer).embeddings)
    assert refresher.stats() == {"published": [version, newer], "failed": [], "skipped": 0}


def test_a_lagging_refresher_indexes_only_the_newest_export(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    for step in (10, 20, 30):
        place_export(tmp_path / "model", step, corpus["exports"][step // 10 % 2])
    refresher = make_refresher(corpus, tmp_path)

    version = refresher.refresh_once()
    assert version_step(version) == 30
    assert list_versions(str(tmp_path / "index")) == [version]
    assert refresher.stats() == {"published": [version], "failed": [], "skipped": 2}
    assert "skipping 2 older export(s) ['10', '20'] for step 30" in caplog.text
    assert "(staleness: 2 older export(s) skipped)" in caplog.text
    assert refresher.refresh_once() is None


def test_run_until_done_indexes_the_last_export_and_stops_when_training_is_done(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    place_export(tmp_path / "model", 10, corpus["exports"][0])
    finish_training(tmp_path / "model")

    stats = make_refresher(corpus, tmp_path, poll_seconds=0.1).run_until_done(max_seconds=MAX_SECONDS)
    assert [version_step(v) for v in stats["published"]] == [10]
    assert stats["failed"] == [] and stats["skipped"] == 0
    assert "no export is left to index; the refresher stops" in caplog.text


def test_run_until_done_picks_up_exports_written_while_it_waits(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    model_dir = tmp_path / "model"

    def trainer():
        time.sleep(1.0)
        place_export(model_dir, 50, corpus["exports"][1])
        finish_training(model_dir)

    writer = threading.Thread(target=trainer)
    writer.start()
    try:
        stats = make_refresher(corpus, tmp_path, poll_seconds=0.1).run_until_done(max_seconds=MAX_SECONDS)
    finally:
        writer.join()
    assert [version_step(v) for v in stats["published"]] == [50]
    assert "no export is left to index; the refresher stops" in caplog.text


def test_a_failed_refresh_is_logged_not_retried_and_a_newer_export_is_indexed(corpus, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    model_dir = tmp_path / "model"
    place_export(model_dir, 10, corpus["exports"][0])
    refresher = make_refresher(corpus, tmp_path, poll_seconds=0.1)
    good = refresher.refresh_once()

    corrupt = place_export(model_dir, 20, corpus["exports"][1])
    with open(os.path.join(corrupt, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    finish_training(model_dir)
    stats = refresher.run_until_done(max_seconds=MAX_SECONDS)  # Fails on export 20, then stops.
    assert stats == {"published": [good], "failed": [corrupt], "skipped": 0}
    assert latest_version(str(tmp_path / "index")) == good
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"Index refresh from embedder export {corrupt} failed" in warnings[0]
    assert f"stays on index version {good}" in warnings[0]
    assert "cannot load the SavedModel" in warnings[0]

    assert refresher.newest_unindexed_export() == corrupt
    assert refresher.refresh_once() is None  # Not retried.
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    newer = place_export(model_dir, 30, corpus["exports"][1])
    version = refresher.refresh_once()
    assert version_step(version) == 30
    assert IndexVersion.load(version).manifest["metadata"]["embedder_export"] == os.path.abspath(newer)
    assert refresher.stats() == {"published": [good, version], "failed": [corrupt], "skipped": 0}


def test_the_refresher_stops_when_the_trainer_is_gone(corpus, tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    started = time.monotonic()
    stats = make_refresher(corpus, tmp_path, poll_seconds=0.1, watch_pid=gone.pid).run_until_done(MAX_SECONDS)
    assert stats == {"published": [], "failed": [], "skipped": 0}
    assert time.monotonic() - started < 10
    assert f"The trainer (pid {gone.pid}) is gone" in caplog.text


def test_a_shared_dir_holds_the_export_and_its_shards_only_while_they_are_indexed(corpus, tmp_path, monkeypatch):
    # --shared_dir stands for the gs:// folder Dataflow's workers load the export from and write shards to.
    model_dir = tmp_path / "model"
    export = place_export(model_dir, 10, corpus["exports"][0])
    shared = tmp_path / "shared"
    seen = {}
    indexing = refresh.embed_and_index.embed_and_index

    def watched(blocks_dir, embedder_export, *args, **kwargs):
        seen.update(export=embedder_export, shards_dir=kwargs.get("shards_dir"),
                    files=sorted(str(p.relative_to(embedder_export)) for p in pathlib.Path(embedder_export).rglob("*")))
        return indexing(blocks_dir, embedder_export, *args, **kwargs)

    monkeypatch.setattr(refresh.embed_and_index, "embed_and_index", watched)
    stats = refresh.run([f"--model_dir={model_dir}", f"--blocks_dir={corpus['blocks_dir']}",
                         f"--index_root={tmp_path / 'index'}", "--config=tiny", "--once", f"--shared_dir={shared}"])
    assert seen["export"] == f"{shared}/embedder/10" and seen["shards_dir"] == f"{shared}/embedding_shards"
    assert seen["files"] == sorted(str(p.relative_to(export)) for p in pathlib.Path(export).rglob("*"))
    (version,) = stats["published"]
    # The version names the trainer's export, and holds what indexing it in place gives.
    assert IndexVersion.load(version).manifest["metadata"]["embedder_export"] == os.path.abspath(export)
    in_place = make_refresher(corpus, tmp_path / "in_place")
    in_place.model_dir = ModelDir(str(model_dir))
    np.testing.assert_allclose(IndexVersion.load(version).embeddings,
                               IndexVersion.load(in_place.refresh_once()).embeddings, atol=1e-6)
    assert list((shared / "embedder").iterdir()) == [] and list((shared / "embedding_shards").iterdir()) == []


def test_cli_refuses_a_bad_config(corpus, tmp_path, capsys):
    assert refresh.main([f"--model_dir={tmp_path / 'model'}", f"--blocks_dir={corpus['blocks_dir']}",
                         f"--index_root={tmp_path / 'index'}", "--config=tiny", "--override=index.nope=1"]) == 2
    assert "index.nope" in capsys.readouterr().err


def test_background_refresher_indexes_in_a_child_process_and_exits_after_training(corpus, tmp_path):
    model_dir = tmp_path / "model"
    place_export(model_dir, 70, corpus["exports"][0])
    finish_training(model_dir)
    log_path = tmp_path / "logs" / "refresher.log"
    child = refresh.start_background_refresher(str(model_dir), corpus["blocks_dir"], str(tmp_path / "index"),
                                               "tiny", ["index.keep_versions=2"], str(log_path), poll_seconds=0.2)
    try:
        returncode = child.wait(timeout=CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        pytest.fail(f"the refresher did not exit in {CHILD_TIMEOUT_SECONDS}s; its log:\n{log_path.read_text()}")
    log = log_path.read_text()
    assert returncode == 0, log
    version = latest_version(str(tmp_path / "index"))
    assert version_step(version) == 70
    assert f"published index version {version}" in log
    assert "refresher: 1 index version(s) published, 0 export(s) skipped while lagging, 0 failed" in log

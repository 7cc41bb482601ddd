"""Staging directories: a publisher killed mid-write leaves nothing behind once the next one starts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from realm_tf.artifacts import staging
from realm_tf.artifacts.index_version import list_versions
from realm_tf.configs import load_config
from realm_tf.retrieval.index_build import publish_index_version

from conftest import REPO

# Makes a staging directory beside argv[1] as a publisher would, says so, then hangs.
HANGING_PUBLISHER = """
import sys, time
from realm_tf.artifacts import staging
print(staging.stage_beside(sys.argv[1]), flush=True)
time.sleep(600)
"""


def _dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _rewrite_owner(path, **fields):
    owner_path = os.path.join(path, staging.OWNER_FILE)
    with open(owner_path, encoding="utf-8") as f:
        owner = json.load(f)
    owner.update(fields)
    with open(owner_path, "w", encoding="utf-8") as f:
        json.dump(owner, f)


def test_only_dead_owners_staging_is_removed(tmp_path):
    live = staging.make_staging_dir(str(tmp_path), "live")
    dead = staging.make_staging_dir(str(tmp_path), "dead")
    _rewrite_owner(dead, pid=_dead_pid())
    # The pid runs, but it is another process than the one that made the directory.
    reused = staging.make_staging_dir(str(tmp_path), "reused")
    _rewrite_owner(reused, pid_started=1)
    elsewhere_young = staging.make_staging_dir(str(tmp_path), "young")
    _rewrite_owner(elsewhere_young, host="another-host")
    elsewhere_old = staging.make_staging_dir(str(tmp_path), "old")
    _rewrite_owner(elsewhere_old, host="another-host")
    no_owner_old = staging.make_staging_dir(str(tmp_path), "ownerless")
    os.remove(os.path.join(no_owner_old, staging.OWNER_FILE))
    long_ago = time.time() - staging.STALE_AFTER_SECONDS - 60
    for path in (elsewhere_old, no_owner_old):
        os.utime(path, (long_ago, long_ago))
    (tmp_path / "1").mkdir()  # Not staging: never touched, however old.
    os.utime(tmp_path / "1", (long_ago, long_ago))
    removed = staging.remove_dead_staging(str(tmp_path))
    assert sorted(removed) == sorted([dead, reused, elsewhere_old, no_owner_old])
    assert sorted(os.listdir(tmp_path)) == sorted(["1", os.path.basename(live), os.path.basename(elsewhere_young)])


def test_staged_directory_publishes_without_its_owner_file_and_removes_itself_on_failure(tmp_path):
    target = tmp_path / "export" / "7"
    with staging.staged_directory(str(target)) as path:
        assert os.path.basename(path).startswith(".staging-7-")
        (tmp_path / path / "saved_model.pb").write_text("x")
    assert sorted(os.listdir(target)) == ["saved_model.pb"]
    with pytest.raises(RuntimeError):
        with staging.staged_directory(str(tmp_path / "export" / "8")):
            raise RuntimeError("the export failed")
    assert sorted(os.listdir(tmp_path / "export")) == ["7"]


@pytest.mark.parametrize("publisher", ["index_version", "staged_directory"])
def test_a_publisher_killed_mid_write_is_cleaned_up_by_the_next(tmp_path, publisher):
    root = tmp_path / "root"
    hanging = subprocess.Popen([sys.executable, "-c", HANGING_PUBLISHER, str(root / "target")], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        leftover = hanging.stdout.readline().strip()
        assert os.path.isdir(leftover)
        # While it lives, the next publisher leaves its directory alone.
        assert staging.remove_dead_staging(str(root)) == []
    finally:
        hanging.send_signal(signal.SIGKILL)
        hanging.wait()
    assert os.path.isdir(leftover)  # SIGKILL: nothing ran to remove it.
    if publisher == "index_version":
        config = load_config("tiny").index
        publish_index_version(str(root), np.ones([3, 4], np.float32), np.arange(3), config, {"step": 1})
        assert len(list_versions(str(root))) == 1
    else:
        with staging.staged_directory(str(root / "1")) as path:
            (tmp_path / path / "done").write_text("x")
    assert not os.path.exists(leftover)
    assert not [entry for entry in os.listdir(root) if entry.startswith(".")]

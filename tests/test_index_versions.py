import datetime
import json
import math
import os
import re
import threading
import time

import numpy as np
import pytest

from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError, latest_version, list_versions
from realm_tf.configs import IndexConfig
from realm_tf.retrieval import Searcher, publish_index_version, scann_parameters
from realm_tf.retrieval.index_build import MAX_AUTO_LEAVES_TO_SEARCH, MIN_TREE_AH_BLOCKS


def _random_index(n, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), np.arange(n, dtype=np.int64) * 3 + 1


def _visible_and_hidden(root):
    entries = sorted(os.listdir(root))
    return [e for e in entries if not e.startswith(".")], [e for e in entries if e.startswith(".")]


def test_scann_parameters_are_sized_to_the_corpus():
    config = IndexConfig()
    assert scann_parameters(config.exact_below - 1, config)["method"] == "brute_force"
    assert scann_parameters(1, IndexConfig(exact_below=0))["method"] == "brute_force"  # ScaNN cannot train AH.
    assert scann_parameters(MIN_TREE_AH_BLOCKS - 1, IndexConfig(exact_below=0))["method"] == "brute_force"

    params = scann_parameters(1_000_000, config)
    assert params == {
        "method": "tree_ah",
        "num_leaves": 1000,  # sqrt(N)
        "num_leaves_to_search": 100,  # a tenth of the leaves
        "training_sample_size": config.training_sample_size,
        "dims_per_block": 2,
        "anisotropic_quantization_threshold": pytest.approx(0.2),
        "reorder_num_neighbors": 1000,
        "reorder_dtype": "bfloat16",
        "spherical_tree": True,
    }
    # At REALM's 13.35M blocks a tenth of the 3,654 leaves would be 366: capped.
    realm = scann_parameters(13_353_718, config)
    assert (realm["num_leaves"], realm["num_leaves_to_search"]) == (3654, MAX_AUTO_LEAVES_TO_SEARCH)
    assert scann_parameters(13_353_718, IndexConfig(num_leaves_to_search=400))["num_leaves_to_search"] == 400
    small = scann_parameters(4000, IndexConfig(exact_below=0))
    assert (small["num_leaves"], small["num_leaves_to_search"], small["training_sample_size"]) == (63, 7, 4000)
    assert small["num_leaves_to_search"] == math.ceil(63 / 10)

    explicit = scann_parameters(
        50_000, IndexConfig(num_leaves=300, num_leaves_to_search=500, training_sample_size=1000))
    # Searching more leaves than exist, or more leaves than training points, is clamped.
    assert (explicit["num_leaves"], explicit["num_leaves_to_search"], explicit["training_sample_size"]) == (
        300, 300, 1000)
    assert scann_parameters(50_000, IndexConfig(num_leaves=5000, training_sample_size=1000))["num_leaves"] == 1000
    with pytest.raises(ValueError, match="num_blocks must be positive"):
        scann_parameters(0, config)


def test_published_version_is_complete_and_loads(tmp_path):
    embeddings, block_ids = _random_index(300)
    root = str(tmp_path / "index")
    metadata = {"embedder_export": "/exports/500", "step": 500, "blocks_dir": "/blocks"}
    path = publish_index_version(root, embeddings, block_ids, IndexConfig(), metadata)

    assert os.path.basename(path).endswith("-step0000000500")
    assert _visible_and_hidden(root) == ([os.path.basename(path)], [])  # No temporary left behind.
    assert sorted(os.listdir(path)) == ["block_ids.npy", "embeddings.npy", "manifest.json", "scann"]
    manifest = json.loads((tmp_path / "index" / os.path.basename(path) / "manifest.json").read_text())
    assert manifest["format"] == "realm_tf.index.v1"
    assert manifest["name"] == os.path.basename(path)
    assert (manifest["num_blocks"], manifest["dim"]) == (300, 16)
    assert manifest["metadata"] == metadata
    assert manifest["build"]["method"] == "brute_force"
    assert datetime.datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert set(manifest["scann_files_sha256"]) >= {"scann_assets.pbtxt", "dataset.npy"}

    version = IndexVersion.load(path)
    assert (version.path, version.name, version.num_blocks, version.dim) == (path, manifest["name"], 300, 16)
    assert version.manifest == manifest
    np.testing.assert_array_equal(version.embeddings, embeddings)
    np.testing.assert_array_equal(version.block_ids, block_ids)
    assert version.embeddings.dtype == np.float32 and version.block_ids.dtype == np.int64


def test_list_versions_sees_only_complete_versions_oldest_first(tmp_path):
    root = tmp_path / "index"
    assert list_versions(str(root)) == [] and latest_version(str(root)) is None
    embeddings, block_ids = _random_index(20)
    config = IndexConfig(keep_versions=5)
    paths = [publish_index_version(str(root), embeddings, block_ids, config, {"step": s}) for s in (100, 2000, 30)]
    # Hidden directories (in progress, being deleted) and directories without a manifest are not versions.
    (root / ".tmp-123").mkdir()
    (root / ".tmp-123" / "manifest.json").write_text("{}")
    (root / "9999999999-half-copied").mkdir()
    # By publication order, not step: steps of different runs do not compare.
    assert list_versions(str(root)) == paths
    assert latest_version(str(root)) == paths[2]
    with pytest.raises(IndexVersionError, match="already exists; versions are immutable"):
        publish_index_version(str(root), embeddings, block_ids, config, {}, name=os.path.basename(paths[0]))
    with pytest.raises(IndexVersionError, match="must be non-empty, not hidden"):
        publish_index_version(str(root), embeddings, block_ids, config, {}, name=".sneaky")


def test_pruning_keeps_the_newest_versions(tmp_path):
    root = str(tmp_path / "index")
    embeddings, block_ids = _random_index(20)
    config = IndexConfig(keep_versions=2)
    paths = [publish_index_version(root, embeddings, block_ids, config, {"step": s}) for s in range(1, 5)]
    assert list_versions(root) == paths[-2:]
    assert _visible_and_hidden(root)[1] == []  # Trash is deleted.
    # A trainer restarted from an older checkpoint publishes a lower step: versions sort
    # by publication time, so its new version is the latest.
    older = publish_index_version(root, embeddings, block_ids, config, {"step": 0})
    assert list_versions(root) == [paths[-1], older]
    with pytest.raises(ValueError, match="keep_versions must be at least 1"):
        publish_index_version(root, embeddings, block_ids, IndexConfig(keep_versions=0), {})


_GOOD_EMBEDDINGS, _GOOD_IDS = _random_index(10)


@pytest.mark.parametrize(
    "embeddings, block_ids, message",
    [
        (np.zeros((0, 16), np.float32), np.zeros((0,), np.int64), r"non-empty \[N, D\] array, got shape \(0, 16\)"),
        (_GOOD_EMBEDDINGS, _GOOD_IDS[:9], r"block_ids must have shape \[N\] = \(10,\).*got \(9,\)"),
        (_GOOD_EMBEDDINGS, np.array([5, 1, 2, 3, 5, 6, 7, 8, 9, 9]), r"2 duplicate block ids, e.g. \[5, 9\]"),
        (np.where(np.arange(10)[:, None] == 4, np.nan, _GOOD_EMBEDDINGS), _GOOD_IDS,
         r"embeddings of 1 blocks are not finite \(NaN or inf\), e.g. block id 13 at row 4"),
        (np.ones((10, 16), np.int32), _GOOD_IDS, "embeddings must be floating point, got dtype int32"),
        (_GOOD_EMBEDDINGS, _GOOD_IDS.astype(np.float32), "block_ids must be integers"),
        (_GOOD_EMBEDDINGS, _GOOD_IDS - 4, "block ids must be non-negative, got -3"),
    ],
    ids=["empty", "length-mismatch", "duplicate-ids", "nan", "int-embeddings", "float-ids", "negative-ids"],
)
def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, embeddings, block_ids, message):
    root = tmp_path / "index"
    with pytest.raises(IndexVersionError, match=message):
        publish_index_version(str(root), embeddings, block_ids, IndexConfig(), {"step": 1})
    assert not root.exists()


def test_non_json_metadata_is_refused(tmp_path):
    with pytest.raises(IndexVersionError, match="metadata is not JSON-serialisable"):
        publish_index_version(str(tmp_path), *_random_index(10), IndexConfig(), {"step": 1, "when": object()})


def _damage_manifest_missing(path):
    os.remove(os.path.join(path, "manifest.json"))


def _damage_manifest_not_json(path):
    with open(os.path.join(path, "manifest.json"), "w") as f:
        f.write('{"format": "realm_tf.index.v1", ')


def _damage_manifest_wrong_format(path):
    with open(os.path.join(path, "manifest.json"), "w") as f:
        json.dump({"format": "realm_tf.blocks.v1"}, f)


def _damage_embeddings_deleted(path):
    os.remove(os.path.join(path, "embeddings.npy"))


def _damage_embeddings_modified(path):
    embeddings = np.load(os.path.join(path, "embeddings.npy"))
    embeddings[3, 2] += 1.0
    np.save(os.path.join(path, "embeddings.npy"), embeddings)


def _damage_embeddings_truncated(path):
    embeddings = np.load(os.path.join(path, "embeddings.npy"))
    np.save(os.path.join(path, "embeddings.npy"), embeddings[:-1])


def _damage_embeddings_not_npy(path):
    with open(os.path.join(path, "embeddings.npy"), "wb") as f:
        f.write(b"not an array")


def _damage_scann_file(path):
    # ScaNN itself would crash the process on this file; the checksum catches it first.
    with open(os.path.join(path, "scann", "dataset.npy"), "wb") as f:
        f.write(b"garbage")


def _damage_scann_assets_missing(path):
    os.remove(os.path.join(path, "scann", "scann_assets.pbtxt"))


@pytest.mark.parametrize(
    "damage, file_name, message",
    [
        (_damage_manifest_missing, "manifest.json", "missing manifest; .* is not a complete index version"),
        (_damage_manifest_not_json, "manifest.json", "manifest is not valid JSON"),
        (_damage_manifest_wrong_format, "manifest.json", "format 'realm_tf.blocks.v1', expected 'realm_tf.index.v1'"),
        (_damage_embeddings_deleted, "embeddings.npy", "missing file of index version"),
        (_damage_embeddings_modified, "embeddings.npy", "checksum mismatch: sha256 [0-9a-f]{64}, manifest says"),
        (_damage_embeddings_truncated, "embeddings.npy",
         r"float32 \(29, 16\), but the manifest says float32 \(30, 16\)"),
        (_damage_embeddings_not_npy, "embeddings.npy", "unreadable"),
        (_damage_scann_file, "scann", r"ScaNN files differ from the manifest .*\['dataset.npy'\]"),
        (_damage_scann_assets_missing, "scann/scann_assets.pbtxt", "missing; the ScaNN searcher of .* is incomplete"),
    ],
    ids=lambda value: getattr(value, "__name__", "").replace("_damage_", "") or None,
)
def test_damaged_versions_raise_errors_naming_the_path_and_problem(tmp_path, damage, file_name, message):
    path = publish_index_version(str(tmp_path), *_random_index(30), IndexConfig(), {"step": 1})
    damage(path)
    with pytest.raises(IndexVersionError, match=message) as error:
        IndexVersion.load(path)
    assert str(error.value).startswith(os.path.join(path, file_name) + ":")


def test_verify_false_skips_the_checksums_but_not_the_structure(tmp_path):
    path = publish_index_version(str(tmp_path), *_random_index(30), IndexConfig(), {"step": 1})
    _damage_embeddings_modified(path)
    assert IndexVersion.load(path, verify=False).embeddings[3, 2] == np.load(os.path.join(path, "embeddings.npy"))[3, 2]
    _damage_embeddings_truncated(path)
    with pytest.raises(IndexVersionError, match="but the manifest says"):
        IndexVersion.load(path, verify=False)


def test_a_missing_directory_and_an_unloadable_searcher_raise(tmp_path):
    with pytest.raises(IndexVersionError, match=re.escape(f"{tmp_path / 'nope'}: no such index version directory")):
        IndexVersion.load(str(tmp_path / "nope"))
    path = publish_index_version(str(tmp_path), *_random_index(30), IndexConfig(), {"step": 1})
    os.remove(os.path.join(path, "scann", "scann_config.pb"))
    version = IndexVersion.load(path, verify=False)
    with pytest.raises(IndexVersionError, match=r"/scann: cannot load the ScaNN searcher: .*scann_config.pb"):
        version.searcher  # noqa: B018


def test_readers_never_see_a_partial_version_while_versions_are_published(tmp_path):
    root = str(tmp_path / "index")
    num_publishes = 6
    config = IndexConfig(keep_versions=2)
    stop = threading.Event()
    loaded, failures = [], []
    query = np.ones((1, 16), np.float32)

    def read():
        # Bounded in time, not in tries: before the first publish each try is a failed
        # listdir, and 100,000 of those could end before a slow first publish.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if stop.is_set():
                return
            path = latest_version(root)
            if path is None:
                continue
            try:
                version = IndexVersion.load(path, verify=True)
                ids, _ = Searcher(version).search(query, 3)
                loaded.append((path, version.num_blocks, version.manifest["embeddings_sha256"], ids))
            except IndexVersionError as e:
                failures.append((path, e))

    reader = threading.Thread(target=read)
    reader.start()
    published = {}
    try:
        for step in range(num_publishes):
            # Each version has its own size, so a mix of two versions cannot pass as one.
            embeddings, block_ids = _random_index(200 + 10 * step, seed=step)
            path = publish_index_version(root, embeddings, block_ids, config, {"step": step})
            published[path] = (len(embeddings), IndexVersion.load(path).manifest["embeddings_sha256"])
    finally:
        # On a busy machine the publisher can finish before the reader's first load; the
        # newest version stays, so give the reader time to see at least that one.
        deadline = time.monotonic() + 30
        while not loaded and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        reader.join(timeout=60)
    assert not reader.is_alive()

    assert loaded, "the reader never loaded a version"
    for path, num_blocks, sha, ids in loaded:
        assert (num_blocks, sha) == published[path]
        assert ids.shape == (1, 3) and (ids >= 0).all()
    # The one allowed failure: a version pruned (keep_versions=2) between the reader
    # finding it and opening it. It is then gone entirely, never half there.
    for path, error in failures:
        assert path in published and not os.path.exists(path), error
    assert list_versions(root) == sorted(published)[-2:]
    assert _visible_and_hidden(root)[1] == []


def test_the_build_drops_the_mapped_embeddings_pages_it_has_read(tmp_path):
    # ScaNN copies the embeddings; their mapped pages need not stay resident beside the copy.
    import time

    from realm_tf.retrieval.index_build import _dropping_mapped_pages, _file_mapping

    def rss_bytes():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(1 << 19, 128)).astype(np.float32))  # 256 MiB.
    mapped = np.load(tmp_path / "e.npy", mmap_mode="r")
    assert _file_mapping(mapped) is not None and _file_mapping(np.ascontiguousarray(mapped)[10:]) is not None
    assert _file_mapping(np.zeros(3)) is None
    with _dropping_mapped_pages(np.zeros(3)):  # Nothing mapped: nothing to do.
        pass
    total = float(mapped.sum(dtype=np.float64))  # Every page read: resident.
    before = rss_bytes()
    with _dropping_mapped_pages(mapped, interval_seconds=0.05):
        time.sleep(0.3)
        inside = rss_bytes()
        assert float(mapped.sum(dtype=np.float64)) == total  # Read again from the file, the same.
    assert before - inside > 200 * 2**20

"""Index versions: immutable directories of block embeddings and their ScaNN searcher.

A version is published under an index root and never changed afterwards:

    root/
      01718000000000000000-step0000000500/   one version (names sort by publication time)
        manifest.json                   written last; its presence marks a complete version
        embeddings.npy                  float32 [N, D]; row i embeds block block_ids[i]
        block_ids.npy                   int64 [N], non-negative, unique
        scann/                          `ScannSearcher.serialize` output (relative paths)
        lexical/                        optional: BM25 postings of the same blocks, rows as
                                        block_ids (`realm_tf.retrieval.lexical_index`)
        sentences/                      optional: vectors of each block's sentences, rows as
                                        block_ids (`realm_tf.retrieval.sentence_vectors`)
      .staging-<name>-<random>/         a version being built (hidden from readers; removed
                                        by the next publisher once its owner is dead)
      .trash-<uuid>/                    a pruned version being deleted (hidden from readers)

The publisher builds a version in a hidden temporary directory and renames it into
place, so a reader listing the root sees a version whole or not at all (the trainer
swaps indexes while the refresher publishes them). Pruning renames a
version out of sight before deleting it, for the same reason.
"""

import datetime
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import realm_tf  # First: TF_USE_LEGACY_KERAS before scann imports TensorFlow.
from realm_tf.artifacts import staging
from realm_tf.errors import RealmError

MANIFEST_NAME = "manifest.json"
EMBEDDINGS_NAME = "embeddings.npy"
BLOCK_IDS_NAME = "block_ids.npy"
SCANN_DIR = "scann"
LEXICAL_DIR = "lexical"
SENTENCES_DIR = "sentences"
INDEX_FORMAT = "realm_tf.index.v1"
_CHECK_ROWS = 1 << 18

_MANIFEST_FIELDS = (
    "format", "name", "created_at", "num_blocks", "dim", "embeddings_sha256",
    "block_ids_sha256", "scann_files_sha256", "build", "metadata",
)


class IndexVersionError(RealmError, ValueError):
    """An index version directory (or its inputs) that is missing, partial or corrupt."""


def scann_pybind():
    # Imported on first use: `import scann` imports TensorFlow (seconds), which listing
    # versions does not need.
    from scann import scann_ops_pybind

    return scann_ops_pybind


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dir_checksums(directory: str) -> Dict[str, str]:
    """sha256 of every file in `directory`, by name: ScaNN does not check its own files,
    and a damaged one can crash the process that loads it."""
    return {name: file_sha256(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}


def _validate_inputs(embeddings, block_ids):
    """Checks the arrays to publish; returns them as C-contiguous float32 [N, D], int64 [N]."""
    embeddings = np.asarray(embeddings)
    block_ids = np.asarray(block_ids)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise IndexVersionError(f"embeddings must be a non-empty [N, D] array, got shape {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise IndexVersionError(f"embeddings must be floating point, got dtype {embeddings.dtype}")
    if block_ids.shape != (embeddings.shape[0],):
        raise IndexVersionError(
            f"block_ids must have shape [N] = ({embeddings.shape[0]},) to match the embeddings, "
            f"got {block_ids.shape}"
        )
    if not np.issubdtype(block_ids.dtype, np.integer):
        raise IndexVersionError(f"block_ids must be integers, got dtype {block_ids.dtype}")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    block_ids = np.ascontiguousarray(block_ids, dtype=np.int64)
    # Chunk by chunk: a whole [N, D] boolean mask is 1.7 GB at Wikipedia's 13.35M x 128.
    bad_rows = np.concatenate([np.flatnonzero(~np.isfinite(embeddings[start:start + _CHECK_ROWS]).all(axis=1)) + start
                               for start in range(0, len(embeddings), _CHECK_ROWS)])
    if bad_rows.size:
        raise IndexVersionError(
            f"embeddings of {bad_rows.size} blocks are not finite (NaN or inf), e.g. block id "
            f"{block_ids[bad_rows[0]]} at row {bad_rows[0]}"
        )
    # -1 pads search results, so it cannot be a block id (block ids are non-negative).
    if (block_ids < 0).any():
        raise IndexVersionError(f"block ids must be non-negative, got {block_ids[block_ids < 0][0]}")
    unique, counts = np.unique(block_ids, return_counts=True)
    if unique.size != block_ids.size:
        duplicated = unique[counts > 1]
        raise IndexVersionError(
            f"{duplicated.size} duplicate block ids, e.g. {duplicated[:5].tolist()}"
        )
    return embeddings, block_ids


def _fsync_tree(path: str) -> None:
    # The rename publishes the directory entry; without this a crash could leave a
    # published version whose files were never written to disk.
    for directory, _, files in os.walk(path):
        for name in files + ["."]:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_index_version(
    root: str,
    embeddings: np.ndarray,
    block_ids: np.ndarray,
    build: Dict[str, Any],
    write_searcher: Callable[[np.ndarray, str], None],
    metadata: Dict[str, Any],
    keep_versions: int,
    name: Optional[str] = None,
    write_lexical: Optional[Callable[[str], None]] = None,
    write_sentences: Optional[Callable[[str], None]] = None,
) -> str:
    """Writes an index version and publishes it atomically as `root/<name>`.

    Everything is written into a hidden `root/.staging-*` directory (realm_tf.artifacts.staging),
    the manifest last, and then renamed to `root/<name>`: rename is atomic on POSIX filesystems
    (local disks, NFS within a server), so readers see the version whole or not at
    all. Object stores (GCS) have no atomic directory rename; publish to local disk
    or a POSIX mount. Afterwards older versions are pruned to keep the
    `keep_versions` newest by name (never the one just published).

    Args:
      root: the index root; created if missing.
      embeddings: float [N, D], finite; stored as float32.
      block_ids: int [N], unique, non-negative; row i of `embeddings` embeds
        block `block_ids[i]`.
      build: the ScaNN build parameters, recorded as the manifest's "build".
      write_searcher: `write_searcher(embeddings, scann_dir)` serializes the searcher
        built with `build` into `scann_dir` (relative asset paths), e.g.
        `realm_tf.retrieval.index_build`'s.
      metadata: JSON-serialisable facts about the version, e.g. {"embedder_export":
        path, "step": 500, "blocks_dir": path}; stored under "metadata".
      keep_versions: how many versions to keep, at least 1.
      name: the version's directory name; default f"{time_ns:020d}-step{step:010d}" with
        step = metadata.get("step", 0). Names sort by publication time, so the latest
        version is the one published last: steps of different runs (an ICT warm start,
        then pre-training from step 0) do not compare, and a resumed run's new
        versions must win over those of the run it replaces.
      write_lexical: `write_lexical(lexical_dir)` writes a lexical index of the same blocks
        (rows as `block_ids`) into `lexical_dir`, e.g. `LexicalIndex.save`; none if None.
      write_sentences: `write_sentences(sentences_dir)` writes the blocks' sentence vectors
        (rows as `block_ids`), e.g. `SentenceVectors.save`; none if None.

    Returns:
      The path of the published version.

    Raises:
      IndexVersionError: bad inputs, or a version of that name already exists.
    """
    embeddings, block_ids = _validate_inputs(embeddings, block_ids)
    if not isinstance(metadata, dict):
        raise IndexVersionError(f"metadata must be a dict, got {type(metadata).__name__}")
    if keep_versions < 1:
        raise ValueError(f"index.keep_versions must be at least 1, got {keep_versions}")
    if name is None:
        step = metadata.get("step", 0)
        if not isinstance(step, int) or step < 0:
            raise IndexVersionError(f"metadata['step'] must be a non-negative int, got {step!r}")
        name = f"{time.time_ns():020d}-step{step:010d}"
    if not name or name.startswith(".") or os.sep in name:
        raise IndexVersionError(f"version name {name!r} must be non-empty, not hidden and contain no {os.sep!r}")
    path = os.path.join(root, name)
    if os.path.exists(path):
        raise IndexVersionError(f"{path}: an index version of that name already exists; versions are immutable")
    manifest = {
        "format": INDEX_FORMAT,
        "name": name,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "created_by": f"realm_tf {realm_tf.__version__}",
        "num_blocks": int(embeddings.shape[0]),
        "dim": int(embeddings.shape[1]),
        "embeddings_sha256": _sha256(embeddings),
        "block_ids_sha256": _sha256(block_ids),
        "build": build,
        "metadata": metadata,
    }
    try:
        json.dumps(metadata)  # Before the build, which can take hours.
    except (TypeError, ValueError) as e:
        raise IndexVersionError(f"metadata is not JSON-serialisable: {e}") from e

    tmp = staging.stage_beside(path)
    scann_dir = os.path.join(tmp, SCANN_DIR)
    os.makedirs(scann_dir)
    try:
        np.save(os.path.join(tmp, EMBEDDINGS_NAME), embeddings)
        np.save(os.path.join(tmp, BLOCK_IDS_NAME), block_ids)
        write_searcher(embeddings, scann_dir)
        manifest["scann_files_sha256"] = _dir_checksums(scann_dir)
        if write_lexical is not None:
            write_lexical(os.path.join(tmp, LEXICAL_DIR))
            manifest["lexical_files_sha256"] = _dir_checksums(os.path.join(tmp, LEXICAL_DIR))
        if write_sentences is not None:
            write_sentences(os.path.join(tmp, SENTENCES_DIR))
            manifest["sentence_files_sha256"] = _dir_checksums(os.path.join(tmp, SENTENCES_DIR))
        with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _fsync_tree(tmp)
        staging.publish(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logging.info("Published index version %s (%d blocks, %s)", path, len(embeddings), build["method"])
    _prune(root, keep_versions, keep=path)
    return path


def _prune(root: str, keep_versions: int, keep: str) -> None:
    """Keeps `keep` and the `keep_versions - 1` newest other versions; deletes the rest."""
    versions = list_versions(root)
    if versions[-1] != keep:
        logging.warning(
            "Published %s, but %s sorts after it and stays the latest version", keep, versions[-1]
        )
    others = [version for version in versions if version != keep]
    for version in others[: max(0, len(others) - (keep_versions - 1))]:
        trash = os.path.join(root, f".trash-{uuid.uuid4().hex}")
        try:
            os.rename(version, trash)
        except FileNotFoundError:
            continue  # Pruned by another publisher.
        shutil.rmtree(trash, ignore_errors=True)
        logging.info("Pruned index version %s", version)
    # Trash left behind by a publisher that died mid-delete; nobody reads it.
    for entry in os.listdir(root):
        if entry.startswith(".trash-"):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def list_versions(root: str) -> List[str]:
    """Paths of the complete versions under `root` (visible directories holding a
    manifest), oldest first by name; [] if `root` does not exist."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return []
    return [
        os.path.join(root, entry)
        for entry in sorted(entries)
        if not entry.startswith(".") and os.path.isfile(os.path.join(root, entry, MANIFEST_NAME))
    ]


def embedder_export_of(path: str) -> Optional[str]:
    """The embedder export the version at `path` was built with; None if it had none or
    is gone (pruned since), which its users (the QA export's consistency check) allow."""
    try:
        with open(os.path.join(path, MANIFEST_NAME), encoding="utf-8") as f:
            return json.load(f).get("metadata", {}).get("embedder_export") or None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def latest_version(root: str) -> Optional[str]:
    """The newest complete version under `root`, or None if there is none."""
    versions = list_versions(root)
    return versions[-1] if versions else None


def resolve_version(path_or_root: str) -> str:
    """`path_or_root` if it is a version (holds a manifest), else the newest version under it.

    Raises:
      IndexVersionError: when it is neither.
    """
    if os.path.isfile(os.path.join(path_or_root, MANIFEST_NAME)):
        return path_or_root
    path = latest_version(path_or_root)
    if path is None:
        raise IndexVersionError(
            f"{path_or_root}: neither an index version (no {MANIFEST_NAME}) nor an index root holding one; "
            "build one with python -m beam_pipelines.embed_and_index"
        )
    return path


class IndexVersion:
    """One loaded index version.

    Attributes:
      path: the version directory.
      manifest: the parsed manifest.json.
      embeddings: float32 [N, D], memory-mapped read-only.
      block_ids: int64 [N], memory-mapped read-only; row i of `embeddings` is block_ids[i].
      searcher: the ScaNN searcher, loaded on first use (`scann_ops_pybind.ScannSearcher`).
    """

    def __init__(self, path: str, manifest: Dict[str, Any], embeddings: np.ndarray, block_ids: np.ndarray):
        self.path = path
        self.manifest = manifest
        self.embeddings = embeddings
        self.block_ids = block_ids
        self._searcher = None
        self._searcher_lock = threading.Lock()

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    @property
    def num_blocks(self) -> int:
        return int(self.manifest["num_blocks"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def build(self) -> Dict[str, Any]:
        """The ScaNN build parameters it was built with (`index_build.scann_parameters`)."""
        return self.manifest["build"]

    @property
    def metadata(self) -> Dict[str, Any]:
        """What its publisher recorded: "step", "embedder_export", "blocks_dir", ..."""
        return self.manifest["metadata"]

    @property
    def step(self) -> int:
        """The training step of the embedder it was built with (0 for imported embeddings)."""
        return int(self.metadata.get("step", 0))

    @property
    def lexical_dir(self) -> Optional[str]:
        """Its lexical index's directory (`realm_tf.retrieval.lexical_index`), None if it has none."""
        return os.path.join(self.path, LEXICAL_DIR) if "lexical_files_sha256" in self.manifest else None

    @property
    def sentences_dir(self) -> Optional[str]:
        """Its sentence vectors' directory (`realm_tf.retrieval.sentence_vectors`), None if it has none."""
        return os.path.join(self.path, SENTENCES_DIR) if "sentence_files_sha256" in self.manifest else None

    @property
    def embedder_export(self) -> str:
        """The embedder export it was built with; "" for embeddings imported from a checkpoint."""
        return str(self.metadata.get("embedder_export") or "")

    @classmethod
    def load(cls, path: str, verify: bool = True) -> "IndexVersion":
        """Opens the version at `path`, checking that it is complete and consistent.

        With `verify`, also recomputes the sha256 of the embeddings, the block ids,
        the ScaNN files and those of the lexical index and sentence vectors it has (reads everything once: about 14 GB for 13M x 128 blocks).

        Raises:
          IndexVersionError: naming the path and what is missing or wrong.
        """
        if not os.path.isdir(path):
            raise IndexVersionError(f"{path}: no such index version directory")
        manifest_path = os.path.join(path, MANIFEST_NAME)
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
        except FileNotFoundError:
            raise IndexVersionError(
                f"{manifest_path}: missing manifest; {path} is not a complete index version"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexVersionError(f"{manifest_path}: manifest is not valid JSON: {e}") from e
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise IndexVersionError(f"{manifest_path}: format {found!r}, expected {INDEX_FORMAT!r}")
        missing = [field for field in _MANIFEST_FIELDS if field not in manifest]
        if missing:
            raise IndexVersionError(f"{manifest_path}: manifest lacks fields {missing}")

        expected = {
            EMBEDDINGS_NAME: (np.float32, (manifest["num_blocks"], manifest["dim"]), "embeddings_sha256"),
            BLOCK_IDS_NAME: (np.int64, (manifest["num_blocks"],), "block_ids_sha256"),
        }
        arrays = {}
        for file_name, (dtype, shape, checksum_field) in expected.items():
            file_path = os.path.join(path, file_name)
            try:
                array = np.load(file_path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise IndexVersionError(f"{file_path}: missing file of index version {path}") from None
            except (OSError, ValueError) as e:
                raise IndexVersionError(f"{file_path}: unreadable: {e}") from e
            if array.dtype != dtype or array.shape != tuple(shape):
                raise IndexVersionError(
                    f"{file_path}: {array.dtype} {array.shape}, but the manifest says "
                    f"{np.dtype(dtype)} {tuple(shape)}"
                )
            if verify:
                checksum = _sha256(array)
                if checksum != manifest[checksum_field]:
                    raise IndexVersionError(
                        f"{file_path}: checksum mismatch: sha256 {checksum}, manifest says "
                        f"{manifest[checksum_field]}; the file was modified or damaged"
                    )
            arrays[file_name] = array
        scann_dir = os.path.join(path, SCANN_DIR)
        assets = os.path.join(scann_dir, "scann_assets.pbtxt")
        if not os.path.isfile(assets):
            raise IndexVersionError(f"{assets}: missing; the ScaNN searcher of {path} is incomplete")
        if verify:
            checked = [(scann_dir, "scann_files_sha256", "ScaNN")]
            if "lexical_files_sha256" in manifest:
                checked.append((os.path.join(path, LEXICAL_DIR), "lexical_files_sha256", "lexical index"))
            if "sentence_files_sha256" in manifest:
                checked.append((os.path.join(path, SENTENCES_DIR), "sentence_files_sha256", "sentence vectors"))
            for directory, field, what in checked:
                expected_files = manifest[field]
                found_files = _dir_checksums(directory) if os.path.isdir(directory) else {}
                if found_files != expected_files:
                    differ = sorted(set(found_files.items()) ^ set(expected_files.items()))
                    raise IndexVersionError(
                        f"{directory}: {what} files differ from the manifest (missing, extra or "
                        f"checksum mismatch): {sorted({name for name, _ in differ})}"
                    )
        return cls(path, manifest, arrays[EMBEDDINGS_NAME], arrays[BLOCK_IDS_NAME])

    @property
    def searcher(self):
        """The ScaNN searcher (loaded once, thread-safe); row indices refer to `embeddings`."""
        with self._searcher_lock:
            if self._searcher is None:
                scann_dir = os.path.join(self.path, SCANN_DIR)
                try:
                    # No back-compat shim: it would write into this immutable directory.
                    self._searcher = scann_pybind().load_searcher(scann_dir, assets_backcompat_shim=False)
                except (OSError, ValueError, RuntimeError) as e:
                    raise IndexVersionError(f"{scann_dir}: cannot load the ScaNN searcher: {e}") from e
            return self._searcher

    def __repr__(self) -> str:
        return f"IndexVersion({self.path!r}, num_blocks={self.num_blocks}, dim={self.dim})"

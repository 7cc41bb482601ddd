"""Building an index version: ScaNN's parameters for a corpus, and the build and publish.

The version's files and their publication are `realm_tf.artifacts.index_version`'s; this
module decides how the ScaNN searcher inside it is built, from the `IndexConfig`, so the
searcher of a version and the QA export's ScaNN layer search alike.
"""

import contextlib
import math
import mmap
import threading
from typing import Any, Dict, Optional

import numpy as np

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before scann imports TensorFlow)
from realm_tf.artifacts.index_version import scann_pybind, write_index_version
from realm_tf.configs import IndexConfig

# Asymmetric hashing trains 16 centres per block of dimensions, so ScaNN refuses fewer
# training points than that; and a tree over a few hundred blocks saves nothing over
# scoring them all. Below this many blocks the index is brute force whatever the config.
MIN_TREE_AH_BLOCKS = 256
# The most leaves searched when the config leaves it to the corpus. At REALM's 13.35M
# blocks (3,654 leaves; benchmarks/results/scale.json, bfloat16 re-scoring) a tenth of them,
# 366, took 3.4 ms a query for recall@10 0.973 of exact; 150 took 1.6 ms for 0.970 and 100
# 1.1 ms for 0.969 (in float32, an earlier run: 366 6.4 ms for 0.983, 100 2.1 ms for 0.979).
# Past about 150 leaves the re-scoring, not the leaves, limits recall.
MAX_AUTO_LEAVES_TO_SEARCH = 150


def scann_parameters(num_blocks: int, config: IndexConfig) -> Dict[str, Any]:
    """The ScaNN build parameters for `num_blocks` blocks; recorded in the manifest.

    Below `max(config.exact_below, MIN_TREE_AH_BLOCKS)` blocks: brute force, exact and
    fast enough (a 20k x 128 float32 matmul is ~5 MFLOP per query). Otherwise a k-means
    tree with asymmetric hashing (AH) inside the searched leaves and exact re-scoring of
    the best `reorder_num_neighbors`, ScaNN's recommended setup for MIPS:

    - num_leaves: `config.num_leaves`, or round(sqrt(num_blocks)) when 0, so that a leaf
      holds about as many blocks as there are leaves (ScaNN's rule of thumb); never more
      than the training sample.
    - num_leaves_to_search: `config.num_leaves_to_search`, or when 0 ceil(num_leaves / 10)
      (about a tenth of the corpus scored with AH) up to `MAX_AUTO_LEAVES_TO_SEARCH`.
      Clamped to [1, num_leaves].
    - training_sample_size: min(num_blocks, config.training_sample_size), used for both
      the tree's k-means and the AH codebooks.
    - dims_per_block, anisotropic_quantization_threshold, reorder_num_neighbors,
      reorder_dtype: as configured (reorder 0 means no re-scoring).
    - spherical_tree: always True. Spherical k-means partitions by direction, which is
      what an inner product ranks by; on clustered synthetic 128-d data (4k blocks,
      7 of 63 leaves searched) it gave recall@10 0.97-1.0 against 0.84-0.96 for
      ScaNN's default Euclidean k-means.

    Returns:
      A dict with keys method ("brute_force" or "tree_ah"), num_leaves,
      num_leaves_to_search, training_sample_size, dims_per_block,
      anisotropic_quantization_threshold, reorder_num_neighbors, reorder_dtype,
      spherical_tree; the tree and AH keys are None for brute force.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be positive, got {num_blocks}")
    params: Dict[str, Any] = {
        "method": "brute_force",
        "num_leaves": None,
        "num_leaves_to_search": None,
        "training_sample_size": None,
        "dims_per_block": None,
        "anisotropic_quantization_threshold": None,
        "reorder_num_neighbors": None,
        "reorder_dtype": None,
        "spherical_tree": None,
    }
    if num_blocks < max(config.exact_below, MIN_TREE_AH_BLOCKS):
        return params
    training_sample_size = min(num_blocks, config.training_sample_size)
    num_leaves = min(config.num_leaves or max(1, round(math.sqrt(num_blocks))), training_sample_size)
    to_search = config.num_leaves_to_search or min(math.ceil(num_leaves / 10), MAX_AUTO_LEAVES_TO_SEARCH)
    params.update(
        method="tree_ah",
        num_leaves=num_leaves,
        num_leaves_to_search=min(max(1, to_search), num_leaves),
        training_sample_size=training_sample_size,
        dims_per_block=config.dims_per_block,
        anisotropic_quantization_threshold=config.anisotropic_quantization_threshold,
        reorder_num_neighbors=config.reorder_num_neighbors,
        reorder_dtype=config.reorder_dtype,
        spherical_tree=True,
    )
    return params


def configured_scann_builder(builder, params: Dict[str, Any]):
    """A ScaNN builder set up as `params` say (an index version's `manifest["build"]`).

    `builder` is what `builder(embeddings, k, "dot_product")` of ScaNN's pybind or TF-ops
    module returned; the caller builds it (the two `build()`s take different arguments), so
    the host-side searcher and the QA export's ScaNN layer search alike.
    """
    if params["method"] == "brute_force":
        return builder.score_brute_force()
    builder = builder.tree(
        num_leaves=params["num_leaves"],
        num_leaves_to_search=params["num_leaves_to_search"],
        training_sample_size=params["training_sample_size"],
        spherical=params["spherical_tree"],
    ).score_ah(
        params["dims_per_block"],
        anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"],
        training_sample_size=params["training_sample_size"],
    )
    if params["reorder_num_neighbors"]:
        from scann.scann_ops.py.scann_builder import ReorderType

        builder = builder.reorder(params["reorder_num_neighbors"], quantize=ReorderType[reorder_dtype(params).upper()])
    return builder


def reorder_dtype(params: Dict[str, Any]) -> str:
    """The dtype of the copy a version's searcher re-scores from (its `manifest["build"]`);
    versions published before `index.reorder_dtype` existed re-scored in float32."""
    return params.get("reorder_dtype") or "float32"


def _build_scann(embeddings: np.ndarray, params: Dict[str, Any]):
    """A ScaNN searcher over `embeddings` (float32 [N, D]) built with `params`."""
    with _dropping_mapped_pages(embeddings):
        return configured_scann_builder(scann_pybind().builder(embeddings, min(10, len(embeddings)), "dot_product"),
                                        params).build()


def _file_mapping(array: np.ndarray) -> Optional[mmap.mmap]:
    """The memory map a (view of a) `np.memmap` reads from, or None for an array in memory."""
    while array is not None:
        if isinstance(getattr(array, "_mmap", None), mmap.mmap):
            return array._mmap
        array = getattr(array, "base", None)
    return None


@contextlib.contextmanager
def _dropping_mapped_pages(array: np.ndarray, interval_seconds: float = 1.0):
    """While the block runs, drops the pages of `array`'s file mapping from this process's
    resident memory every `interval_seconds` (madvise MADV_DONTNEED; a page touched again is
    read again from the file, so readers see the same data).

    ScaNN builds from its own copy of the embeddings, and releases the GIL while it does: the
    mapped pages it has copied (6.4 GiB at 13.35M x 128, all read once by the checksums) would
    otherwise stay resident beside that copy for the whole build.
    """
    mapping = _file_mapping(array)
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        yield
        return
    done = threading.Event()

    def drop():
        while True:
            mapping.madvise(mmap.MADV_DONTNEED)
            if done.wait(interval_seconds):
                return

    thread = threading.Thread(target=drop, name="drop-mapped-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def publish_index_version(root: str, embeddings: np.ndarray, block_ids: np.ndarray, config: IndexConfig,
                          metadata: Dict[str, Any], name: Optional[str] = None, lexical_index=None,
                          sentence_vectors=None) -> str:
    """Builds the ScaNN searcher `config` calls for and publishes the version atomically
    as `root/<name>` (`realm_tf.artifacts.index_version.write_index_version`: the
    arguments, the naming and the pruning to `config.keep_versions` are as there), with
    `lexical_index` (a `LexicalIndex` whose rows are `block_ids`) and `sentence_vectors`
    (a `SentenceVectors` of the same rows) beside it if given.

    Returns:
      The path of the published version.
    """
    if lexical_index is not None and not np.array_equal(lexical_index.block_ids, block_ids):
        raise ValueError("the lexical index's rows must be the version's block_ids, in order")
    if sentence_vectors is not None and sentence_vectors.num_blocks != len(block_ids):
        raise ValueError(f"sentence vectors of {sentence_vectors.num_blocks} blocks for a version of {len(block_ids)}")
    params = scann_parameters(len(embeddings), config) if len(embeddings) else None

    def write_searcher(checked: np.ndarray, scann_dir: str) -> None:
        # Relative asset paths: absolute ones would point into the staging directory.
        _build_scann(checked, params).serialize(scann_dir, relative_path=True)

    return write_index_version(root, embeddings, block_ids, params, write_searcher, metadata,
                               config.keep_versions, name=name,
                               write_lexical=lexical_index.save if lexical_index is not None else None,
                               write_sentences=sentence_vectors.save if sentence_vectors is not None else None)

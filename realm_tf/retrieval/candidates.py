"""Candidates for REALM pre-training, chosen on the host from the newest index version.

`IndexWatcher` holds the newest complete index version under an index root together
with the embedder export it was built with (whose query tower embeds the queries for
the search, as REALM's stale index requires). A background thread polls the root and
loads a newer version completely before swapping it in, so the input pipeline never
waits for a load and never sees half of one; a version that fails to load leaves the
watcher on its last good one, with a warning.
"""

import dataclasses
import logging
import threading
from realm_tf.artifacts.index_version import IndexVersion, IndexVersionError, latest_version
from realm_tf.retrieval.embedder_export import EmbedderExport
from realm_tf.retrieval.searcher import Searcher

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoadedIndex:
    """One index version ready to search: its path, the training step of its export,
    the searcher, and the export whose query tower matches its block embeddings."""

    path: str
    step: int
    searcher: Searcher
    export: EmbedderExport


def load_index(path: str, method: str = "scann") -> LoadedIndex:
    index = IndexVersion.load(path, verify=False)
    if not index.embedder_export:
        raise IndexVersionError(f"{path}: built from imported embeddings, with no embedder export to embed queries")
    return LoadedIndex(path, index.step, Searcher(index, method=method), EmbedderExport.load(index.embedder_export))


class IndexWatcher:
    """The newest index version under `index_root`, swapped in as new ones are published.

    Args:
      index_root: where index versions are published (beam_pipelines.embed_and_index).
      poll_seconds: how often the background thread looks for a newer version; 0
        disables the thread (call `poll()` yourself).
      method: "scann" or "exact".
    """

    def __init__(self, index_root: str, poll_seconds: float = 5.0, method: str = "scann"):
        self.index_root = index_root
        self.method = method
        path = latest_version(index_root)
        if path is None:
            raise IndexVersionError(
                f"{index_root}: no index version; build one first with "
                "python -m beam_pipelines.embed_and_index (e.g. from the ICT embedder export)"
            )
        self._current = load_index(path, method)
        self._failed = set()
        self._stop = threading.Event()
        self._thread = None
        if poll_seconds > 0:
            self._thread = threading.Thread(target=self._watch, args=(poll_seconds,), daemon=True,
                                            name="index-watcher")
            self._thread.start()

    @property
    def current(self) -> LoadedIndex:
        return self._current

    def poll(self) -> bool:
        """Loads and swaps in a newer version if there is one; returns whether it did."""
        path = latest_version(self.index_root)
        if path is None or path == self._current.path or path in self._failed:
            return False
        try:
            loaded = load_index(path, self.method)
        except Exception as e:  # A bad version must not stop training: keep the last good one.
            self._failed.add(path)
            logger.warning("index version %s failed to load (%s); staying on %s", path, e, self._current.path)
            return False
        self._current = loaded  # One reference assignment: readers see the old or the new, whole.
        logger.info("swapped in index version %s (embedder step %d)", path, loaded.step)
        return True

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            self.poll()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

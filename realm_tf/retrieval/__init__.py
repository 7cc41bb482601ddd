"""Retrieval: building index versions, searching them, and the embedder behind them.

`publish_index_version` builds a version's ScaNN searcher as the `IndexConfig` says and
publishes it (the files are `realm_tf.artifacts.index_version`'s); `Searcher` returns the
top-k block ids and scores of the newest version, by ScaNN or exactly; the embedder
export (`embedder_export`) turns questions and blocks into the vectors searched.
"""

from realm_tf.retrieval.index_build import publish_index_version, scann_parameters
from realm_tf.retrieval.searcher import Searcher

__all__ = [
    "Searcher",
    "publish_index_version",
    "scann_parameters",
]

"""Retrieval: immutable, atomically published index versions and the `Searcher` over them.

`publish_index_version` writes a version (embeddings, block ids, a serialized ScaNN
searcher, a manifest) under an index root; `latest_version` and `Searcher.from_directory`
pick up the newest; `Searcher.search` returns the top-k block ids and scores, by ScaNN
or exactly.
"""

from realm_tf.retrieval.index_version import (
    IndexVersion,
    IndexVersionError,
    latest_version,
    list_versions,
    publish_index_version,
    scann_parameters,
)
from realm_tf.retrieval.searcher import Searcher

__all__ = [
    "IndexVersion",
    "IndexVersionError",
    "Searcher",
    "latest_version",
    "list_versions",
    "publish_index_version",
    "scann_parameters",
]

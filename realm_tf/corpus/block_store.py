"""`BlockStore`: every block of a chunked corpus in memory, by block id, for host-side batching.

Retrieval returns block ids; the reader needs the blocks' token ids, and open-QA needs
their text too (answers are slices of it). The null document is block id -1: no title,
no body, no text.
"""

from typing import Dict, List, Optional

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from realm_tf.artifacts.manifests import BlocksManifest, ManifestError
from realm_tf.corpus.block_records import read_block_dataset

NULL_BLOCK_ID = -1


def read_doc_ids(blocks_dir: str) -> Dict[int, str]:
    """Block id -> doc id (the passage it was cut from) of every block of a chunked corpus."""
    manifest = BlocksManifest.read(blocks_dir)
    records = read_block_dataset(manifest.block_paths(blocks_dir)).map(
        lambda record: (record["block_id"], record["doc_id"]))
    return {NULL_BLOCK_ID: "",
            **{int(block_id): doc_id.decode("utf-8") for block_id, doc_id in records.as_numpy_iterator()}}


class BlockStore:
    """Token ids (and optionally texts and token offsets) of every block.

    Attributes:
      titles, bodies: block id -> WordPiece ids of the title / body (lists of int).
      doc_ids, title_texts, texts: block id -> str (with `with_text`).
      token_begins, token_ends: block id -> int64 [len(body)], the characters of
        `texts[id]` each body token came from (with `with_text`).
    """

    def __init__(self, blocks_dir: str, featurizer=None):
        """Reads every block of `blocks_dir`; with a `Featurizer`, also the texts and
        the character offsets of the body tokens (re-tokenized, and checked against the
        stored ids)."""
        manifest = BlocksManifest.read(blocks_dir)
        self.titles: Dict[int, List[int]] = {NULL_BLOCK_ID: []}
        self.bodies: Dict[int, List[int]] = {NULL_BLOCK_ID: []}
        self.doc_ids: Dict[int, str] = {NULL_BLOCK_ID: ""}
        self.title_texts: Dict[int, str] = {NULL_BLOCK_ID: ""}
        self.texts: Dict[int, str] = {NULL_BLOCK_ID: ""}
        self.token_begins: Optional[Dict[int, np.ndarray]] = None
        self.token_ends: Optional[Dict[int, np.ndarray]] = None
        for record in read_block_dataset(manifest.block_paths(blocks_dir)).as_numpy_iterator():
            block_id = int(record["block_id"])
            self.titles[block_id] = record["title_token_ids"].tolist()
            self.bodies[block_id] = record["body_token_ids"].tolist()
            if featurizer is not None:
                self.doc_ids[block_id] = record["doc_id"].decode("utf-8")
                self.title_texts[block_id] = record["title"].decode("utf-8")
                self.texts[block_id] = record["text"].decode("utf-8")
        if featurizer is not None:
            self._locate_tokens(blocks_dir, featurizer)

    def __len__(self) -> int:
        return len(self.bodies) - 1  # The null document is not a block of the corpus.

    def _locate_tokens(self, blocks_dir: str, featurizer, batch_size: int = 512) -> None:
        empty = np.zeros([0], np.int64)
        self.token_begins, self.token_ends = {NULL_BLOCK_ID: empty}, {NULL_BLOCK_ID: empty}
        block_ids = [i for i in self.texts if i != NULL_BLOCK_ID]
        for start in range(0, len(block_ids), batch_size):
            batch = block_ids[start:start + batch_size]
            for block_id, (ids, begins, ends) in zip(
                    batch, featurizer.tokenize_with_char_offsets([self.texts[i] for i in batch])):
                if ids.tolist() != self.bodies[block_id]:
                    raise ManifestError(
                        f"{blocks_dir}: block {block_id} (document {self.doc_ids[block_id]!r}) does not "
                        "re-tokenize to its stored body_token_ids; were the blocks made with another "
                        "vocabulary or casing than features.vocab_file / features.lower_case?")
                self.token_begins[block_id], self.token_ends[block_id] = begins, ends

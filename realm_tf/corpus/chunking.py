"""Greedy chunking of documents into blocks of whole sentences.

A block is `[CLS] title [SEP] body [SEP]` of at most `features.block_length` wordpieces,
title and special tokens counted, so packing a block never truncates it. Sentences are
packed greedily in order; a sentence longer than a block's body budget is cut between
words. The cut points are boundaries at which BERT's tokenizer always splits (white
space, and ASCII punctuation for a single word longer than a block), so the pieces
tokenize exactly as the whole sentence did. A unit longer than the budget (a
pathological run of a hundred wordpieces) is cut between wordpieces; its text stays
with the first piece, and the manifest counts it as `split_units`.

Each block's `text` is the exact slice `document.text[start:end]` from its first
sentence to its last, so a document's blocks, in order and joined by white space,
give back its sentences (but for a word longer than a whole block, cut inside).
"""

import collections
import dataclasses
import re
from typing import Dict, List, Sequence, Tuple, Union

from realm_tf.configs import ExperimentConfig
from realm_tf.corpus.block_records import BlockRecord, block_id_for
from realm_tf.corpus.documents import BadRecordError, Document
from realm_tf.features.featurizer import Featurizer
from realm_tf.features.sentences import get_sentence_splitter

# Maximal runs of non-space, non-ASCII-punctuation characters, or one ASCII punctuation mark.
_UNIT = re.compile(r"[^\s!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


@dataclasses.dataclass(frozen=True)
class Piece:
    """A sentence, or part of one: characters [start, end) of the document and their wordpieces."""

    start: int
    end: int
    token_ids: Tuple[int, ...]


def pack_greedily(pieces: Sequence[Piece], budget: int) -> List[List[Piece]]:
    """Groups consecutive pieces (each at most `budget` wordpieces) into blocks of at most `budget`."""
    blocks: List[List[Piece]] = []
    current: List[Piece] = []
    used = 0
    for piece in pieces:
        if len(piece.token_ids) > budget:
            raise ValueError(f"piece of {len(piece.token_ids)} wordpieces exceeds the budget {budget}")
        if current and used + len(piece.token_ids) > budget:
            blocks.append(current)
            current, used = [], 0
        current.append(piece)
        used += len(piece.token_ids)
    if current:
        blocks.append(current)
    return blocks


def split_units(units: Sequence[Piece], budget: int) -> Tuple[List[Piece], int]:
    """Cuts a too-long sentence, given as its units, into pieces of at most `budget` wordpieces.

    Cuts fall between white-space-separated words where possible; a word longer than
    the budget is cut between its units, and a unit longer than the budget between
    wordpieces. Returns the pieces and how many units were cut between wordpieces.
    """
    parts: List[Piece] = []
    cut_units = 0
    for word in _words(units):
        if sum(len(u.token_ids) for u in word) <= budget:
            parts.append(Piece(word[0].start, word[-1].end, tuple(t for u in word for t in u.token_ids)))
            continue
        for unit in word:
            if len(unit.token_ids) <= budget:
                parts.append(unit)
                continue
            cut_units += 1
            for i in range(0, len(unit.token_ids), budget):
                start = unit.start if i == 0 else unit.end
                parts.append(Piece(start, unit.end, unit.token_ids[i : i + budget]))
    pieces = []
    for group in pack_greedily(parts, budget):
        token_ids = tuple(t for part in group for t in part.token_ids)
        pieces.append(Piece(group[0].start, max(p.end for p in group), token_ids))
    return pieces, cut_units


def _starts(pieces: Sequence[Piece]) -> List[int]:
    """Offsets at which each piece's wordpieces begin in the concatenation of all of them.

    A piece without wordpieces (text BERT deletes entirely) starts nothing.
    """
    starts, offset = [], 0
    for piece in pieces:
        if piece.token_ids:
            starts.append(offset)
        offset += len(piece.token_ids)
    return starts


def _words(units: Sequence[Piece]) -> List[List[Piece]]:
    """Groups units that touch (no white space between them) into words."""
    words: List[List[Piece]] = []
    for unit in units:
        if words and words[-1][-1].end == unit.start:
            words[-1].append(unit)
        else:
            words.append([unit])
    return words


@dataclasses.dataclass
class ChunkedDocument:
    """The outcome for one document: its blocks and counts, or the reason it was rejected."""

    blocks: List[BlockRecord]
    stats: collections.Counter
    error: Union[BadRecordError, None] = None


class DocumentChunker:
    """Turns batches of documents into block records. Tokenizes each batch in one TF call.

    Stats per document (summed into the manifest): documents, blocks, sentences,
    split_sentences (longer than a block), split_units (cut between wordpieces),
    truncated_titles.
    """

    def __init__(self, config: ExperimentConfig):
        self._featurizer = Featurizer(config.features)
        self._split_sentences = get_sentence_splitter(config.corpus.sentence_splitter)
        self._block_length = config.features.block_length
        self._max_title_tokens = config.corpus.max_title_tokens

    def chunk(self, documents: Sequence[Document]) -> List[ChunkedDocument]:
        """Chunks each document; bad documents come back with `error` set instead of blocks."""
        spans = [self._split_sentences(doc.text) for doc in documents]
        tokens = self._tokenize(
            [doc.title for doc in documents]
            + [doc.text[a:b] for doc, doc_spans in zip(documents, spans) for a, b in doc_spans]
        )
        titles, tokens = tokens[: len(documents)], iter(tokens[len(documents) :])
        sentences = [[Piece(a, b, next(tokens)) for a, b in doc_spans] for doc_spans in spans]
        budgets = [
            self._block_length - 3 - min(len(title), self._max_title_tokens) for title in titles
        ]
        cut = self._cut_long_sentences(documents, sentences, budgets)
        return [
            self._assemble(doc, titles[d], sentences[d], budgets[d], cut[d])
            for d, doc in enumerate(documents)
        ]

    def _tokenize(self, strings: List[str]) -> List[Tuple[int, ...]]:
        if not strings:
            return []
        return [tuple(ids) for ids in self._featurizer.tokenize(strings).to_list()]

    def _cut_long_sentences(self, documents, sentences, budgets) -> List[Dict[int, Tuple[List[Piece], int]]]:
        """Per document, {sentence index: (pieces, units cut)} for each sentence over its budget.

        The units of all long sentences of the batch are tokenized in one call.
        """
        long = [
            (d, s, sentence)
            for d, doc_sentences in enumerate(sentences)
            for s, sentence in enumerate(doc_sentences)
            if len(sentence.token_ids) > budgets[d]
        ]
        unit_spans = [
            [m.span() for m in _UNIT.finditer(documents[d].text, sentence.start, sentence.end)]
            for d, _, sentence in long
        ]
        unit_texts = [documents[d].text[a:b] for (d, _, _), spans in zip(long, unit_spans) for a, b in spans]
        tokens = iter(self._tokenize(unit_texts))
        cut: List[Dict[int, Tuple[List[Piece], int]]] = [{} for _ in documents]
        for (d, s, sentence), spans in zip(long, unit_spans):
            units = [Piece(a, b, next(tokens)) for a, b in spans]
            if tuple(t for unit in units for t in unit.token_ids) != sentence.token_ids:
                # Not additive (e.g. a line separator inside a word, which BERT does not
                # split at): cut the sentence's own wordpieces rather than change them.
                units = [sentence]
            cut[d][s] = split_units(units, budgets[d])
        return cut

    def _assemble(self, doc, title_tokens, sentences, budget, cut_sentences) -> ChunkedDocument:
        stats = collections.Counter(
            documents=1,
            sentences=len(sentences),
            truncated_titles=int(len(title_tokens) > self._max_title_tokens),
        )
        pieces: List[Piece] = []
        for s, sentence in enumerate(sentences):
            if s in cut_sentences:
                sentence_pieces, cut_units = cut_sentences[s]
                pieces.extend(sentence_pieces)
                stats["split_sentences"] += 1
                stats["split_units"] += cut_units
            else:
                pieces.append(sentence)
        if not any(piece.token_ids for piece in pieces):
            error = BadRecordError(doc.source, "no_wordpieces", f"document {doc.id!r}: text yields no wordpieces")
            return ChunkedDocument([], collections.Counter(), error)
        title_ids = list(title_tokens[: self._max_title_tokens])
        blocks = [
            BlockRecord(
                block_id=block_id_for(doc.id, index),
                doc_id=doc.id,
                block_index=index,
                title=doc.title,
                text=doc.text[group[0].start : max(p.end for p in group)],
                title_token_ids=title_ids,
                body_token_ids=[t for p in group for t in p.token_ids],
                sentence_starts=_starts(group),
            )
            for index, group in enumerate(pack_greedily(pieces, budget))
        ]
        stats["blocks"] = len(blocks)
        return ChunkedDocument(blocks, stats)

import collections

import pytest

from realm_tf.configs import load_config
from realm_tf.corpus.block_records import BlockRecord, block_id_for
from realm_tf.corpus.chunking import DocumentChunker, Piece, pack_greedily, split_units
from realm_tf.corpus.documents import Document, SourcePosition
from realm_tf.features import Featurizer
from realm_tf.features.sentences import get_sentence_splitter


def _piece(n, start=0):
    return Piece(start, start + 1, tuple(range(n)))


def test_pack_greedily_fills_blocks_in_order_without_exceeding_the_budget():
    pieces = [_piece(n, i) for i, n in enumerate([3, 4, 2, 5, 1, 5])]
    groups = pack_greedily(pieces, budget=7)
    assert [[len(p.token_ids) for p in g] for g in groups] == [[3, 4], [2, 5], [1, 5]]
    assert [p for g in groups for p in g] == pieces
    with pytest.raises(ValueError, match="exceeds the budget"):
        pack_greedily([_piece(8)], budget=7)


def test_split_units_cuts_between_words_first():
    # "ab cd,e fg": units ab | cd | , | e | fg; "cd,e" is one word of three touching units.
    units = [Piece(0, 2, (1, 2)), Piece(3, 5, (3, 4)), Piece(5, 6, (5,)), Piece(6, 7, (6,)), Piece(8, 10, (7, 8))]
    pieces, cut_units = split_units(units, budget=4)
    assert cut_units == 0
    assert [p.token_ids for p in pieces] == [(1, 2), (3, 4, 5, 6), (7, 8)]
    assert [(p.start, p.end) for p in pieces] == [(0, 2), (3, 7), (8, 10)]


def test_split_units_cuts_a_word_longer_than_the_budget_between_units_then_wordpieces():
    # One word "abc,defghij" (units abc | , | defghij) longer than the budget, then "k".
    units = [Piece(0, 3, (1, 2)), Piece(3, 4, (3,)), Piece(4, 11, tuple(range(10, 17))), Piece(12, 13, (9,))]
    pieces, cut_units = split_units(units, budget=5)
    assert cut_units == 1
    assert [p.token_ids for p in pieces] == [(1, 2, 3), (10, 11, 12, 13, 14), (15, 16, 9)]
    # The overlong unit's text stays with its first piece; the rest of its wordpieces follow.
    assert [(p.start, p.end) for p in pieces] == [(0, 4), (4, 11), (11, 13)]


SMALL = ["features.block_length=16", "corpus.max_title_tokens=4"]


@pytest.fixture(scope="module")
def small_chunker():
    return DocumentChunker(load_config("tiny", SMALL))


@pytest.fixture(scope="module")
def tokenize():
    featurizer = Featurizer(load_config("tiny", SMALL).features)
    return lambda text: featurizer.tokenize([text]).to_list()[0]


def _doc(doc_id, text, title="Title"):
    return Document(doc_id, title, text, SourcePosition("docs.jsonl", 1))


def test_blocks_respect_the_limit_with_the_title_counted_and_reassemble_the_document(small_chunker, tokenize):
    text = ("The quick brown fox jumps. The lazy dog sleeps all day long in the sun. "
            "Nikola Tesla was born in 1856 in Smiljan, in the Austrian Empire, now Croatia. He moved to New York.")
    [chunked] = small_chunker.chunk([_doc("d1", text, title="Super Bowl")])
    assert chunked.error is None
    blocks = chunked.blocks
    assert len(blocks) > 1
    for block in blocks:
        assert 3 + len(block.title_token_ids) + len(block.body_token_ids) <= 16
        assert block.block_id == block_id_for("d1", block.block_index)
    assert [b.block_index for b in blocks] == list(range(len(blocks)))
    # Blocks are exact slices, in order, separated only by white space, covering the text.
    assert " ".join(b.text for b in blocks) == text
    # Token ids are the document's, in order: chunking neither drops nor re-tokenizes any.
    assert [t for b in blocks for t in b.body_token_ids] == tokenize(text)
    # Sentence starts mark where each sentence's wordpieces begin in the block.
    sentences = [t[a:b] for t in [text] for a, b in get_sentence_splitter("rules")(text)]
    starts = [(b, s) for b in blocks for s in b.sentence_starts]
    assert len(starts) == 5  # 4 sentences, one of them cut in two
    assert [b.body_token_ids[s:s + 3] for b, s in starts][:2] == [tokenize(sentences[0])[:3], tokenize(sentences[1])[:3]]
    assert chunked.stats == collections.Counter(documents=1, sentences=4, blocks=len(blocks), split_sentences=1,
                                                truncated_titles=0, split_units=0)


def test_a_sentence_longer_than_a_block_is_cut_between_words(small_chunker, tokenize):
    text = "one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen."
    [chunked] = small_chunker.chunk([_doc("long", text, title="")])
    assert chunked.stats["split_sentences"] == 1 and chunked.stats["split_units"] == 0
    assert all(len(b.body_token_ids) <= 16 - 3 for b in chunked.blocks)
    assert " ".join(b.text for b in chunked.blocks) == text
    assert [tokenize(b.text) for b in chunked.blocks] == [b.body_token_ids for b in chunked.blocks]


def test_a_sentence_that_does_not_tokenize_word_by_word_is_cut_between_wordpieces(small_chunker, tokenize):
    # BERT does not split at U+2028 inside a word ("foo\u2028bar" is one [UNK]), though
    # it is white space to a regex: the chunker must keep the sentence's own wordpieces.
    text = "one two three four five six seven eight nine ten foo\u2028bar eleven twelve thirteen"
    [chunked] = small_chunker.chunk([_doc("ls", text, title="")])
    assert chunked.stats["split_sentences"] == 1 and chunked.stats["split_units"] == 1
    assert all(len(b.body_token_ids) <= 16 - 3 for b in chunked.blocks)
    assert [t for b in chunked.blocks for t in b.body_token_ids] == tokenize(text)
    assert chunked.blocks[0].text == text


def test_long_titles_are_cut_and_counted(small_chunker):
    [chunked] = small_chunker.chunk([_doc("t", "A short body.", title="the quick brown fox jumps over")])
    assert chunked.stats["truncated_titles"] == 1
    assert [len(b.title_token_ids) for b in chunked.blocks] == [4]
    assert chunked.blocks[0].title == "the quick brown fox jumps over"


def test_a_document_without_wordpieces_is_a_bad_record(small_chunker):
    good, bad = small_chunker.chunk([_doc("ok", "Fine text."), _doc("zw", "\u200b\u200b")])
    assert good.error is None and len(good.blocks) == 1
    assert bad.blocks == [] and bad.error.kind == "no_wordpieces"
    assert str(bad.error) == "docs.jsonl:1: document 'zw': text yields no wordpieces"


def test_block_record_round_trips_through_tf_example():
    record = BlockRecord(block_id_for("d", 2), "d", 2, "Tïtle", "Body text.", [1, 2], [3, 4, 5], [0, 2])
    assert BlockRecord.from_bytes(record.serialize()) == record
    assert 0 <= record.block_id < 2**63
    assert block_id_for("d", 2) != block_id_for("d", 3) != block_id_for("e", 2)

import pytest

from realm_tf.features.sentences import get_sentence_splitter, register_sentence_splitter


def _sentences(text):
    return [text[a:b] for a, b in get_sentence_splitter("rules")(text)]


def test_splits_at_terminal_punctuation_before_a_capital():
    assert _sentences("Tesla was born in 1856. He died in 1943! Why? Nobody knows.") == [
        "Tesla was born in 1856.", "He died in 1943!", "Why?", "Nobody knows."]


def test_keeps_abbreviations_initials_and_decimals_inside_a_sentence():
    text = "Mr. Smith met Dr. J. R. Jones at 3.5 p.m. in the U.S. Army base. It rained."
    assert _sentences(text) == ["Mr. Smith met Dr. J. R. Jones at 3.5 p.m. in the U.S. Army base.", "It rained."]


def test_closing_quotes_and_brackets_stay_with_their_sentence():
    assert _sentences('He said "Stop." Then he left. (It was late.) "Go," she said.') == [
        'He said "Stop."', "Then he left.", "(It was late.)", '"Go," she said.']


def test_line_breaks_end_sentences_and_spans_are_stripped():
    text = "  First line without a stop\n\n Second line.  Third one.\n"
    spans = get_sentence_splitter("rules")(text)
    assert [text[a:b] for a, b in spans] == ["First line without a stop", "Second line.", "Third one."]
    assert all(a < b and not text[a].isspace() and not text[b - 1].isspace() for a, b in spans)
    assert spans == sorted(spans)


def test_lower_case_after_a_full_stop_does_not_split():
    assert _sentences("It cost approx. ten dollars. e.g. more.") == ["It cost approx. ten dollars. e.g. more."]


def test_unknown_splitter_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown sentence splitter 'spacy'; registered: \['rules'"):
        get_sentence_splitter("spacy")


def test_a_registered_splitter_is_used():
    register_sentence_splitter("whole_text", lambda: lambda text: [(0, len(text))])
    assert get_sentence_splitter("whole_text")("A. B.") == [(0, 5)]

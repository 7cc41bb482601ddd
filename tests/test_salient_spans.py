"""Salient span detectors and `mask_sentence`, with the real BERT tokenizer."""

import json
import random

import pytest

from realm_tf.features import Featurizer
from realm_tf.features.salient_spans import (
    get_span_detector,
    mask_sentence,
    merge_spans,
    register_span_detector,
)

from conftest import CORPUS

MASK = 103  # [MASK] in the BERT uncased vocabulary.


def _found(detector, text):
    spans = get_span_detector(detector)(text)
    assert spans == sorted(spans) and all(b <= c for (_, b), (c, _) in zip(spans, spans[1:]))
    return [text[a:b] for a, b in spans]


@pytest.fixture(scope="module")
def tokenize(tiny_config):
    featurizer = Featurizer(tiny_config.features)
    return lambda texts: featurizer.tokenize(texts).to_list()


@pytest.fixture(scope="module")
def corpus_text():
    documents = {d["id"]: d["text"] for d in map(json.loads, CORPUS.read_text(encoding="utf-8").splitlines())}
    return documents.__getitem__


def _mask(text, tokenize, spans, seed=0, **limits):
    settings = dict(mask_id=MASK, max_query_tokens=30, max_masked_tokens=10, random_fallback_probability=0.15,
                    vocab_size=30522)
    settings.update(limits)
    return mask_sentence(text, tokenize, spans, rng=random.Random(seed), **settings)


def _span(text, part):
    start = text.index(part)
    return start, start + len(part)


# --- Detectors ---------------------------------------------------------------------


@pytest.mark.parametrize("text, dates", [
    ("It opened on 7 February 2016 and closed on February 7, 2016.", ["7 February 2016", "February 7, 2016"]),
    ("Signed Feb. 7, 2016, dated March 1880, born 10 July 1856.", ["Feb. 7, 2016", "March 1880", "10 July 1856"]),
    ("Popular in the 1990s, founded in 1856, held on October 16.", ["1990s", "1856", "October 16"]),
    ("Built in the 19th century and the 1st-century church.", ["19th century", "1st-century"]),
    ("Not dates: $1900, 1,856 people, 3.1856 volts, 999, 2150 or A1900.", []),
    # Month names are case-sensitive: "may" is a verb.
    ("It may 2016 be.", ["2016"]),
    ("The 2015–16 season ran from 1856–1943.", ["2015", "1856", "1943"]),
])
def test_dates(text, dates):
    assert _found("dates", text) == dates


@pytest.mark.parametrize("text, entities", [
    ("She studied at the University of Notre Dame with Nikola Tesla.", ["University of Notre Dame", "Nikola Tesla"]),
    ("Tesla moved to New York City and met Ludwig van Beethoven.", ["Tesla", "New York City", "Ludwig van Beethoven"]),
    # A sentence-initial common word is not an entity, alone or in front of one.
    ("The Broncos won. In the United States it rained. However, it was late.", ["Broncos", "United States"]),
    ("Shortly after, Tesla left.", ["Tesla"]),
    # Possessives are stripped; commas, brackets and line breaks end a run.
    ("It's Denver's defense, Levi's Stadium (NFL) and the Patriots, Dallas Cowboys.\nCarolina",
     ["Denver", "Levi's Stadium", "NFL", "Patriots", "Dallas Cowboys", "Carolina"]),
    # Connectors count only between capitalized words: "of" here ends "Bank". Within a
    # run they join two names too, the price of the simple rule.
    ("The Bank of the city, J. R. R. Tolkien met the U.S. Army.", ["Bank", "J. R. R. Tolkien", "U.S. Army"]),
    ("Tesla and Edison met.", ["Tesla and Edison"]),
    ("no capital letters here at all.", []),
])
def test_entities(text, entities):
    assert _found("entities", text) == entities


def test_super_bowl_and_tesla_paragraphs_of_the_corpus(corpus_text):
    super_bowl = corpus_text("Super_Bowl_50#0")
    sentence = super_bowl[super_bowl.index("The game was played"):super_bowl.index("As this was")].strip()
    assert _found("dates_and_entities", sentence) == [
        "February 7, 2016", "Levi's Stadium", "San Francisco Bay Area", "Santa Clara", "California"]
    assert _found("dates_and_entities", super_bowl.split(". ")[0]) == [
        "Super Bowl", "American", "National Football League", "NFL", "2015"]

    tesla = corpus_text("Nikola_Tesla#0")
    assert _found("dates", tesla) == ["10 July 1856", "7 January 1943"]
    assert _found("dates_and_entities", tesla) == [
        "Nikola Tesla", "Serbian Cyrillic", "Никола Тесла", "10 July 1856", "7 January 1943", "Serbian American",
        "AC"]
    assert _found("dates_and_entities", corpus_text("Nikola_Tesla#1").split(". ")[0]) == [
        "Tesla", "United States", "1884", "Thomas Edison", "New York City"]


def test_the_union_keeps_the_longer_of_overlapping_spans():
    text = "On February 7, 2016 the University of Notre Dame in 1900 Smith."
    assert _found("entities", text)[:2] == ["February", "University of Notre Dame"]
    assert _found("dates_and_entities", text) == ["February 7, 2016", "University of Notre Dame", "1900", "Smith"]
    # Equal lengths: the earlier list wins.
    assert merge_spans([(0, 4)], [(2, 6), (10, 12)]) == [(0, 4), (10, 12)]
    assert merge_spans([(2, 6)], [(0, 9)]) == [(0, 9)]


def test_unknown_detector_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown salient span detector 'tagger'; registered: .*'dates', "
                                         r"'dates_and_entities', 'entities'.*'spacy'"):
        get_span_detector("tagger")


def test_a_registered_detector_is_used():
    made = []

    def factory():
        made.append(1)
        return lambda text: [(0, text.index(" "))]

    register_span_detector("first_word", factory)
    assert _found("first_word", "Hello there world") == ["Hello"]
    assert made == [1]


# --- Masking -----------------------------------------------------------------------


def test_masks_exactly_the_wordpieces_of_the_span(tokenize):
    text = "Tesla worked for Thomas Edison in New York City."
    # tesla worked for thomas edison in new york city .
    query = _mask(text, tokenize, [_span(text, "Thomas Edison")])
    assert query.kind == "salient"
    assert query.masked_positions == [3, 4]
    assert query.masked_token_ids == [2726, 17046]  # thomas, edison
    assert query.token_ids == [26060, 2499, 2005, MASK, MASK, 1999, 2047, 2259, 2103, 1012]


def test_chooses_each_usable_span_uniformly(tokenize):
    text = "Tesla worked for Thomas Edison in New York City."
    spans = [_span(text, "Tesla"), _span(text, "Thomas Edison"), _span(text, "New York City")]
    chosen = [tuple(_mask(text, tokenize, spans, seed=seed).masked_positions) for seed in range(60)]
    assert sorted(set(chosen)) == [(0,), (3, 4), (6, 7, 8)]
    assert min(chosen.count(c) for c in set(chosen)) >= 10
    for seed in range(60):
        query = _mask(text, tokenize, spans, seed=seed)
        assert [i for i, t in enumerate(query.token_ids) if t == MASK] == query.masked_positions


def test_spans_longer_than_max_masked_tokens_or_misaligned_are_not_chosen(tokenize):
    text = "Tesla worked for Thomas Edison in New York City."
    edi = (text.index("Edison"), text.index("Edison") + 3)  # "Edi|son": not a word boundary.
    spans = [_span(text, "Tesla"), edi, _span(text, "New York City")]
    assert {tuple(_mask(text, tokenize, spans, seed=s, max_masked_tokens=2).masked_positions)
            for s in range(20)} == {(0,)}
    query = _mask(text, tokenize, [edi, _span(text, "New York City")], max_masked_tokens=2)
    assert query.kind == "random"


def test_a_long_sentence_is_cut_to_a_window_around_the_span(tokenize):
    text = ("The Panthers finished the regular season with a 15–1 record, and quarterback Cam Newton was named "
            "the NFL Most Valuable Player (MVP).")
    tokens = tokenize([text])[0]
    assert len(tokens) == 28  # ... and(13) quarterback cam(15) newton was ... ((24) mvp(25) ) .
    # Centred: "cam newton" (15, 16) gets 3 wordpieces before it, so the window is 12..19.
    query = _mask(text, tokenize, [_span(text, "Cam Newton")], max_query_tokens=8)
    assert query.masked_positions == [3, 4]
    assert query.token_ids == tokens[12:15] + [MASK, MASK] + tokens[17:20]
    # Clamped to the sentence: "mvp" (25) would centre at 22; the window is the last 8.
    query = _mask(text, tokenize, [_span(text, "MVP")], max_query_tokens=8)
    assert query.masked_positions == [5]
    assert query.token_ids == tokens[20:25] + [MASK] + tokens[26:]
    # ... and at its start: "panthers" (1).
    query = _mask(text, tokenize, [_span(text, "Panthers")], max_query_tokens=8)
    assert query.token_ids == tokens[:1] + [MASK] + tokens[2:8]
    assert query.masked_token_ids == tokenize(["Panthers"])[0]


def test_falls_back_to_random_masking(tokenize):
    text = "the regular season ended with a record of fifteen wins and one loss for the team ."
    tokens = tokenize([text])[0]
    for seed in range(20):
        query = _mask(text, tokenize, [], seed=seed, max_masked_tokens=3)
        assert query.kind == "random"
        assert 1 <= len(query.masked_positions) <= 3
        assert query.masked_positions == sorted(set(query.masked_positions))
        assert [i for i, t in enumerate(query.token_ids) if t == MASK] == query.masked_positions
        assert query.masked_token_ids == [tokens[p] for p in query.masked_positions]
    # Probability 1 masks as many as allowed, and always leaves a wordpiece unmasked.
    assert len(_mask(text, tokenize, [], random_fallback_probability=1.0, max_masked_tokens=5).masked_positions) == 5
    assert _mask("Hello there", tokenize, [], random_fallback_probability=1.0).masked_positions in ([0], [1])


def test_a_span_covering_the_whole_query_is_not_usable(tokenize):
    assert _mask("Nikola Tesla", tokenize, [(0, 12)]).kind == "random"


def test_sentences_shorter_than_two_wordpieces_give_none(tokenize):
    assert _mask("Hello", tokenize, [(0, 5)]) is None
    assert _mask("", tokenize, []) is None


def test_the_same_rng_gives_the_same_query(tokenize, corpus_text):
    text = corpus_text("Nikola_Tesla#1")
    spans = get_span_detector("dates_and_entities")(text)
    for masking in (spans, []):
        first = [_mask(text, tokenize, masking, seed=seed) for seed in range(10)]
        assert first == [_mask(text, tokenize, masking, seed=seed) for seed in range(10)]
        assert len({tuple(q.masked_positions) for q in first}) > 1


def test_bad_arguments_are_errors(tokenize):
    with pytest.raises(ValueError, match=r"span \(3, 40\) is not inside a text of 11 characters"):
        _mask("Hello there", tokenize, [(3, 40)])
    with pytest.raises(ValueError, match="mask id 103 is not in a vocabulary of 100 tokens"):
        _mask("Hello there", tokenize, [], vocab_size=100)
    with pytest.raises(ValueError, match="max_query_tokens >= 2"):
        _mask("Hello there", tokenize, [], max_query_tokens=1)

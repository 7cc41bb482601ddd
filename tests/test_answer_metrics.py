"""The open-QA answer metrics on hand-checked cases: normalization, exact match, F1, CuratedTrec regexes."""

import pytest

from realm_tf.evaluation.answer_metrics import (answer_in_text, answer_matches, exact_match, f1_score,
                                                normalize_answer, regex_match)
from realm_tf.evaluation.qa_data import QaExample

# The answer of "How tall is Mount McKinley?" in assets/openqa_eval/curatedtrec_test.tsv, line 1.
MCKINLEY = (r"20\s?,?\s?(32|40)0\s?-?\s?f(ee|oo)t|6,194-meter|20,?237\s*f(oo|ee)?t|20,?073\s*f(oo|ee)?t|6,?168\s*m|"
            r"6,118\s*m|6\,194 m|20\,322 feet")


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower", "eiffel tower"),
    ("an apple", "apple"),
    ("A Tale of Two Cities", "tale of two cities"),
    ("theory", "theory"),  # An article only as a whole word.
    ("Anne and Thea", "anne and thea"),
    ("the", ""),
    ("1,000", "1000"),
    ("U.S.", "us"),
    ("\u201cHello,\u201d she said", "hello she said"),  # Curly quotes: Unicode punctuation.
    ("1914\u20131918", "19141918"),  # En dash, removed like the ASCII hyphen.
    ("Rock \u2019n\u2019 roll", "rock n roll"),
    ("  New\tYork \n City ", "new york city"),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_articles_go_after_punctuation_and_a_combining_accent_does_not_split_a_word():
    assert normalize_answer("(The) Beatles") == "beatles"
    assert normalize_answer("The-Beatles") == "thebeatles"  # Hyphen deleted, not a space: one word.
    assert normalize_answer("Th\u00e9") == "the\u0301"  # NFD "thé" is not the article.


@pytest.mark.parametrize("prediction, references", [
    ("The Eiffel Tower", ["eiffel tower"]),
    ("an apple", ["apple"]),
    ("1,000", ["1000"]),
    ("U.S.", ["us"]),
    ("\u201cCasablanca\u201d", ["Casablanca"]),
    ("caf\u00e9", ["cafe\u0301"]),  # Precomposed and decomposed é: equal after NFD.
    ("Paris", ["London", "paris."]),  # Any reference.
    ("", [""]),
])
def test_exact_match(prediction, references):
    assert exact_match(prediction, references)


@pytest.mark.parametrize("prediction, references", [
    ("theory", ["ory"]),
    ("caf\u00e9", ["cafe"]),  # The accent stays a combining mark: not stripped.
    ("Tesla", ["T\u0435sla"]),  # A Cyrillic "е" only looks like "e".
    ("Paris", []),
    ("Paris", ["Paris, France"]),
    ("", ["x"]),
])
def test_no_exact_match(prediction, references):
    assert not exact_match(prediction, references)


@pytest.mark.parametrize("prediction, references, expected", [
    ("the big red dog", ["red dog"], 0.8),  # P = 2/3, R = 1.
    ("red dog", ["the big red dog"], 0.8),  # P = 1, R = 2/3.
    ("red dog red", ["red red cat"], 2 / 3),  # Bags of tokens: "red" counts twice on both sides.
    ("red red red", ["red"], 0.5),  # P = 1/3, R = 1.
    ("Nikola Tesla", ["Edison", "Tesla"], 2 / 3),  # Best reference: P = 1/2, R = 1.
    ("U.S. Army", ["us army"], 1.0),
    ("blue", ["red dog"], 0.0),
    ("", [""], 1.0),  # Both empty.
    ("The", ["a"], 1.0),  # Both normalize to nothing.
    ("", ["red"], 0.0),
    ("red", ["..."], 0.0),
    ("red", [], 0.0),
])
def test_f1_score(prediction, references, expected):
    assert f1_score(prediction, references) == pytest.approx(expected)


def test_a_bare_string_is_refused_as_references():
    # "red" would otherwise be read as the references "r", "e", "d".
    with pytest.raises(TypeError, match="sequence of strings"):
        exact_match("r", "red")
    with pytest.raises(TypeError, match="sequence of strings"):
        regex_match("r", "red")


@pytest.mark.parametrize("prediction", ["20,320 feet", "20320 feet", "20 , 320-foot", "6,194-meter",
                                        "20,320 FEET", "6,168 m", "20,320 feet (6,194 m)"])
def test_curatedtrec_regex_matches(prediction):
    assert regex_match(prediction, [MCKINLEY])


@pytest.mark.parametrize("prediction", ["20,000 feet", "about 20,320 feet", "6194 km", ""])
def test_curatedtrec_regex_does_not_match(prediction):
    # re.match is anchored at the start: "about 20,320 feet" does not match.
    assert not regex_match(prediction, [MCKINLEY])


def test_curatedtrec_regex_is_case_insensitive_and_also_tried_on_the_normalized_prediction():
    assert regex_match("after the fall", ["After the Fall|Finishing the Play"])
    assert regex_match("FIFTEEN", [r"\b15\b|fifteen|Soviet"])
    assert regex_match("15 republics", [r"\b15\b|fifteen|Soviet"])
    assert not regex_match("150", [r"\b15\b|fifteen|Soviet"])
    assert regex_match("\u201cChina\u201d", ["China"])  # Only the normalized form starts with "china".
    assert regex_match("Sweden", ["China", "Sweden"])  # Any pattern.


def test_answer_matches_dispatches_on_the_regex_flag():
    regex = QaExample(id="1", question="q", answers=(r"\b2,?[4567][0-9][0-9]\b",), answers_are_regex=True)
    strings = QaExample(id="2", question="q", answers=("2,500",))
    assert answer_matches("2,500 feet", regex)
    assert not answer_matches("2,500 feet", strings)
    assert answer_matches("2500", strings)


@pytest.mark.parametrize("answers, expected", [
    (["1856"], True),
    (["the Smiljan"], True),  # Normalized on both sides.
    (["Nikola Tesla born"], False),  # Not contiguous in the passage.
    (["art"], False),  # Inside "party": not a whole token.
    (["born in 1856 in smiljan"], True),
    (["the"], False),  # Normalizes to nothing, which would otherwise be found in every passage.
    (["Edison", "Smiljan, Croatia"], True),
    ([], False),
])
def test_answer_in_text_strings(answers, expected):
    text = "Nikola Tesla was born in 1856 in Smiljan, Croatia; a party followed."
    assert answer_in_text(text, answers, answers_are_regex=False) is expected


def test_answer_in_text_regex_searches_anywhere_case_insensitively():
    text = "Jerusalem lies 2,474 feet above sea level, in what is now Israel."
    assert answer_in_text(text, [r"\b2,?[4567][0-9][0-9]\b"], answers_are_regex=True)
    assert answer_in_text("Hyundai is from SOUTH KOREA.", ["Republic of Korea|South Korea"], answers_are_regex=True)
    assert not answer_in_text("Hyundai is from Seoul.", ["Republic of Korea|South Korea"], answers_are_regex=True)

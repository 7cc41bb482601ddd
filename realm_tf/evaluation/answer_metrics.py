"""Answer metrics of open-domain QA: exact match, token F1, CuratedTrec regex match, answer recall.

Exact match is the one REALM reports, which it takes from ORQA, which takes it from
DrQA and the SQuAD v1.1 evaluation script: both strings are normalized, then compared.
Using the same normalization is what makes a score comparable with the published
ones, so `normalize_answer` follows those scripts step by step:

1. Unicode NFD, so that a precomposed "é" and "e" + combining accent are one string
   (ORQA and DrQA do this before anything else);
2. lowercase;
3. remove punctuation: every character of `string.punctuation` (the reference
   scripts' set) and also every Unicode punctuation character (category P*), so that
   curly quotes, dashes and the like in Wikipedia-derived answers do not block a
   match. Characters are deleted, not replaced by a space: "1,000" -> "1000",
   "U.S." -> "us";
4. remove the articles a, an, the as whole words ("theory" keeps its "the");
5. collapse runs of white space to one space, strip the ends.

Step 4 drops the tokens that equal an article after splitting on white space. Since
punctuation is already gone, this is the reference scripts' `\\b(a|an|the)\\b` rule,
except next to a combining accent or a symbol, which `\\b` takes for a word boundary
(NFD "thé" would lose its "the" there, and keeps it here).

Only the normalization above is applied: letters that merely look alike stay
different (a Cyrillic "е" is not a Latin "e").

CuratedTrec's references are regular expressions. As in DrQA's evaluation, a
prediction matches when `re.match` (anchored at the start, case-insensitive) of a
reference pattern succeeds; here it is tried on the prediction as given and on its
normalized form.
"""

import collections
import re
import string
import unicodedata
from typing import Iterable, List

from realm_tf.evaluation.qa_data import QaExample

_ARTICLES = frozenset(("a", "an", "the"))
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_REGEX_FLAGS = re.IGNORECASE | re.UNICODE


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """NFD, lowercase, no punctuation, no articles, single spaces (see the module docstring)."""
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(char for char in text if not _is_punctuation(char))
    return " ".join(token for token in text.split() if token not in _ARTICLES)


def _as_list(references: Iterable[str], name: str) -> List[str]:
    # A bare string is a sequence of characters: each would be taken as one reference.
    if isinstance(references, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string: {references!r}")
    return list(references)


def exact_match(prediction: str, references: Iterable[str]) -> bool:
    """Whether the normalized prediction equals any normalized reference."""
    normalized = normalize_answer(prediction)
    return any(normalized == normalize_answer(reference) for reference in _as_list(references, "references"))


def _token_f1(prediction_tokens: List[str], reference_tokens: List[str]) -> float:
    if not prediction_tokens or not reference_tokens:
        # SQuAD v2 semantics: nothing to overlap, so only "both empty" is a match.
        return float(prediction_tokens == reference_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, references: Iterable[str]) -> float:
    """SQuAD token F1: bag-of-tokens overlap of the normalized strings, best over the references.

    0.0 when there are no references.
    """
    prediction_tokens = normalize_answer(prediction).split()
    return max((_token_f1(prediction_tokens, normalize_answer(reference).split())
                for reference in _as_list(references, "references")), default=0.0)


def regex_match(prediction: str, patterns: Iterable[str]) -> bool:
    """Whether any pattern `re.match`es the prediction as given or its normalized form (CuratedTrec).

    Matching is anchored at the start and case-insensitive. A pattern that does not
    compile raises `re.error`: the QA reader checks every pattern, so one reaching here
    is a caller's bug, not a non-match.
    """
    candidates = (prediction, normalize_answer(prediction))
    return any(re.match(pattern, candidate, flags=_REGEX_FLAGS)
               for pattern in _as_list(patterns, "patterns") for candidate in candidates)


def answer_matches(prediction: str, example: QaExample) -> bool:
    """Exact match, or regex match for an example whose answers are patterns."""
    if example.answers_are_regex:
        return regex_match(prediction, example.answers)
    return exact_match(prediction, example.answers)


def answer_in_text(text: str, answers: Iterable[str], answers_are_regex: bool) -> bool:
    """Whether a passage contains an answer: the "answer recall" of retrieval without gold passages.

    A string answer must occur in the passage as whole tokens, both sides normalized
    (so "art" is not found in "party"). An answer that normalizes to nothing (say "the")
    is never found: it would otherwise be found everywhere. A regex answer is
    `re.search`ed in the passage as given, case-insensitively.
    """
    answers = _as_list(answers, "answers")
    if answers_are_regex:
        return any(re.search(pattern, text, flags=_REGEX_FLAGS) for pattern in answers)
    padded_text = f" {normalize_answer(text)} "
    for answer in answers:
        normalized = normalize_answer(answer)
        if normalized and f" {normalized} " in padded_text:
            return True
    return False

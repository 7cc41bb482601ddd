"""Which spans of a block are the answer: the targets of open-QA fine-tuning.

A span is a run of at most `max_span_length` body tokens that starts and ends on word
boundaries (never inside a "##" word piece). It is correct when it starts and ends on a
token that normalization keeps (not punctuation, not an article: ", Tesla" and "the
Tesla" would match "Tesla" too, but they are not answers to teach) and when its text, the exact
slice of the block's text its tokens came from, matches one of the answers as exact
match does (`realm_tf.evaluation.answer_metrics`): equal after normalization, or, for
CuratedTrec's regular-expression answers, matched whole by one of them (evaluation
anchors a pattern at the start only; a target must not run on past the answer). Every matching span
counts, so an answer that occurs three times in a block gives three targets.
"""

import re
from typing import List, Optional, Sequence, Tuple

import numpy as np

from realm_tf.evaluation.answer_metrics import answer_in_text, normalize_answer


class AnswerMatcher:
    """The answers of one question, ready to test many spans against."""

    def __init__(self, answers: Sequence[str], answers_are_regex: bool = False):
        self.answers = tuple(answers)
        self.answers_are_regex = answers_are_regex
        self._normalized = {normalize_answer(a) for a in answers} - {""}
        self._patterns = [re.compile(a, re.IGNORECASE | re.UNICODE) for a in answers] if answers_are_regex else []

    def in_text(self, text: str, normalized: Optional[str] = None) -> bool:
        """Whether any answer occurs in `text` (`answer_in_text`); `normalized`, the
        text's `normalize_answer` if at hand, saves normalizing it again."""
        if self.answers_are_regex or normalized is None:
            return answer_in_text(text, self.answers, self.answers_are_regex)
        padded = f" {normalized} "
        return any(f" {answer} " in padded for answer in self._normalized)

    def matches(self, span_text: str) -> bool:
        if self.answers_are_regex:
            return any(p.fullmatch(span_text) or p.fullmatch(normalize_answer(span_text)) for p in self._patterns)
        return normalize_answer(span_text) in self._normalized


def find_answer_spans(matcher: AnswerMatcher, text: str, begins: np.ndarray, ends: np.ndarray,
                      is_word_start: np.ndarray, num_tokens: int, max_span_length: int) -> List[Tuple[int, int]]:
    """Every correct span among the first `num_tokens` body tokens of a block.

    Args:
      matcher: the question's answers.
      text: the block's text.
      begins, ends: int64 [T], the characters of `text` each body token came from.
      is_word_start: bool [T], whether each body token begins a word (not "##...").
      num_tokens: how many body tokens the reader sees (the rest was truncated).
      max_span_length: the longest span, in tokens.

    Returns:
      (start, end) token indices into the body, inclusive, in order.
    """
    if num_tokens == 0 or not matcher.in_text(text):
        return []
    # A span ends on a word boundary when the token after it starts a word or is cut off.
    is_word_end = np.append(is_word_start[1:num_tokens], True)
    is_kept = [bool(normalize_answer(text[begins[i]:ends[i]])) for i in range(num_tokens)]
    spans = []
    for start in range(num_tokens):
        if not (is_word_start[start] and is_kept[start]):
            continue
        for end in range(start, min(start + max_span_length, num_tokens)):
            if is_word_end[end] and is_kept[end] and matcher.matches(text[begins[start]:ends[end]]):
                spans.append((start, end))
    return spans

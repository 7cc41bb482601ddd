"""The QA file reader: the four formats on the bundled files, auto-detection, and bad input named by file and line."""

import re

import pytest

from realm_tf.evaluation.qa_data import FORMATS, QaDataError, QaExample, read_qa

from conftest import REPO

ASSETS = REPO / "realm_tf" / "assets"
BUNDLED = {
    "squad_open": (ASSETS / "squad_open" / "qa_dev.jsonl", 1352),
    "nq_open": (ASSETS / "openqa_eval" / "nq_open_test.jsonl", 3610),
    "webquestions": (ASSETS / "openqa_eval" / "webquestions_test.json", 2032),
    "curatedtrec": (ASSETS / "openqa_eval" / "curatedtrec_test.tsv", 694),
}


@pytest.mark.parametrize("format", FORMATS)
def test_bundled_files_read_whole_and_auto_detected(format):
    path, rows = BUNDLED[format]
    examples = read_qa(str(path), format)
    assert len(examples) == rows
    assert len({e.id for e in examples}) == rows
    assert all(e.answers and e.answers_are_regex == (format == "curatedtrec") for e in examples)
    assert read_qa(str(path)) == examples


def test_squad_open_record():
    first = read_qa(str(BUNDLED["squad_open"][0]))[0]
    assert first == QaExample(id="56df9e2838dc4217001520f6", question="In what year was Nikola Tesla born? ",
                              answers=("1856",), gold_passage_id="Nikola_Tesla#0", line=1)


def test_nq_open_record_has_its_line_number_as_id():
    fifth = read_qa(str(BUNDLED["nq_open"][0]))[4]
    assert fifth == QaExample(id="5", question="who won last year's ncaa women's basketball",
                              answers=("South Carolina",), line=5)


def test_webquestions_records_have_their_lines():
    examples = read_qa(str(BUNDLED["webquestions"][0]))
    assert examples[0] == QaExample(id="wqs000000", question="what does jamaican people speak?",
                                    answers=("Jamaican Creole English Language", "Jamaican English"), line=2)
    assert examples[-1] == QaExample(id="wqs002031", question="when was father chris riley born?",
                                     answers=("1967",), line=2033)


def test_curatedtrec_answer_is_one_whole_pattern():
    examples = read_qa(str(BUNDLED["curatedtrec"][0]))
    assert examples[0].id == "1669" and examples[0].question == "How tall is Mount McKinley?"
    assert examples[0].answers == (r"20\s?,?\s?(32|40)0\s?-?\s?f(ee|oo)t|6,194-meter|20,?237\s*f(oo|ee)?t|"
                                   r"20,?073\s*f(oo|ee)?t|6,?168\s*m|6,118\s*m|6\,194 m|20\,322 feet",)
    assert examples[2] == QaExample(id="1544", question="What is the most populated country in the world?",
                                    answers=("China",), answers_are_regex=True, line=3)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('\n{"question": "a?", "answer": ["x"]}\n\n  \n{"question": "b?", "answer": ["y", "z"]}\n')
    examples = read_qa(str(path))
    assert [(e.id, e.line, e.answers) for e in examples] == [("2", 2, ("x",)), ("5", 5, ("y", "z"))]


def test_crlf_line_ends_stay_out_of_the_fields(tmp_path):
    path = tmp_path / "trec.tsv"
    path.write_bytes(b"1\tfactoid\tWhere?\tChina\r\n2\tfactoid\tWho?\tSmith|Jones\r\n")
    assert [e.answers for e in read_qa(str(path))] == [("China",), ("Smith|Jones",)]


def test_squad_open_without_gold_passage_reads(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "q1", "question": "a?", "answers": ["x"]}\n{"id": 7, "question": "b?", "answers": ["y"], '
                    '"gold_passage_id": null}\n')
    assert [(e.id, e.gold_passage_id) for e in read_qa(str(path), "squad_open")] == [("q1", None), ("7", None)]


def _error(path, format="auto"):
    with pytest.raises(QaDataError) as info:
        read_qa(str(path), format)
    return str(info.value)


GOOD_SQUAD = '{"id": "1", "question": "a?", "answers": ["x"], "gold_passage_id": "Doc#0"}\n'


@pytest.mark.parametrize("second_line, message", [
    ('{"id": "2", "answers": ["x"]}', "missing field 'question'"),
    ('{"id": "2", "question": "  ", "answers": ["x"]}', "field 'question' is empty"),
    ('{"id": "2", "question": 5, "answers": ["x"]}', "field 'question' must be a string, got number"),
    ('{"id": "2", "question": "b?"}', "missing field 'answers'"),
    ('{"id": "2", "question": "b?", "answers": []}', "field 'answers' is an empty array"),
    ('{"id": "2", "question": "b?", "answers": "x"}', "field 'answers' must be an array of strings, got string"),
    ('{"id": "2", "question": "b?", "answers": ["x", 3]}', "answers[1] must be a string, got number"),
    ('{"id": "2", "question": "b?", "answers": ["x", ""]}', "answers[1] is an empty string"),
    ('{"id": "2", "question": "b?", "answers": ["x"], "gold_passage_id": ""}', "field 'gold_passage_id' is empty"),
    ('{"id": ["2"], "question": "b?", "answers": ["x"]}', "field 'id' must be a string, got array"),
    ('{"id": "2", "question": "b?", "answers": ["x"]', "malformed JSON"),
    ('["b?", ["x"]]', "expected a JSON object, got array"),
])
def test_bad_squad_open_record_is_named_by_file_and_line(tmp_path, second_line, message):
    path = tmp_path / "qa.jsonl"
    path.write_text(GOOD_SQUAD + "\n" + second_line + "\n")
    error = _error(path, "squad_open")
    assert error.startswith(f"{path}:3: ") and message in error


def test_nq_open_empty_answer_list(tmp_path):
    path = tmp_path / "nq.jsonl"
    path.write_text('{"question": "a?", "answer": ["x"]}\n{"question": "b?", "answer": ["y"]}\n'
                    '{"question": "c?", "answer": []}\n')
    assert _error(path).startswith(f"{path}:3: field 'answer' is an empty array")


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "nq.jsonl"
    path.write_bytes(b'{"question": "a?", "answer": ["x"]}\n{"question": "b\xff?", "answer": ["y"]}\n')
    assert _error(path, "nq_open").startswith(f"{path}:2: not UTF-8")


WEBQUESTIONS_LINES = [
    "[",
    ' {"qId": "a", "qText": "q1?", "answers": ["x"]},',
    ' {"qId": "b",',
    '  "qText": "q2?", "answers": ["y"]},',
    ' {"qId": "c", "qText": "q3?", "answers": ["z"]}',
    "]",
]


def _webquestions(tmp_path, lines):
    path = tmp_path / "wq.json"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_webquestions_item_spanning_lines_has_the_line_it_starts_on(tmp_path):
    examples = read_qa(str(_webquestions(tmp_path, WEBQUESTIONS_LINES)))
    assert [(e.id, e.line) for e in examples] == [("a", 2), ("b", 3), ("c", 5)]


@pytest.mark.parametrize("replaced_line, replacement, line, message", [
    (4, '  "answers": ["y"]},', 3, "missing field 'qText'"),  # The item starts on line 3.
    (5, ' {"qId": "c", "qText": "q3?"}', 5, "missing field 'answers'"),
    (5, ' {"qId": "c", "qText": "q3?", "answers": []}', 5, "field 'answers' is an empty array"),
    (5, ' "q3?"', 5, "expected a JSON object, got string"),
    (4, '  "qText": "q2?" "answers": ["y"]},', 4, "malformed JSON"),
    (5, ' {"qId": "c", "qText": "q3?", "answers": ["z"]},', 6, "malformed JSON"),  # Trailing comma before "]".
    (5, ' {"qId": "c", "qText": "q3?", "answers": ["z"]} {}', 5, "expected ',' or ']'"),
])
def test_bad_webquestions_item_is_named_by_file_and_line(tmp_path, replaced_line, replacement, line, message):
    lines = list(WEBQUESTIONS_LINES)
    lines[replaced_line - 1] = replacement
    path = _webquestions(tmp_path, lines)
    error = _error(path)
    assert error.startswith(f"{path}:{line}: ") and message in error


def test_webquestions_not_an_array_or_text_after_it(tmp_path):
    path = tmp_path / "wq.json"
    path.write_text('\n{"qId": "a", "qText": "q?", "answers": ["x"]}\n')
    assert _error(path).startswith(f"{path}:2: expected a JSON array")
    path.write_text('[{"qId": "a", "qText": "q?", "answers": ["x"]}]\n\n]\n')
    assert _error(path).startswith(f"{path}:3: unexpected text after the end of the JSON array")


@pytest.mark.parametrize("line, message", [
    ("3\tfactoid\tWhat?\t(unclosed", "the answer '(unclosed' is not a valid regular expression"),
    ("3\tfactoid\tWhat?", "expected 4 tab-separated columns (id, type, question, answer-regex), found 3"),
    ("3\tfactoid\tWhat?\tx\ty", "found 5"),
    ("3\tfactoid\t \tChina", "column 'question' is empty"),
])
def test_bad_curatedtrec_line_is_named_by_file_and_line(tmp_path, line, message):
    path = tmp_path / "trec.tsv"
    path.write_text("1\tfactoid\tWhere?\tChina\n2\tfactoid\tWho?\tSmith|Jones\n" + line + "\n")
    error = _error(path)
    assert error.startswith(f"{path}:3: ") and message in error


def test_unknown_format_name(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(GOOD_SQUAD)
    error = _error(path, "trivia_qa")
    assert error.startswith(f"{path}: unknown QA format 'trivia_qa'")
    assert all(name in error for name in FORMATS)


def test_unknown_suffix_asks_for_the_format(tmp_path):
    path = tmp_path / "qa.txt"
    path.write_text(GOOD_SQUAD)
    error = _error(path)
    assert error.startswith(f"{path}: cannot tell the QA format from the suffix '.txt'")
    assert "--format" in error and all(name in error for name in FORMATS)
    assert read_qa(str(path), "squad_open")[0].gold_passage_id == "Doc#0"


def test_jsonl_with_neither_answer_key_asks_for_the_format(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('\n{"question": "a?", "answer_list": ["x"]}\n')
    error = _error(path)
    assert error.startswith(f"{path}:2: cannot tell the QA format") and "--format" in error


def test_missing_and_empty_files(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert _error(missing) == f"{missing}: QA file not found"
    for name, content in (("blank.jsonl", "\n \n"), ("blank.tsv", "\n"), ("empty.json", "[\n]\n"),
                          ("blank.json", "")):
        path = tmp_path / name
        path.write_text(content)
        assert re.fullmatch(rf"{re.escape(str(path))}: no questions.*", _error(path))

"""Every kind of bad input: a clear error naming file and line, or a counted dead letter."""

import json

import pytest
import tensorflow as tf

from beam_pipelines import chunk_corpus
from beam_pipelines.document_sources import InputError

GOOD = {"id": "a", "title": "Tesla", "text": "Nikola Tesla was born in 1856. He died in 1943."}


def _jsonl(path, lines):
    """Writes raw lines (bytes or str; dicts become JSON)."""
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            f.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
    return path


def _fail(capsys, path, *extra):
    """Runs the CLI in fail mode; returns (exit code, stderr)."""
    code = chunk_corpus.main([f"--input={path}", f"--output_dir={path.parent / 'out'}", "--config=tiny", *extra])
    return code, capsys.readouterr().err


BAD_LINES = [
    ("malformed_json", '{"id": "b", "title": "T" "text": "x"}', ":2: malformed JSON (Expecting ',' delimiter at column 26)"),
    ("malformed_json", "[1, 2]", ":2: expected a JSON object, got list"),
    ("missing_field", '{"id": "b", "text": "Some text."}', ":2: missing field 'title'"),
    ("missing_field", '{"title": "T", "text": "Some text."}', ":2: missing field 'id'"),
    ("empty_field", '{"id": "b", "title": "T", "text": "   "}', ":2: empty field 'text'"),
    ("empty_field", '{"id": "", "title": "T", "text": "Text."}', ":2: empty field 'id'"),
    ("wrong_type", '{"id": 7, "title": "T", "text": "Text."}', ":2: field 'id' must be a string, got int"),
    ("invalid_utf8", b'{"id": "b", "title": "T", "text": "caf\xe9"}', ":2: not valid UTF-8 (byte 38: b'\\xe9')"),
    ("no_wordpieces", '{"id": "b", "title": "T", "text": "\\u200b"}', ":2: document 'b': text yields no wordpieces"),
]


@pytest.mark.parametrize("kind, line, message", BAD_LINES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_LINES)])
def test_a_bad_line_stops_the_run_naming_file_and_line(tmp_path, capsys, kind, line, message):
    path = _jsonl(tmp_path / "docs.jsonl", [GOOD, line, {**GOOD, "id": "z"}])
    code, err = _fail(capsys, path)
    assert code == 1
    assert f"error: {path}{message}" in err
    assert "--on_bad_record=dead_letter" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_duplicate_ids_name_both_lines(tmp_path, capsys):
    path = _jsonl(tmp_path / "docs.jsonl", [GOOD, {**GOOD, "id": "b"}, {**GOOD, "text": "Another text."}])
    code, err = _fail(capsys, path)
    assert code == 1
    assert f"error: {path}:3: duplicate document id 'a', first at {path}:1" in err


def test_an_empty_file_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, err = _fail(capsys, empty)
    assert code == 1
    assert f"error: {empty}: the file holds no records" in err


def test_a_missing_path_is_an_error(tmp_path, capsys):
    code, err = _fail(capsys, tmp_path / "absent.jsonl")
    assert code == 2
    assert f"error: --input '{tmp_path / 'absent.jsonl'}': no such file" in err


def test_an_unknown_file_suffix_asks_for_the_format(tmp_path, capsys):
    path = _jsonl(tmp_path / "docs.txt", [GOOD])
    code, err = _fail(capsys, path)
    assert code == 2 and "cannot tell the format" in err and "--input_format=jsonl" in err
    assert chunk_corpus.main([f"--input={path}", f"--output_dir={tmp_path / 'ok'}", "--config=tiny",
                              "--input_format=jsonl"]) == 0


def test_bad_tfrecord_inputs_name_the_record(tmp_path, capsys):
    path = tmp_path / "docs.tfrecord"
    good = tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()])) for k, v in GOOD.items()}))
    no_title = tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()])) for k, v in GOOD.items() if k != "title"}))
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(good.SerializeToString())
        writer.write(no_title.SerializeToString())
    code, err = _fail(capsys, path)
    assert code == 1 and f"error: {path}:2: missing field 'title'" in err

    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(good.SerializeToString())
        writer.write(b"\xff\xfe not a proto")
    code, err = _fail(capsys, path, "--overwrite")
    assert code == 1 and f"error: {path}:2: not a serialized tf.train.Example" in err

    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])  # The last record is cut short.
    code, err = _fail(capsys, path, "--overwrite")
    assert code == 1 and f"error: {path}:2: corrupt TFRecord" in err


def test_dead_letter_mode_sets_every_bad_record_aside_and_counts_it(tmp_path):
    lines = [GOOD] + [line for _, line, _ in BAD_LINES] + [{**GOOD, "text": "Duplicate."}, {**GOOD, "id": "last"}]
    path = _jsonl(tmp_path / "docs.jsonl", lines)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    manifest = chunk_corpus.run([f"--input={path}", f"--input={empty}", f"--output_dir={out}", "--config=tiny",
                                 "--on_bad_record=dead_letter"])
    assert manifest.num_documents == 2  # "a" and "last"
    assert manifest.dead_letters_by_kind == {
        "duplicate_id": 1, "empty_field": 2, "empty_file": 1, "invalid_utf8": 1, "malformed_json": 2,
        "missing_field": 2, "no_wordpieces": 1, "wrong_type": 1}
    assert manifest.num_dead_letters == 11
    dead = [json.loads(line) for name in manifest.dead_letter_shards for line in (out / name).read_text().splitlines()]
    assert len(dead) == 11
    assert sorted((d["line"], d["kind"]) for d in dead if d["file"] == str(path)) == [
        (2 + i, kind) for i, (kind, _, _) in enumerate(BAD_LINES)] + [(11, "duplicate_id")]
    assert {(d["file"], d["line"], d["kind"]) for d in dead if d["file"] == str(empty)} == {(str(empty), 0, "empty_file")}


def test_dead_letter_mode_with_nothing_good_is_still_an_error(tmp_path):
    path = _jsonl(tmp_path / "docs.jsonl", ["not json", '{"id": "x"}'])
    with pytest.raises(InputError, match=r"no blocks were produced.*all 2 record\(s\) were rejected"):
        chunk_corpus.run([f"--input={path}", f"--output_dir={tmp_path / 'out'}", "--config=tiny",
                          "--on_bad_record=dead_letter"])


def test_bad_config_and_vocabulary_are_errors_before_the_pipeline(tmp_path, capsys):
    path = _jsonl(tmp_path / "docs.jsonl", [GOOD])
    code, err = _fail(capsys, path, "--override=features.blok_length=3")
    assert code == 2 and "unknown key 'features.blok_length'" in err
    code, err = _fail(capsys, path, f"--override=features.vocab_file={tmp_path / 'none.txt'}")
    assert code == 2 and "vocabulary file not found" in err

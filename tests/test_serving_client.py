"""The serving client (`python -m realm_tf.serving.client`) against servers built here around an exact QA export.

TF Serving itself is not installed, so each protocol gets benchmarks.prediction_service's
stand-in that speaks it (a real gRPC PredictionService, and TF Serving's REST API), both
calling the export's signatures as TF Serving does. The client's answers must be the
export's own, exactly.
"""

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import prediction_service
from benchmarks.prediction_service import PredictionService, jsonable
from realm_tf.export.qa_export import OUTPUTS
from realm_tf.serving import client

from conftest import REPO
from test_qa_export import QUESTIONS

MODEL_NAME = "realm_qa"
OPTIONS = {"k": 3, "max_answer_length": 4}


def _direct(loaded, questions, signature="serving_default", **options):
    """The export's own outputs, as JSON-like lists."""
    outputs = PredictionService(loaded, MODEL_NAME).predict(MODEL_NAME, signature, dict(
        questions=np.array(questions, object), **options))
    return {name: jsonable(value.tolist()) for name, value in outputs.items()}


def _assert_answers_are(answers, outputs, questions):
    """Client answers hold exactly the export's outputs (columnar lists), question by question."""
    assert [a["question"] for a in answers] == questions
    for row, answer in enumerate(answers):
        assert answer["answer"] == outputs["answer"][row]
        assert answer["score"] == outputs["score"][row]
        for key in ("answer_block_id", "answer_begin", "answer_end"):
            assert answer[key] == outputs[key][row]
        evidence = answer["evidence"]
        assert [e["rank"] for e in evidence] == list(range(1, len(outputs["block_ids"][row]) + 1))
        for key, name in (("block_id", "block_ids"), ("probability", "probabilities"), ("title", "titles"),
                          ("text", "texts")):
            assert [e[key] for e in evidence] == outputs[name][row]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def loaded(exact_qa_export):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    return tf.saved_model.load(exact_qa_export)


@pytest.fixture(scope="module")
def direct(loaded):
    """The export's answers to QUESTIONS, by both signatures."""
    return {"serving_default": _direct(loaded, QUESTIONS),
            "answer_with_options": _direct(loaded, QUESTIONS, "answer_with_options", **OPTIONS)}


@pytest.fixture(scope="module")
def grpc_server(loaded):
    """A gRPC PredictionService on localhost serving the export as MODEL_NAME; yields HOST:PORT."""
    with prediction_service.grpc_server(PredictionService(loaded, MODEL_NAME)) as address:
        yield address


@pytest.fixture(scope="module")
def rest_server(loaded):
    """TF Serving's REST API on localhost serving the export as MODEL_NAME; yields HOST:PORT."""
    with prediction_service.rest_server(PredictionService(loaded, MODEL_NAME)) as address:
        yield address


def test_grpc_client_answers_as_the_export(grpc_server, direct):
    assert set(client.OUTPUT_NAMES) == set(OUTPUTS)
    _assert_answers_are(client.predict_grpc(grpc_server, QUESTIONS, model_name=MODEL_NAME), direct["serving_default"],
                        QUESTIONS)
    answers = client.predict_grpc(grpc_server, QUESTIONS, model_name=MODEL_NAME, **OPTIONS)
    _assert_answers_are(answers, direct["answer_with_options"], QUESTIONS)
    assert all(len(a["evidence"]) == OPTIONS["k"] for a in answers)
    assert any(a["answer"] for a in answers), "the reader picks some valid span"
    assert client.predict_grpc(grpc_server, [], model_name=MODEL_NAME) == []


def test_client_command_over_grpc(grpc_server, direct):
    done = subprocess.run([sys.executable, "-m", "realm_tf.serving.client", f"--server={grpc_server}",
                           "--protocol=grpc", f"--model_name={MODEL_NAME}", "--json", *QUESTIONS],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_answers_are(json.loads(done.stdout), direct["serving_default"], QUESTIONS)


def test_rest_client_answers_as_the_export(rest_server, direct, tmp_path, capsys):
    _assert_answers_are(client.predict_rest(rest_server, QUESTIONS, model_name=MODEL_NAME), direct["serving_default"],
                        QUESTIONS)
    answers = client.predict_rest(rest_server, QUESTIONS, signature="answer_with_options", **OPTIONS)
    _assert_answers_are(answers, direct["answer_with_options"], QUESTIONS)

    # The command's text output: per question the answer, its score, and the evidence by rank.
    questions_file = tmp_path / "questions.txt"
    questions_file.write_text("\n".join(QUESTIONS[1:3]) + "\n\n", encoding="utf-8")
    assert client.main([f"--server={rest_server}", "--protocol=rest", "--k=3", "--max_answer_length=4",
                        f"--questions_file={questions_file}", QUESTIONS[0]]) == 0
    printed = capsys.readouterr().out
    assert printed == client.format_answers(answers[:3]) + "\n"
    for answer in answers[:3]:
        assert f"Q: {answer['question']}\n" in printed
        if answer["answer"]:
            assert f"A: {answer['answer']}    (score {answer['score']:.3f}, block {answer['answer_block_id']})" \
                in printed
        for block in answer["evidence"]:
            assert f"{block['rank']:>2}. p={block['probability']:.3f}  [{block['title']}] " in printed


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_server_down_exits_2_naming_the_address(protocol, capsys):
    address = f"127.0.0.1:{_free_port()}"
    assert client.main([f"--server={address}", f"--protocol={protocol}", "--timeout=20", "who?"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot reach a {protocol.replace('grpc', 'gRPC').replace('rest', 'REST')} "
                            f"server at {address}: "), error


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_server_errors_are_reported(protocol, grpc_server, rest_server, capsys):
    server = {"grpc": grpc_server, "rest": rest_server}[protocol]
    refused = re.escape(f"error: the {'gRPC' if protocol == 'grpc' else 'REST'} server at {server} refused the "
                        "request ")
    cases = [
        (["--signature=answer_with_nothing"], r"\((FAILED_PRECONDITION|HTTP 400)\): "
                                              r'Serving signature key "answer_with_nothing" not found\.'),
        (["--model_name=realm_qa_other"], r"\((NOT_FOUND|HTTP 404)\): Servable not found for request: "
                                          r"Latest\(realm_qa_other\)"),
        (["--k=100000", "--max_answer_length=3"], r"\((INVALID_ARGUMENT|HTTP 400)\): .*k must be at most max_k, "
                                                  r"100 \(as exported, --max_k\)"),
    ]
    for args, message in cases:
        assert client.main([f"--server={server}", f"--protocol={protocol}", *args, "who?"]) == 2
        error = capsys.readouterr().err
        assert re.match(refused + message, error, re.DOTALL), error


def test_bad_arguments_exit_2_before_any_request(tmp_path, capsys):
    # No server listens on port 9: each of these must fail on its arguments, not on the connection.
    cases = [
        (["--server=localhost", "who?"], "the server must be HOST:PORT, e.g. localhost:8500; got 'localhost'"),
        (["--server=127.0.0.1:9", "--k=3", "who?"], "k and max_answer_length go together"),
        (["--server=127.0.0.1:9", "--signature=answer_with_options", "who?"],
         "answer_with_options needs k and max_answer_length"),
        (["--server=127.0.0.1:9", "--signature=serving_default", "--k=3", "--max_answer_length=3", "who?"],
         "serving_default takes only the questions"),
        (["--server=127.0.0.1:9"], "no questions: give them as arguments or with --questions_file"),
        (["--server=127.0.0.1:9", f"--questions_file={tmp_path / 'missing.txt'}"], "cannot read --questions_file"),
    ]
    for args, message in cases:
        assert client.main(args) == 2
        assert message in capsys.readouterr().err
    for args, message in ((["--k=0"], "argument --k: must be a positive integer, got 0"),
                          (["--max_answer_length=x"], "argument --max_answer_length: not an integer: 'x'"),
                          (["--timeout=0"], "--timeout must be positive, got 0")):
        with pytest.raises(SystemExit) as exit_info:
            client.main(["--server=127.0.0.1:9", *args, "who?"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_format_answers_shows_the_answer_in_its_block():
    text = "Filler words come first. " * 20 + "Quillfeather Bridge was built in 1642 by Tobías Wren." + " More." * 40
    answers = [{"question": "When was it built?", "answer": "1642", "score": 3.14159, "answer_block_id": 7,
                "evidence": [{"rank": 1, "block_id": 9, "probability": 0.6, "title": "Other", "text": "Short text."},
                             {"rank": 2, "block_id": 7, "probability": 0.4, "title": "Quillfeather Bridge",
                              "text": text}]},
               {"question": "?", "answer": "", "score": -10000.0, "answer_block_id": -1, "evidence": []}]
    lines = client.format_answers(answers, snippet_chars=60).splitlines()
    assert lines[:3] == ["Q: When was it built?", "A: 1642    (score 3.142, block 7)",
                         "    1. p=0.600  [Other] Short text."]
    source = lines[3]
    assert source.startswith("  * 2. p=0.400  [Quillfeather Bridge] …") and source.endswith("…")
    snippet = source.split("] ", 1)[1].strip("…")
    assert len(snippet) == 60 and "built in 1642 by" in snippet
    assert lines[5:7] == ["Q: ?", "A: (none: no retrieved block holds a valid span)"]

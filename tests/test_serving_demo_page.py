"""The demo page (`python -m realm_tf.serving.demo`): its JSON API, its errors, the command, and the page in Chromium.

The model is conftest's exact QA export, asked directly
(--saved_model) and through that module's stand-in of TF Serving's REST API (--server).
The browser test drives Debian's headless Chromium through chromedriver and is skipped,
with the install command, where they are not installed.
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from benchmarks.browser import Browser, find_browser
from realm_tf.serving import demo

from conftest import REPO
from test_qa_export import QUESTIONS
from test_serving_client import MODEL_NAME, _free_port, direct, loaded, rest_server  # noqa: F401  (fixtures)

ASKED = [q for q in QUESTIONS if q.strip()][:3]


@pytest.fixture(scope="module")
def answerer(exact_qa_export):
    return demo.SavedModelAnswerer(exact_qa_export)


@pytest.fixture(scope="module")
def page(answerer):
    with demo.serving_in_background(answerer, max_question_chars=200) as url:
        yield url


def _call(url, path, body=None, raw=None, method=None):
    """(status, decoded JSON) of a request to the page's server."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method or ("POST" if data else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode("utf-8"))


def _assert_is_the_exports(body, outputs, row):
    """A page answer agrees with the export's own answer to the same question (row of a batch call)."""
    assert body["answer"] == outputs["answer"][row]
    # Block ids come as strings: JavaScript's numbers would round int64 ids.
    assert body["answer_block_id"] == str(outputs["answer_block_id"][row])
    assert (body["answer_begin"], body["answer_end"]) == (outputs["answer_begin"][row], outputs["answer_end"][row])
    assert body["score"] == pytest.approx(outputs["score"][row], abs=1e-3)
    assert [e["block_id"] for e in body["evidence"]] == [str(i) for i in outputs["block_ids"][row]]
    assert [e["text"] for e in body["evidence"]] == outputs["texts"][row]
    assert body["seconds"] > 0


def test_the_json_api_answers_as_the_export(page, direct):
    status, html = None, None
    with urllib.request.urlopen(page, timeout=30) as response:
        status, html = response.status, response.read().decode("utf-8")
    assert status == 200 and 'id="question"' in html
    # Self-contained: no script, style or image comes from elsewhere.
    assert "http://" not in html and "https://" not in html and "src=" not in html
    outputs = direct["serving_default"]
    for question in ASKED:
        row = QUESTIONS.index(question)
        status, body = _call(page, "/api/answer", {"question": question})
        assert status == 200 and body["question"] == question
        _assert_is_the_exports(body, outputs, row)
        if body["answer"]:  # The highlight is the answer, in the block it came from.
            source = next(e for e in body["evidence"] if e["block_id"] == body["answer_block_id"])
            assert source["text"][body["answer_begin"]:body["answer_end"]] == body["answer"]
    assert any(_call(page, "/api/answer", {"question": q})[1]["answer"] for q in ASKED)
    # GET, for scripts: the same answer; k and the length reach answer_with_options.
    status, body = _call(page, "/api/answer?" + urllib.parse.urlencode({"question": ASKED[0]}))
    assert status == 200 and body["answer"] == outputs["answer"][QUESTIONS.index(ASKED[0])]
    status, body = _call(page, "/api/answer", {"question": ASKED[0], "k": 3, "max_answer_length": 4})
    assert status == 200 and len(body["evidence"]) == 3
    _assert_is_the_exports(body, direct["answer_with_options"], QUESTIONS.index(ASKED[0]))
    status, model = _call(page, "/api/model")
    assert status == 200 and model["retrieval"] == "exact" and model["top_k"] == len(outputs["block_ids"][0])


@pytest.mark.parametrize("request_kwargs, status, message", [
    ({"body": {"question": ""}}, 400, "the question is empty"),
    ({"body": {"question": " \t\n"}}, 400, "the question is empty"),
    ({"body": {"question": "why? " * 100}}, 413, "500 characters long; this page takes at most 200"),
    ({"raw": '{"question": "caf\xe9?"}'.encode("latin-1")}, 400, "the request body is not UTF-8: byte 0xe9"),
    ({"raw": b'{"question": "\\ud800?"}'}, 400, "the question is not UTF-8 text"),
    ({"path": "/api/answer?question=caf%E9"}, 400, "the question parameter is not UTF-8: byte 0xe9"),
    ({"raw": b"question=who"}, 400, "the request body is not JSON"),
    ({"body": ["who?"]}, 400, "must be a JSON object"),
    ({"body": {"q": "who?"}}, 400, 'no "question" string'),
    ({"body": {"question": "who?", "k": 3}}, 400, "k and max_answer_length go together"),
    ({"body": {"question": "who?", "k": 0, "max_answer_length": 3}}, 400, "k must be a positive integer"),
    # The export's own checks, as one line each.
    ({"body": {"question": "who?", "k": 10 ** 6, "max_answer_length": 3}}, 400,
     "the model refused the request: k must be at most max_k, 100 (as exported, --max_k)"),
    ({"body": {"question": "who?", "k": 2, "max_answer_length": 10 ** 6}}, 400,
     "the model refused the request: max_answer_length must be at most reader.max_span_length, "),
    ({"path": "/nowhere"}, 404, "no page at /nowhere"),
])
def test_bad_requests_get_a_status_and_one_clear_message(page, request_kwargs, status, message):
    path = request_kwargs.get("path", "/api/answer")
    got, body = _call(page, path, body=request_kwargs.get("body"), raw=request_kwargs.get("raw"))
    assert got == status and set(body) == {"error"}
    assert message in body["error"] and "Traceback" not in body["error"] and "\n" not in body["error"]


def test_a_tf_serving_behind_the_page_and_one_that_is_not_there(rest_server, direct):  # noqa: F811
    outputs = direct["serving_default"]
    with demo.serving_in_background(demo.ServerAnswerer(rest_server, "rest", MODEL_NAME)) as url:
        status, body = _call(url, "/api/answer", {"question": ASKED[0]})
        assert status == 200
        _assert_is_the_exports(body, outputs, QUESTIONS.index(ASKED[0]))
    # A model the server does not serve: TF Serving's own message, as a bad gateway.
    with demo.serving_in_background(demo.ServerAnswerer(rest_server, "rest", "no_such_model")) as url:
        status, body = _call(url, "/api/answer", {"question": ASKED[0]})
        assert status == 502 and "Servable not found" in body["error"]
    # No server at all: unavailable, naming the address.
    dead = f"127.0.0.1:{_free_port()}"
    with demo.serving_in_background(demo.ServerAnswerer(dead, "rest", MODEL_NAME)) as url:
        status, body = _call(url, "/api/answer", {"question": ASKED[0]})
        assert status == 503 and f"cannot reach a REST server at {dead}" in body["error"]


def test_the_command_serves_the_page_and_refuses_a_missing_model(exact_qa_export, tmp_path):
    missing = tmp_path / "no_export"
    done = subprocess.run([sys.executable, "-m", "realm_tf.serving.demo", f"--saved_model={missing}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: ") and str(missing) in done.stderr and \
        len(done.stderr.strip().splitlines()) == 1
    process = subprocess.Popen([sys.executable, "-m", "realm_tf.serving.demo", f"--saved_model={exact_qa_export}", "--port=0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Open http://"):
                break
        assert lines and lines[-1].startswith("Open http://127.0.0.1:"), (lines, process.poll())
        url = lines[-1].split()[1]
        status, body = _call(url, "/api/answer", {"question": ASKED[0]})
        assert status == 200 and body["question"] == ASKED[0]
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(find_browser() is None, reason="Chromium is not installed (apt-get install chromium "
                                                   "chromium-driver)")
def test_the_page_in_headless_chromium(page, direct):
    outputs = direct["serving_default"]
    # A question the reader answers, so that there is a span to highlight.
    question = next(q for q in ASKED if outputs["answer"][QUESTIONS.index(q)])
    row = QUESTIONS.index(question)
    with Browser() as browser:
        browser.get(page)
        browser.type("#question", question)
        browser.click("#submit")
        mark = browser.wait_for("li.passage.source mark.answer")
        assert mark.text == outputs["answer"][row].strip()
        assert browser.find("#answer").text == outputs["answer"][row].strip()
        passages = browser.find_all("li.passage")
        assert [p.attribute("data-block-id") for p in passages] == [str(i) for i in outputs["block_ids"][row]]
        assert len(browser.find_all("li.passage.source")) == 1
        assert [t.text for t in browser.find_all("li.passage .title")] == outputs["titles"][row]
        assert "answered in" in browser.find("#answer-meta").text
        assert browser.find("#model").text.startswith("SavedModel ")
        # A bad request: the message on the page, the previous answer gone.
        browser.type("#question", "   ")
        browser.click("#submit")
        error = browser.wait_for("#error")
        assert error.text == "the question is empty: type a question"
        assert not browser.find("#result").displayed

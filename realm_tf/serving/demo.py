"""A local web page to ask a QA export questions: `python -m realm_tf.serving.demo`.

    python -m realm_tf.serving.demo --saved_model runs/quickstart/saved_models/realm_qa/1
    python -m realm_tf.serving.demo --server localhost:8501 --protocol rest --model_name realm_qa

then open http://127.0.0.1:8080/ in a browser. The page has a question box; it shows the
answer with its span score, the time the answer took, and the passages read, best first:
title, p(z|x) as a bar, and the text with the answer highlighted in the passage it came
from. --saved_model loads a QA export (`python -m realm_tf.export`) into this process and
calls its signatures as TF Serving does; --server asks a running TF Serving instead
(`realm_tf.serving.client`, gRPC or REST), so the page shows what production answers.

Endpoints (all JSON but the page):

  GET  /             the page: one self-contained HTML file, nothing loaded from elsewhere
  POST /api/answer   {"question": str, "k": int, "max_answer_length": int} (k and the length
                     optional, together) -> {"question", "answer", "score", "answer_block_id",
                     "answer_begin", "answer_end", "evidence": [{"rank", "block_id",
                     "probability", "title", "text"}], "seconds"}; answer_begin/end index the
                     characters (code points) of the answer's block text, -1 without an answer;
                     block ids are strings (int64, past what a JavaScript number holds)
  GET  /api/answer?question=...   the same, for scripts and curl
  GET  /api/model    what answers: {"source", "retrieval", "top_k", "max_answer_length"}

Errors are {"error": message} with an HTTP status: 400 for an empty question, a question or
body that is not UTF-8, a body that is not JSON, or bad options; 413 for a question over
--max_question_chars characters (the model reads only its first features.query_length
wordpieces anyway) or a body over 1 MiB; 502 when the model refuses the request (a TF
Serving that does not serve --model_name, k past the blocks, ...); 503 when no server
answers at --server. Built on the standard library's http.server: the page needs one
route and one JSON call, which a web framework would add a dependency for and nothing else.
"""

import argparse
import contextlib
import http.server
import json
import logging
import pathlib
import sys
import threading
import time
import urllib.parse
from typing import Any, Dict, Iterator, List, Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, positive_int, run_command
from realm_tf.errors import RealmError
from realm_tf.serving import client

PAGE_PATH = pathlib.Path(__file__).resolve().parent / "demo.html"
DEFAULT_PORT = 8080
DEFAULT_MAX_QUESTION_CHARS = 1000
MAX_BODY_BYTES = 1 << 20

logger = logging.getLogger("realm_tf.serving.demo")


class DemoRequestError(RealmError):
    """A request the page refuses or the model could not answer: the message for the page and an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SavedModelAnswerer:
    """Answers with a QA export loaded into this process, through its signatures.

    Args:
      export_dir: a QA export's version directory.

    Raises:
      QaExportError: `export_dir` is not a QA export of this version of realm_tf.
    """

    def __init__(self, export_dir: str):
        import tensorflow as tf

        from realm_tf.artifacts.qa_export import load_qa_export

        self._tf = tf
        info, self._loaded = load_qa_export(export_dir)
        self.description = {"source": f"SavedModel {export_dir}", "retrieval": info.retrieval,
                            "top_k": info.top_k, "max_answer_length": info.max_answer_length}
        self._source = export_dir

    def answer(self, questions: List[str], k: Optional[int] = None,
               max_answer_length: Optional[int] = None) -> List[Dict[str, Any]]:
        """`client.predict_grpc`'s answers, from the loaded export; DemoRequestError(400) if it refuses."""
        tf = self._tf
        inputs = {"questions": tf.constant(questions, tf.string)}
        if k is None:
            signature = self._loaded.signatures["serving_default"]
        else:
            signature = self._loaded.signatures["answer_with_options"]
            inputs.update(k=tf.constant(k, tf.int32), max_answer_length=tf.constant(max_answer_length, tf.int32))
        try:
            outputs = signature(**inputs)
        except tf.errors.InvalidArgumentError as e:
            from realm_tf.export.qa_export import refusal_message

            raise DemoRequestError(400, f"the model refused the request: {refusal_message(e)}") from None
        columns = {name: client.decoded_strings(value.numpy().tolist()) for name, value in outputs.items()}
        return client.answers_from_outputs(columns, questions, self._source)


class ServerAnswerer:
    """Answers with a QA export served by TF Serving, over gRPC or REST (`realm_tf.serving.client`)."""

    def __init__(self, server: str, protocol: str = "rest", model_name: str = "realm_qa",
                 timeout: float = client.DEFAULT_TIMEOUT_S):
        self._predict = client.predict_grpc if protocol == "grpc" else client.predict_rest
        self._server, self._model_name, self._timeout = server, model_name, timeout
        self.description = {"source": f"TF Serving {protocol} {server}, model {model_name}", "retrieval": None,
                            "top_k": None, "max_answer_length": None}

    def answer(self, questions: List[str], k: Optional[int] = None,
               max_answer_length: Optional[int] = None) -> List[Dict[str, Any]]:
        """The server's answers; DemoRequestError 503 when it cannot be reached, 502 when it refuses."""
        try:
            return self._predict(self._server, questions, model_name=self._model_name, k=k,
                                 max_answer_length=max_answer_length, timeout=self._timeout)
        except client.ServerUnreachableError as e:
            raise DemoRequestError(503, str(e)) from None
        except client.ServingClientError as e:
            raise DemoRequestError(502, str(e)) from None


def _option(request: Dict[str, Any], name: str) -> Any:
    """The request's `name`, a query string's digits as an int; the client checks it."""
    value = request.get(name)
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def answer_request(answerer, request: Any, max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS) -> Dict[str, Any]:
    """One question of the JSON API, checked, answered and timed.

    Args:
      answerer: a `SavedModelAnswerer` or `ServerAnswerer`.
      request: the decoded request, {"question": str, "k": int, "max_answer_length": int}.
      max_question_chars: the longest question taken.

    Returns:
      The answer (`client.predict_grpc`'s dict) with "seconds", the model's wall time, and
      the block ids as strings (JSON numbers past 2**53 lose digits in JavaScript).

    Raises:
      DemoRequestError: the request is refused, or the model could not answer it.
    """
    if not isinstance(request, dict):
        raise DemoRequestError(400, 'the request must be a JSON object, {"question": "..."}')
    question = request.get("question")
    if not isinstance(question, str):
        raise DemoRequestError(400, 'the request has no "question" string')
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as e:  # A lone surrogate, as JSON's \ud800 escapes allow.
        raise DemoRequestError(400, f"the question is not UTF-8 text: {e.reason} at character {e.start}") from None
    if not question.strip():
        raise DemoRequestError(400, "the question is empty: type a question")
    if len(question) > max_question_chars:
        raise DemoRequestError(413, f"the question is {len(question):,} characters long; this page takes at most "
                                    f"{max_question_chars:,} (the model reads only its first wordpieces)")
    k, max_answer_length = _option(request, "k"), _option(request, "max_answer_length")
    try:  # The serving client's checks: both or neither, positive integers.
        client.signature_and_options(None, k, max_answer_length)
    except client.ServingClientError as e:
        raise DemoRequestError(400, str(e)) from None
    begin = time.perf_counter()
    answer = answerer.answer([question], k=k, max_answer_length=max_answer_length)[0]
    seconds = time.perf_counter() - begin
    # Block ids are int64 hashes, past the 2**53 that a JavaScript number holds exactly: strings.
    evidence = [{**block, "block_id": str(block["block_id"])} for block in answer["evidence"]]
    return {**answer, "answer_block_id": str(answer["answer_block_id"]), "evidence": evidence, "seconds": seconds}


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DemoRequestError(400, f"{what} is not UTF-8: byte 0x{data[e.start]:02x} at position {e.start}") from None


def make_server(answerer, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS) -> http.server.ThreadingHTTPServer:
    """The page's HTTP server (not yet serving: call `serve_forever`); port 0 picks a free one."""
    page = PAGE_PATH.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "realm-tf-demo"

        def do_GET(self):  # noqa: N802  (http.server's method name)
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            elif url.path == "/api/model":
                self._send_json(200, answerer.description)
            elif url.path == "/api/answer":
                # Latin-1 maps bytes to characters one to one, so each value's bytes can be checked as UTF-8.
                query = urllib.parse.parse_qs(url.query, keep_blank_values=True, encoding="latin-1")
                self._answer(lambda: {name: _utf8(values[-1].encode("latin-1"), f"the {name} parameter")
                                      for name, values in query.items()})
            else:
                self._send_json(404, {"error": f"no page at {url.path}: the page is at /, the API at /api/answer"})

        def do_POST(self):  # noqa: N802
            if urllib.parse.urlsplit(self.path).path != "/api/answer":
                self._send_json(404, {"error": f"POST goes to /api/answer, not {self.path}"})
                return
            self._answer(self._json_body)

        def _json_body(self):
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit():
                raise DemoRequestError(400, f"the Content-Length header is not a byte count: {length!r}")
            length = int(length)
            if length > MAX_BODY_BYTES:
                raise DemoRequestError(413, f"the request body is {length:,} bytes; at most {MAX_BODY_BYTES:,}")
            text = _utf8(self.rfile.read(length), "the request body")
            try:
                return json.loads(text)
            except ValueError as e:
                raise DemoRequestError(400, f"the request body is not JSON: {e}") from None

        def _answer(self, read_request):
            began = time.perf_counter()
            try:
                body, status = answer_request(answerer, read_request(), max_question_chars), 200
                logger.info("%r -> %r (%.2f s)", body["question"][:80], body["answer"], body["seconds"])
            except DemoRequestError as e:
                body, status = {"error": str(e)}, e.status
                logger.info("refused (%d, %.2f s): %s", status, time.perf_counter() - began, e)
            except Exception as e:  # noqa: BLE001  (the page gets a message, not a dropped connection)
                body, status = {"error": f"the model failed: {type(e).__name__}: {e}"}, 500
                logger.error("failed (%.2f s): %s: %s", time.perf_counter() - began, type(e).__name__, e)
            self._send_json(status, body)

        def _send_json(self, status, body):
            self._send(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def _send(self, status, data, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass  # One line per question comes from _answer; the page's own GETs are not worth one.

    return http.server.ThreadingHTTPServer((host, port), Handler)


@contextlib.contextmanager
def serving_in_background(answerer, host: str = "127.0.0.1", port: int = 0, **kwargs) -> Iterator[str]:
    """`make_server` serving in a thread while the context lasts; yields the page's URL."""
    server = make_server(answerer, host, port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.serving.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--saved_model", help="a QA export's version directory, loaded into this process")
    source.add_argument("--server", help="HOST:PORT of a TF Serving that serves a QA export")
    parser.add_argument("--protocol", choices=("grpc", "rest"), default="rest",
                        help="--server's protocol (default: %(default)s)")
    parser.add_argument("--model_name", default="realm_qa", help="--server's model (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address the page listens on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port the page listens on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--max_question_chars", type=positive_int, default=DEFAULT_MAX_QUESTION_CHARS,
                        help="longest question taken (default: %(default)s)")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> None:
    """Serves the page until Ctrl-C."""
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.saved_model:
        answerer = SavedModelAnswerer(args.saved_model)
    else:
        client.check_server(args.server)
        answerer = ServerAnswerer(args.server, args.protocol, args.model_name)
    server = make_server(answerer, args.host, args.port, args.max_question_chars)
    host, port = server.server_address[:2]
    print(f"Answering with {answerer.description['source']}.\nOpen http://{host}:{port}/ in a browser "
          "(Ctrl-C stops).", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, lambda _: "", argv)


if __name__ == "__main__":
    sys.exit(main())

"""Asks a TF Serving-served QA export questions over gRPC or REST: `python -m realm_tf.serving.client`.

    python -m realm_tf.serving.client --server localhost:8500 --protocol grpc --model_name realm_qa \\
        "Who won Super Bowl 50?" "Where is the Kessler Ice Shelf?"
    python -m realm_tf.serving.client --server localhost:8501 --protocol rest --k 10 --max_answer_length 5 \\
        --questions_file questions.txt

The model is a QA export (`python -m realm_tf.export`) served by `tensorflow_model_server`
(gRPC on --port, 8500 by convention; REST on --rest_api_port, 8501). Each question's
answer is printed with its span score and the retrieved evidence, best first: rank,
retrieval probability p(z|x), title and a snippet of the block's text (around the answer
in the block it came from; `*` marks that block). --json prints the answers as JSON.

Signatures: serving_default takes only the questions; answer_with_options also takes
--k (blocks read per question) and --max_answer_length (wordpieces), and is the default
when those are given. A server that cannot be reached, or that refuses the request (an
unknown model or signature, k past the export's max_k, ...), exits with status 2 and
the reason on stderr.

Library use: `predict_grpc(server, questions, ...)` and `predict_rest(...)` return one
dict per question (see `predict_grpc`); `format_answers(answers)` renders them as above.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow, which the gRPC path imports)
from realm_tf.cli import add_verbose_flag, positive_int, run_command
from realm_tf.errors import RealmError

DEFAULT_SIGNATURE = "serving_default"
OPTIONS_SIGNATURE = "answer_with_options"
# The outputs of both signatures of the QA export (realm_tf.export.qa_export.OUTPUTS),
# named here so that the client does not import the model code.
OUTPUT_NAMES = ("answer", "score", "answer_block_id", "answer_begin", "answer_end", "block_ids", "titles", "texts",
                "probabilities", "retrieved_by", "dense_scores", "lexical_scores")
DEFAULT_TIMEOUT_S = 60.0
# gRPC refuses messages over 4 MB by default; a large batch's evidence texts exceed it.
MAX_MESSAGE_BYTES = 1 << 30
SNIPPET_CHARS = 160


class ServingClientError(RealmError, RuntimeError):
    """The server could not be reached, refused the request, or answered something that is not a QA export's."""


class ServerUnreachableError(ServingClientError):
    """No server answered at the address, or none within the timeout."""


def check_server(server: str) -> None:
    """Raises ServingClientError unless `server` is HOST:PORT."""
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServingClientError(f"the server must be HOST:PORT, e.g. localhost:8500; got {server!r}")


def signature_and_options(signature: Optional[str], k: Optional[int],
                          max_answer_length: Optional[int]) -> Tuple[str, Dict[str, int]]:
    """The signature to call and its inputs besides the questions ({} or {"k", "max_answer_length"})."""
    if (k is None) != (max_answer_length is None):
        raise ServingClientError(f"k and max_answer_length go together: {OPTIONS_SIGNATURE} takes both")
    options = {} if k is None else {"k": k, "max_answer_length": max_answer_length}
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ServingClientError(f"{name} must be a positive integer, got {value!r}")
    if signature is None:
        signature = OPTIONS_SIGNATURE if options else DEFAULT_SIGNATURE
    elif signature == OPTIONS_SIGNATURE and not options:
        raise ServingClientError(f"{OPTIONS_SIGNATURE} needs k and max_answer_length")
    elif signature == DEFAULT_SIGNATURE and options:
        raise ServingClientError(f"{DEFAULT_SIGNATURE} takes only the questions; k and max_answer_length go to "
                                 f"{OPTIONS_SIGNATURE}")
    return signature, options


def _check_questions(questions: Sequence[str]) -> List[str]:
    if isinstance(questions, (str, bytes)) or not all(isinstance(q, str) for q in questions):
        raise ServingClientError("questions must be a sequence of str")
    return list(questions)


def decoded_strings(value):
    """Nested lists of a tensor's values (`.tolist()`) with their bytes decoded as UTF-8."""
    if isinstance(value, list):
        return [decoded_strings(v) for v in value]
    # The export slices answers at character boundaries, so "replace" only guards the display.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def answers_from_outputs(outputs: Dict[str, list], questions: List[str], server: str) -> List[Dict[str, Any]]:
    """A QA export's columnar outputs (name -> nested lists, strings decoded) as one dict per
    question (see `predict_grpc`); `server` names who answered, for the errors."""
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ServingClientError(f"the answer of {server} lacks the outputs {missing}: is the model a QA export "
                                 "(python -m realm_tf.export)?")
    wrong = [name for name in OUTPUT_NAMES if len(outputs[name]) != len(questions)]
    if wrong:
        raise ServingClientError(f"the answer of {server} has outputs {wrong} with {len(outputs[wrong[0]])} rows "
                                 f"for {len(questions)} questions")
    answers = []
    for row, question in enumerate(questions):
        evidence = [{"rank": rank, "block_id": int(block_id), "probability": float(probability), "title": title,
                     "text": text}
                    for rank, (block_id, probability, title, text) in enumerate(zip(
                        outputs["block_ids"][row], outputs["probabilities"][row], outputs["titles"][row],
                        outputs["texts"][row]), start=1)]
        answers.append({"question": question, "answer": outputs["answer"][row], "score": float(outputs["score"][row]),
                        **{key: int(outputs[key][row]) for key in ("answer_block_id", "answer_begin", "answer_end")},
                        "evidence": evidence})
    return answers


def grpc_channel(server: str):
    """An insecure gRPC channel to "HOST:PORT" that carries messages up to MAX_MESSAGE_BYTES."""
    import grpc

    return grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])


def predict_request(questions: Sequence[bytes], model_name: str, signature: str, options: Dict[str, int]):
    """TF Serving's PredictRequest for a QA export: `questions` string [B] (as given: bytes
    that need not be UTF-8), and `options` (k, max_answer_length) as int32 [] inputs."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    request.inputs["questions"].CopyFrom(tf.make_tensor_proto(list(questions), dtype=tf.string,
                                                              shape=[len(questions)]))
    for name, value in options.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=tf.int32, shape=[]))
    return request


def predict_grpc(server: str, questions: Sequence[str], model_name: str = "realm_qa",
                 signature: Optional[str] = None, k: Optional[int] = None, max_answer_length: Optional[int] = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> List[Dict[str, Any]]:
    """Answers `questions` with TF Serving's gRPC PredictionService.Predict.

    Args:
      server: "HOST:PORT" of the gRPC endpoint (tensorflow_model_server --port).
      questions: B questions.
      model_name: the served model (a base path's name in models.config).
      signature: serving_default, answer_with_options, or None for answer_with_options
        when k is given and serving_default otherwise.
      k, max_answer_length: answer_with_options' int32 [] inputs, both or neither.
      timeout: seconds to wait for the answer.

    Returns:
      B dicts, in the order of the questions: question (str), answer (str, "" when no
      retrieved block holds a valid span), score (float, the span logit),
      answer_block_id (int, -1 if none), answer_begin and answer_end (ints: the answer is
      characters [begin, end) of that block's text; -1 if none) and evidence, the K
      retrieved blocks best first,
      each {"rank": 1..K, "block_id": int, "probability": float, "title": str, "text": str}.

    Raises:
      ServingClientError: bad arguments, a server that cannot be reached or refuses the
        request (the server's message included), or an answer without the QA outputs.
    """
    check_server(server)
    questions = _check_questions(questions)
    signature, options = signature_and_options(signature, k, max_answer_length)
    # Imported here, not at the top: they import TensorFlow, which the REST path does without.
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request([q.encode("utf-8") for q in questions], model_name, signature, options)
    with grpc_channel(server) as channel:
        try:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnreachableError(f"cannot reach a gRPC server at {server}: {details}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServerUnreachableError(
                    f"no answer from the gRPC server at {server} within {timeout:g} s") from None
            raise ServingClientError(f"the gRPC server at {server} refused the request ({code.name}): "
                                     f"{details}") from None

    outputs = {name: decoded_strings(tf.make_ndarray(tensor).tolist()) for name, tensor in response.outputs.items()}
    return answers_from_outputs(outputs, questions, server)


def predict_rest(server: str, questions: Sequence[str], model_name: str = "realm_qa",
                 signature: Optional[str] = None, k: Optional[int] = None, max_answer_length: Optional[int] = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> List[Dict[str, Any]]:
    """Answers `questions` with TF Serving's REST API: POST /v1/models/<model_name>:predict.

    The request is in the columnar format, {"signature_name": ..., "inputs": {"questions":
    [...], "k": ..., "max_answer_length": ...}}, and so is the answer, {"outputs": {name:
    value}}. `server` is the REST endpoint (tensorflow_model_server --rest_api_port); the
    other arguments, the return value and the errors are those of `predict_grpc`.
    """
    check_server(server)
    questions = _check_questions(questions)
    signature, options = signature_and_options(signature, k, max_answer_length)
    url = f"http://{server}/v1/models/{urllib.parse.quote(model_name, safe='')}:predict"
    body = json.dumps({"signature_name": signature, "inputs": {"questions": questions, **options}}).encode("utf-8")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        message = e.read().decode("utf-8", "replace")
        try:
            # TF Serving answers errors as {"error": message}.
            message = json.loads(message)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise ServingClientError(f"the REST server at {server} refused the request (HTTP {e.code}): "
                                 f"{message}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise ServerUnreachableError(f"cannot reach a REST server at {server}: {reason}") from None
    try:
        outputs = json.loads(text)["outputs"]
    except (ValueError, KeyError, TypeError):
        raise ServingClientError(f"the REST server at {server} answered without JSON \"outputs\": "
                                 f"{text[:200]!r}") from None
    if not isinstance(outputs, dict):
        raise ServingClientError(f"the REST server at {server} answered a single output; is the model a QA export "
                                 "(python -m realm_tf.export)?")
    return answers_from_outputs(outputs, questions, server)


def _snippet(text: str, answer: str, width: int) -> str:
    """`text` on one line, at most `width` characters around the first occurrence of `answer`."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    at = text.find(" ".join(answer.split())) if answer.strip() else -1
    # The answer a third of the way in: enough before it to read it in context.
    start = 0 if at < 0 else max(0, min(at - width // 3, len(text) - width))
    return ("…" if start else "") + text[start:start + width] + ("…" if start + width < len(text) else "")


def format_answers(answers: Sequence[Dict[str, Any]], snippet_chars: int = SNIPPET_CHARS) -> str:
    """`predict_grpc`/`predict_rest` answers as text: per question the answer with its score,
    then the evidence by rank with probability, title and a snippet (`*`: the answer's block)."""
    lines = []
    for answer in answers:
        lines.append(f"Q: {answer['question']}")
        if answer["answer"]:
            lines.append(f"A: {answer['answer']}    (score {answer['score']:.3f}, block {answer['answer_block_id']})")
        else:
            lines.append("A: (none: no retrieved block holds a valid span)")
        for block in answer["evidence"]:
            is_source = block["block_id"] == answer["answer_block_id"]
            snippet = _snippet(block["text"], answer["answer"] if is_source else "", snippet_chars)
            lines.append(f"  {'*' if is_source else ' '}{block['rank']:>2}. p={block['probability']:.3f}  "
                         f"[{block['title']}] {snippet}")
        lines.append("")
    return "\n".join(lines)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.serving.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="*", help="questions to ask")
    parser.add_argument("--questions_file", help="more questions, one per line (blank lines skipped)")
    parser.add_argument("--server", required=True, help="HOST:PORT of TF Serving's gRPC or REST endpoint")
    parser.add_argument("--protocol", choices=("grpc", "rest"), default="grpc", help="(default: %(default)s)")
    parser.add_argument("--model_name", default="realm_qa", help="the served model (default: %(default)s)")
    parser.add_argument("--signature", help=f"(default: {DEFAULT_SIGNATURE}, or {OPTIONS_SIGNATURE} when --k and "
                                            "--max_answer_length are given)")
    parser.add_argument("--k", type=positive_int, help="blocks read per question (answer_with_options)")
    parser.add_argument("--max_answer_length", type=positive_int,
                        help="longest answer in wordpieces (answer_with_options)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None) -> Tuple[List[Dict[str, Any]], bool]:
    """Asks the server the command line's questions; returns (the answers, whether to print JSON)."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout:g}")
    questions = list(args.questions)
    if args.questions_file:
        try:
            with open(args.questions_file, encoding="utf-8") as f:
                questions += [line.rstrip("\r\n") for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ServingClientError(f"cannot read --questions_file: {e}") from None
    if not questions:
        raise ServingClientError("no questions: give them as arguments or with --questions_file")
    predict = predict_grpc if args.protocol == "grpc" else predict_rest
    answers = predict(args.server, questions, model_name=args.model_name, signature=args.signature, k=args.k,
                      max_answer_length=args.max_answer_length, timeout=args.timeout)
    return answers, args.json


def _report(result: Tuple[List[Dict[str, Any]], bool]) -> str:
    answers, as_json = result
    return json.dumps(answers, ensure_ascii=False, indent=1) if as_json else format_answers(answers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, _report, argv)


if __name__ == "__main__":
    sys.exit(main())

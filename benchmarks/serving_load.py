"""The exact QA export under load: concurrent gRPC clients, good and bad requests mixed.

    python -m benchmarks.serving_load [--saved_model DIR] [--clients 16] [--seconds 60]
        [--server_threads 4] [--pool 100] [--alone 20] [--seed 0] [--workdir runs/bench/load] [--output FILE]

Serves the export from `benchmarks.prediction_service`'s gRPC PredictionService (TF
Serving's protocol; its binary is not installed here) and runs `--clients` client threads
against it for `--seconds`, each on its own channel, each drawing requests from a fixed
mix (`KINDS`, seeded by `--seed`):

  good      one question; a batch of 16; a batch of 1,000; an empty question; a 100 KB
            question; answer_with_options with k and max_answer_length at their bounds
            (1, and the export's max_k / reader.max_span_length)
  bad       a question that is not UTF-8; k 0; k past max_k;
            max_answer_length 0; max_answer_length past reader.max_span_length

Questions come from the first `--pool` of qa_dev, each asked alone before the load. A
good request must be answered, with one row per question and K blocks a row; a single
question must get the same answer and blocks as it got alone. A bad one must be refused
with INVALID_ARGUMENT and a message that names what is wrong. After the load, `--alone`
of them are asked one at a time again: the server is healthy when it answers them as
before. Reported: per kind the requests, failures
and p50/p99; in all, requests/s; one question's p50/p99 under load against its p50 alone
(the baseline, in the same run). The clients stop sending after `--seconds` but finish
the request under way, so the wall time can run past it. Without --saved_model, the export is built as
benchmarks.serving_latency builds its own (the embedded corpus, a tiny model). Writes
benchmarks/results/serving_load.json.
"""

import argparse
import dataclasses
import pathlib
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "serving_load.json"
MODEL_NAME = "realm_qa"
TIMEOUT_S = 600.0  # Per request: a batch of 1,000 behind fifteen other clients on 2 cores takes minutes.
BIG_QUESTION_BYTES = 100_000


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of request in the mix.

    Attributes:
      name: how results name it.
      weight: its share of the draws, against the other kinds' weights.
      good: whether it must be answered (else refused with INVALID_ARGUMENT).
      build: (rng, bounds) -> (questions as bytes, options {"k", "max_answer_length"} or None).
      refusal: for a bad kind, what its refusal's message must say.
    """

    name: str
    weight: float
    good: bool
    build: Callable[[random.Random, Dict[str, Any]], Tuple[List[bytes], Optional[Dict[str, int]]]]
    refusal: str = ""


def _questions(rng: random.Random, bounds: Dict[str, Any], n: int) -> List[bytes]:
    return [rng.choice(bounds["questions"]).encode("utf-8") for _ in range(n)]


def _with(k_of: Callable[[Dict[str, Any]], int], length_of: Callable[[Dict[str, Any]], int]):
    """A one-question request to answer_with_options with k and max_answer_length from the bounds."""
    return lambda rng, b: (_questions(rng, b, 1), {"k": k_of(b), "max_answer_length": length_of(b)})


KINDS = [
    Kind("one question", 40, True, lambda rng, b: (_questions(rng, b, 1), None)),
    Kind("batch of 16", 8, True, lambda rng, b: (_questions(rng, b, 16), None)),
    Kind("batch of 1,000", 0.5, True, lambda rng, b: (_questions(rng, b, 1000), None)),
    Kind("empty question", 5, True, lambda rng, b: ([b""], None)),
    Kind("100 KB question", 5, True, lambda rng, b: ([b"why " * (BIG_QUESTION_BYTES // 4)], None)),
    Kind("k and max_answer_length 1", 4, True, _with(lambda b: 1, lambda b: 1)),
    Kind("k and max_answer_length at most", 1, True, _with(lambda b: b["max_k"], lambda b: b["max_span_length"])),
    Kind("not UTF-8", 4, False, lambda rng, b: ([b"who \xff\xfe was", b"fine"], None),
         "questions must be UTF-8 text; not valid UTF-8 at index:"),
    Kind("k 0", 3, False, _with(lambda b: 0, lambda b: 3), "k must be at least 1"),
    Kind("k past max_k", 3, False, _with(lambda b: b["max_k"] + 1, lambda b: 3), "k must be at most max_k"),
    Kind("max_answer_length 0", 3, False, _with(lambda b: 1, lambda b: 0), "max_answer_length must be at least 1"),
    Kind("max_answer_length past", 3, False, _with(lambda b: 1, lambda b: b["max_span_length"] + 1),
         "max_answer_length must be at most reader.max_span_length"),
]


class Client:
    """One client's channel to the server; `predict` sends a PredictRequest of raw bytes."""

    def __init__(self, address: str):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        from realm_tf.serving import client

        self._grpc, self._client = grpc, client
        self._channel = client.grpc_channel(address)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def predict(self, questions: List[bytes], options: Optional[Dict[str, int]]) -> Tuple[str, Any]:
        """("OK", outputs name -> np.ndarray) or (the status code's name, its details)."""
        import tensorflow as tf

        signature = "answer_with_options" if options else "serving_default"
        request = self._client.predict_request(questions, MODEL_NAME, signature, options or {})
        try:
            response = self._stub.Predict(request, timeout=TIMEOUT_S)
        except self._grpc.RpcError as e:
            return e.code().name, e.details()
        return "OK", {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}

    def close(self) -> None:
        self._channel.close()


def _problem(kind: Kind, questions: List[bytes], options: Optional[Dict[str, int]], status: str, result: Any,
             bounds: Dict[str, Any], expected: Dict[bytes, Tuple[str, List[int]]]) -> Optional[str]:
    """What is wrong with a response, or None when it is what the kind must get."""
    if not kind.good:
        if status != "INVALID_ARGUMENT":
            return f"{status} instead of INVALID_ARGUMENT: {str(result)[:200]}"
        return None if kind.refusal in result else f"unclear refusal: {result[:200]}"
    if status != "OK":
        return f"{status}: {str(result)[:200]}"
    k = options["k"] if options else bounds["top_k"]
    if result["answer"].shape != (len(questions),) or result["block_ids"].shape != (len(questions), k):
        return f"answer {result['answer'].shape} and block_ids {result['block_ids'].shape} for {len(questions)} " \
               f"question(s) and k {k}"
    if kind.name == "one question":
        answer = (result["answer"][0].decode("utf-8"), result["block_ids"][0].tolist())
        if answer != expected[questions[0]]:
            return f"{questions[0]!r}: {answer} under load, {expected[questions[0]]} alone"
    return None


def _ask_alone(client: Client, questions: Sequence[str]) -> Tuple[Dict[bytes, Tuple[str, List[int]]], List[float]]:
    """Each question in turn: (question -> (answer, block ids), seconds per call)."""
    answers, seconds = {}, []
    for question in questions:
        begin = time.perf_counter()
        status, outputs = client.predict([question.encode("utf-8")], None)
        seconds.append(time.perf_counter() - begin)
        if status != "OK":
            raise RuntimeError(f"{question!r} alone: {status}: {outputs}")
        answers[question.encode("utf-8")] = (outputs["answer"][0].decode("utf-8"), outputs["block_ids"][0].tolist())
    return answers, seconds


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def run_load(address: str, bounds: Dict[str, Any], clients: int, seconds: float, seed: int,
             expected: Dict[bytes, Tuple[str, List[int]]]) -> Dict[str, List[Dict[str, Any]]]:
    """`clients` threads drawing from KINDS until `seconds` have passed (each finishes its
    last request); returns kind name -> [{"seconds", "problem", "questions"}] of every request made."""
    records: Dict[str, List[Dict[str, Any]]] = {kind.name: [] for kind in KINDS}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    weights = [kind.weight for kind in KINDS]

    def work(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        client = Client(address)
        try:
            while time.monotonic() < deadline:
                kind = rng.choices(KINDS, weights)[0]
                questions, options = kind.build(rng, bounds)
                begin = time.perf_counter()
                status, result = client.predict(questions, options)
                elapsed = time.perf_counter() - begin
                problem = _problem(kind, questions, options, status, result, bounds, expected)
                with lock:
                    records[kind.name].append({"seconds": elapsed, "problem": problem, "questions": len(questions)})
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


def summarize(records: Dict[str, List[Dict[str, Any]]], wall_seconds: float) -> Dict[str, Any]:
    """Per kind and in all: requests, failures (with up to 3 examples) and latency."""
    by_kind, good, bad = {}, {"requests": 0, "failed": 0}, {"requests": 0, "refused_clearly": 0}
    for kind in KINDS:
        made = records[kind.name]
        problems = [r["problem"] for r in made if r["problem"]]
        entry = {"good": kind.good, "requests": len(made), "failed": len(problems), "examples": problems[:3]}
        if made:
            entry.update(common.latency_ms([r["seconds"] for r in made]))
        by_kind[kind.name] = entry
        if kind.good:
            good["requests"] += len(made)
            good["failed"] += len(problems)
        else:
            bad["requests"] += len(made)
            bad["refused_clearly"] += len(made) - len(problems)
    total = good["requests"] + bad["requests"]
    answered = sum(r["questions"] for kind in KINDS if kind.good for r in records[kind.name] if not r["problem"])
    return {"requests": total, "requests_per_second": round(total / wall_seconds, 2),
            "questions_answered": answered, "questions_answered_per_second": round(answered / wall_seconds, 2),
            "good": good, "bad": bad, "by_kind": by_kind}


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saved_model", type=pathlib.Path,
                        help="an exact QA export (default: build one under --workdir)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they send (default: %(default)s)")
    parser.add_argument("--server_threads", type=int, default=4,
                        help="requests the server runs at a time (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=100,
                        help="the first this many questions are the ones asked; each is asked alone before the "
                             "load (default: %(default)s)")
    parser.add_argument("--alone", type=int, default=20,
                        help="of them, how many are asked alone again after the load (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions", type=pathlib.Path, default=common.QA_DIR / "qa_dev.jsonl",
                        help="squad_open JSONL whose questions are asked (default: qa_dev)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/load"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def _built_export(workdir: pathlib.Path) -> pathlib.Path:
    from benchmarks import serving_latency

    args = serving_latency.build_arg_parser().parse_args([f"--workdir={workdir}"])
    return serving_latency.prepare_model(args)["exports"]["exact"]


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"clients": 1, "server_threads": 1, "pool": 1, "alone": 1})
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds:g}")
    questions = common.read_questions(parser, args.questions)
    machine = common.machine_info()
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    from benchmarks import prediction_service
    from realm_tf.artifacts.qa_export import QaExportInfo

    export = args.saved_model or _built_export(args.workdir)
    info = QaExportInfo.read(str(export))
    if info.retrieval != "exact":
        parser.error(f"--saved_model {export}: a {info.retrieval} export; this benchmark serves exact ones")
    pool = questions[:args.pool]
    bounds = {"questions": pool, "max_k": info.max_k, "top_k": info.top_k,
              "max_span_length": info.config["reader"]["max_span_length"]}
    service = prediction_service.PredictionService(tf.saved_model.load(str(export)), MODEL_NAME)
    with prediction_service.grpc_server(service, max_workers=args.server_threads) as address:
        probe = Client(address)
        _ask_alone(probe, pool[:1])  # The first call is slower: it is not timed.
        # Every question of the pool alone first, so that its answers under load can be checked.
        expected, before = _ask_alone(probe, pool)
        rss_before = _rss_mb()
        print(f"{args.clients} clients for {args.seconds:g}s against {address} ({args.server_threads} server "
              f"threads, {info.num_blocks} blocks)", flush=True)
        started = time.perf_counter()
        records = run_load(address, bounds, args.clients, args.seconds, args.seed, expected)
        wall = time.perf_counter() - started
        rss_after = _rss_mb()
        after_answers, after = _ask_alone(probe, pool[:args.alone])
        probe.close()
    load = summarize(records, wall)
    one = load["by_kind"]["one question"]
    healthy = all(after_answers[q] == expected[q] for q in after_answers)
    results = {
        "benchmark": "serving_load",
        "command": common.command_line("benchmarks.serving_load", argv),
        "server": "benchmarks.prediction_service's gRPC PredictionService (TF Serving's protocol; "
                  "tensorflow_model_server is not installed here) over the exact QA export, in this process",
        "export": {"path": str(export), "num_blocks": info.num_blocks, "top_k": info.top_k,
                   "max_k": info.max_k, "reader_batch_size": info.reader_batch_size},
        "clients": args.clients, "seconds": args.seconds, "wall_seconds": round(wall, 2),
        "server_threads": args.server_threads, "seed": args.seed,
        "mix": {kind.name: kind.weight for kind in KINDS},
        "load": load,
        "one_question_alone_before": common.latency_ms(before),
        "one_question_alone_after": common.latency_ms(after),
        "one_question_under_load_p50_vs_alone": common.ratio(one.get("p50_ms", 0.0),
                                                             1000 * float(np.median(before))),
        "healthy_after": {"same_answers_as_before": healthy, "questions": len(after),
                          "p50_after_vs_before": common.ratio(float(np.median(after)), float(np.median(before)))},
        "server_process_rss_mb": {"before_load": round(rss_before, 1), "after_load": round(rss_after, 1)},
        "machine": machine,
    }
    common.write_results(args.output, results)
    print(f"{load['requests']} requests in {wall:.1f}s ({load['requests_per_second']} requests/s, "
          f"{load['questions_answered_per_second']} questions answered/s): "
          f"{load['good']['failed']} of {load['good']['requests']} good ones failed, "
          f"{load['bad']['refused_clearly']} of {load['bad']['requests']} bad ones refused clearly; "
          f"one question p50 {one.get('p50_ms')} ms, p99 {one.get('p99_ms')} ms under load; "
          f"healthy after: {healthy}", flush=True)
    return results


if __name__ == "__main__":
    main()

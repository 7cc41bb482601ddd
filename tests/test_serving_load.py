"""benchmarks.serving_load: the exact export behind a gRPC PredictionService, under 16 concurrent clients."""

import json
import subprocess
import sys

import pytest

from benchmarks import serving_load
from conftest import REPO


@pytest.mark.slow  # A bounded load (20 s) after the fine-tuned export of conftest: minutes on 2 cores.
def test_under_load_every_good_request_is_answered_every_bad_one_refused_and_the_server_stays_healthy(
        exact_qa_export, tmp_path):
    output = tmp_path / "serving_load.json"
    # In its own process, as `python -m benchmarks` runs it: run inside the slow set's
    # process (after its Beam pipelines, gRPC too, and torch) the gRPC server and its
    # sixteen clients crashed that process on CI with a segmentation fault.
    run = subprocess.run([sys.executable, "-m", "benchmarks.serving_load", f"--saved_model={exact_qa_export}",
                          "--clients=16", "--seconds=20", "--pool=30", "--alone=10", f"--output={output}"],
                         cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    results = json.loads(output.read_text())
    assert "refused clearly" in run.stdout and results["benchmark"] == "serving_load"
    load = results["load"]
    assert load["good"]["failed"] == 0, {k: v["examples"] for k, v in load["by_kind"].items() if v["failed"]}
    assert load["bad"]["refused_clearly"] == load["bad"]["requests"] > 0, load["by_kind"]
    made = {name: entry["requests"] for name, entry in load["by_kind"].items()}
    # Every kind but the rarest two is drawn in 20 s of 16 clients.
    rare = ("batch of 1,000", "k and max_answer_length at most")
    assert all(count > 0 for name, count in made.items() if name not in rare), made
    assert load["requests"] == sum(made.values()) and load["requests_per_second"] > 0
    assert load["questions_answered"] >= load["good"]["requests"]
    assert results["healthy_after"]["same_answers_as_before"] and results["healthy_after"]["questions"] == 10
    one = load["by_kind"]["one question"]
    assert 0 < one["p50_ms"] <= one["p99_ms"]


def test_the_mix_judges_responses_as_the_kinds_say():
    kinds = {kind.name: kind for kind in serving_load.KINDS}
    bounds = {"top_k": 2, "max_k": 7, "max_span_length": 10}
    expected = {b"who?": ("Tesla", [3, 4])}
    import numpy as np

    answered = {"answer": np.array([b"Tesla"]), "block_ids": np.array([[3, 4]])}
    judge = serving_load._problem
    assert judge(kinds["one question"], [b"who?"], None, "OK", answered, bounds, expected) is None
    moved = {"answer": np.array([b"Edison"]), "block_ids": np.array([[3, 4]])}
    assert "under load" in judge(kinds["one question"], [b"who?"], None, "OK", moved, bounds, expected)
    assert "block_ids (1, 2) for 2 question(s)" in judge(kinds["batch of 16"], [b"a", b"b"], None, "OK", answered,
                                                         bounds, expected)
    assert "for 1 question(s) and k 7" in judge(kinds["k and max_answer_length at most"], [b"who?"],
                                                {"k": 7, "max_answer_length": 10}, "OK", answered, bounds, expected)
    assert judge(kinds["batch of 16"], [b"a"], None, "RESOURCE_EXHAUSTED", "too big", bounds, expected) \
        == "RESOURCE_EXHAUSTED: too big"
    k0 = kinds["k 0"]
    assert judge(k0, [b"who?"], {"k": 0, "max_answer_length": 3}, "INVALID_ARGUMENT",
                 "assertion failed: [k must be at least 1] [Condition x >= y did not hold]", bounds, expected) is None
    assert judge(k0, [b"who?"], {"k": 0, "max_answer_length": 3}, "INVALID_ARGUMENT", "something broke", bounds,
                 expected) == "unclear refusal: something broke"
    assert judge(k0, [b"who?"], {"k": 0, "max_answer_length": 3}, "OK", answered, bounds, expected).startswith(
        "OK instead of INVALID_ARGUMENT")
    assert all(kind.refusal for kind in serving_load.KINDS if not kind.good)

"""The speed benchmarks (benchmarks/), each run through its main(argv) at a tiny size, the docs page, the runner.

Speed is not asserted (the machine is shared); what is: the results have their keys, every
ratio is its figure over its baseline, recall lies in [0, 1] and grows with re-scoring,
MFU lies in (0, 1], the refresher is measured on and off, and the report writes its page
with plots that exist. The training and serving runs reuse conftest's small pipeline.
"""

import json
import shutil

import numpy as np
import pytest

from benchmarks import __main__ as runner
from benchmarks import report, retrieval_latency, serving_latency, training_throughput
from realm_tf.configs import load_config

from conftest import REPO


@pytest.fixture(scope="module")
def few_questions(tmp_path_factory):
    """The first 30 training questions: fine-tuning's task reads them all at start."""
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    lines = (REPO / "realm_tf" / "assets" / "squad_open" / "qa_train.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory):
    output = tmp_path_factory.mktemp("retrieval") / "retrieval_latency.json"
    # 25,000 blocks: above index.exact_below, so ScaNN is a tree (158 leaves, 16 searched).
    results = retrieval_latency.main([
        "--num_blocks=25000", "--num_clusters=32", "--queries=10", "--warmup=2", "--batch_size=16", "--batches=2",
        "--also_reorder=300", "--sweep_reorder=10,40,400", "--sweep_leaves=2,16", "--sweep_queries=6",
        f"--output={output}"])
    return results, output


@pytest.fixture(scope="module")
def training(small_blocks_dir, small_index_root, small_examples_dir, few_questions, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("training")
    results = training_throughput.main([
        "--sizes=tiny", "--warmup=1", "--steps=1", "--batch_size=2", f"--qa_train={few_questions}",
        f"--blocks_dir={small_blocks_dir}",
        f"--index_root={small_index_root}", f"--examples_dir={small_examples_dir}", f"--workdir={workdir}",
        f"--output={workdir / 'training_throughput.json'}"])
    return results, workdir / "training_throughput.json"


@pytest.fixture(scope="module")
def serving(small_blocks_dir, small_index_root, few_questions, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serving")
    results = serving_latency.main([
        "--calls=3", "--warmup=1", "--batch_size=4", "--batches=1", "--finetune_steps=1", f"--qa_train={few_questions}",
        f"--blocks_dir={small_blocks_dir}", f"--index_root={small_index_root}", f"--workdir={workdir}",
        f"--output={workdir / 'serving_latency.json'}"])
    return results, workdir / "serving_latency.json"


def test_retrieval_keeps_its_figures_and_adds_a_recall_throughput_curve(retrieval):
    results, output = retrieval
    assert json.loads(output.read_text()) == results
    searchers = results["searchers"]
    assert set(searchers) == {"exact", "scann", "scann_reorder_300"}
    exact = searchers["exact"]
    for name in ("scann", "scann_reorder_300"):
        entry = searchers[name]
        assert entry["build"]["method"] == "tree_ah" and 0 <= entry["recall_at_10"] <= 1
        assert entry["speedup_over_exact"]["one_query_p50"] == pytest.approx(
            exact["one_query"]["p50_ms"] / entry["one_query"]["p50_ms"], abs=0.06)
        assert entry["speedup_over_exact"]["batched"] == pytest.approx(
            entry["batched"]["queries_per_second"] / exact["batched"]["queries_per_second"], abs=0.06)
    assert results["machine"]["load_average_1_5_15_min_at_start"] and results["command"].startswith("python -m")

    sweep = results["sweep"]
    assert sweep["exact"]["recall_at_10"] == 1.0
    assert [(p["reorder_num_neighbors"], p["leaves_to_search"]) for p in sweep["points"]] == [
        (10, 2), (10, 16), (40, 2), (40, 16), (400, 2), (400, 16)]
    for p in sweep["points"]:
        assert 0 <= p["recall_at_10"] <= 1 and p["queries_per_second"] > 0
        assert p["speedup_over_exact"]["batched"] == pytest.approx(
            p["queries_per_second"] / sweep["exact"]["queries_per_second"], abs=0.06)
    for leaves in (2, 16):
        # More candidates re-scored exactly, out of the same leaves: never fewer of the exact top 10.
        recalls = [p["recall_at_10"] for p in sweep["points"] if p["leaves_to_search"] == leaves]
        assert recalls == sorted(recalls)


def test_recall_of_exact_against_itself_is_one():
    import numpy as np

    rows = np.array([[1, 2, 3], [4, 5, 6]])
    assert retrieval_latency.recall_at_k(rows, rows) == 1.0
    assert retrieval_latency.recall_at_k(np.array([[1, 9, 8], [6, 5, 4]]), rows) == pytest.approx(2 / 3, abs=1e-4)


def test_retrieval_rejects_bad_sweep_settings(capsys):
    with pytest.raises(SystemExit):
        retrieval_latency.main(["--sweep_reorder=5", "--k=10"])
    assert "--sweep_reorder" in capsys.readouterr().err


def test_model_flops_count_the_towers_each_step_runs(tiny_config):
    bert = tiny_config.reader.encoder  # 2 layers, hidden 128, intermediate 512.
    per_layer = 160 * 2 * (4 * 128 ** 2 + 2 * 128 * 512) + 4 * 160 ** 2 * 128
    assert training_throughput.encoder_forward_flops(bert, 3, 160) == 2 * 3 * per_layer
    pretrain = training_throughput.step_flops("pretrain", tiny_config, 8)
    finetune = training_throughput.step_flops("finetune", tiny_config, 8, beam_size=100)
    assert set(pretrain["forward_by_part"]) == {"query_tower", "document_tower", "retrieval_scores", "reader",
                                                "masked_lm_head"}
    # Fine-tuning reads the index's stored embeddings: the document tower never runs.
    assert set(finetune["forward_by_part"]) == {"query_tower", "retrieval_scores", "reader", "span_head"}
    for flops in (pretrain, finetune):
        assert flops["train"] == 3 * flops["forward"] == 3 * sum(flops["forward_by_part"].values())
    assert finetune["forward_by_part"]["retrieval_scores"] == 2 * 8 * 100 * 128
    small = load_config("tiny", training_throughput.size_overrides("small"))
    assert (small.reader.encoder.num_layers, small.retriever.encoder.hidden_size) == (4, 256)


@pytest.mark.slow  # Minutes on 2 cores: a real pipeline, trained or exported, then timed.
def test_training_measures_the_refresher_on_and_off_and_mfu(training):
    results, output = training
    assert json.loads(output.read_text()) == results
    assert results["device"] == "CPU" and results["precision"] == "float32"
    assert results["peak_matmul"]["dtype"] == "float32" and results["peak_matmul"]["flops_per_second"] > 0
    runs = {run["task"]: run for run in results["runs"]}
    assert set(runs) == {"pretrain", "finetune"}
    pretrain = runs["pretrain"]
    without, with_ = pretrain["without_refresher"], pretrain["with_refresher"]
    assert without["steps"] == 2 and without["phases"] == 2 and with_["steps"] == 1
    assert with_["alive_throughout"] and with_["exports_handed"] >= 1
    for key in ("examples_per_second", "mfu"):
        assert pretrain["with_over_without_refresher"][key] == pytest.approx(with_[key] / without[key], abs=2e-3)
    assert "refresher" in runs["finetune"] and "with_refresher" not in runs["finetune"]
    for run in results["runs"]:
        figures = run["without_refresher"]
        assert 0 < figures["mfu"] <= 1
        assert figures["mfu"] == pytest.approx(
            figures["model_flops_per_second"] / results["peak_matmul"]["flops_per_second"], abs=1e-3)
        assert results["peak_matmul"]["flops_per_second"] == max(results["peak_matmul"]["measured_flops_per_second"])
        assert figures["examples_per_second"] <= figures["step_examples_per_second"]
    assert 0 < with_["mfu"] <= 1


@pytest.mark.slow  # Minutes on 2 cores: a real pipeline, trained or exported, then timed.
def test_training_under_mixed_bfloat16(small_blocks_dir, small_index_root, small_examples_dir, tmp_path):
    import tf_keras

    argv = ["--sizes=tiny", "--tasks=pretrain", "--refresher=off", "--precision=mixed_bfloat16", "--warmup=1",
            "--steps=1", "--batch_size=2", f"--blocks_dir={small_blocks_dir}", f"--index_root={small_index_root}",
            f"--examples_dir={small_examples_dir}", f"--workdir={tmp_path}", f"--output={tmp_path / 'bf16.json'}"]
    try:
        results = training_throughput.main(argv)
    finally:
        assert tf_keras.mixed_precision.global_policy().name == "float32"  # Restored for what runs next.
    assert results["precision"] == "mixed_bfloat16" and results["peak_matmul"]["dtype"] == "bfloat16"
    assert 0 < results["runs"][0]["without_refresher"]["mfu"] <= 1


def test_training_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        training_throughput.main(["--sizes=tiny,huge"])
    assert "unknown model size 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        training_throughput.main(["--blocks_dir=/nowhere"])
    assert "--index_root" in capsys.readouterr().err


@pytest.mark.slow  # Minutes on 2 cores: a real pipeline, trained or exported, then timed.
def test_serving_times_every_export_against_exact(serving):
    results, output = serving
    assert json.loads(output.read_text()) == results
    assert "not installed" in results["server"] and results["baseline"] == "exact"
    systems = results["systems"]
    assert set(systems) == {"exact", "scann", "hybrid", "predictor"}
    assert all(systems[kind]["export"]["retrieval"] == kind for kind in ("exact", "scann", "hybrid"))
    exact = systems["exact"]
    for name, entry in systems.items():
        ratios = entry["ratio_to_exact"]
        assert ratios["one_question_p50_speedup"] == pytest.approx(
            exact["one_question"]["p50_ms"] / entry["one_question"]["p50_ms"], abs=2e-3)
        assert ratios["questions_per_second"] == pytest.approx(
            entry["batched"]["questions_per_second"] / exact["batched"]["questions_per_second"], abs=2e-3)
        assert entry["one_question"]["p50_ms"] <= entry["one_question"]["p99_ms"]
    assert exact["ratio_to_exact"] == {"one_question_p50_speedup": 1.0, "one_question_p99_speedup": 1.0,
                                       "questions_per_second": 1.0}
    # The predictor answers as the exact export does (same model, exact search).
    assert systems["predictor"]["same_answer_as_exact"] == 1.0


@pytest.mark.slow  # Minutes on 2 cores: a real pipeline, trained or exported, then timed.
def test_report_writes_the_page_and_its_plots(retrieval, training, serving, tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    for _, path in (retrieval, training, serving):
        shutil.copy(path, results_dir / path.name)
    page = tmp_path / "docs" / "benchmarks.md"
    written = report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    images = {p.rsplit("/", 1)[-1] for p in written["images"]}
    assert images == {"retrieval_recall_qps.png", "training_throughput.png", "serving_latency.png"}
    for name in images:
        assert f"](benchmarks/{name})" in text
        assert (page.parent / "benchmarks" / name).stat().st_size > 1000
    # Ratios sit next to the absolute figures, with the command that made them.
    serving_ratio = serving[0]["systems"]["scann"]["ratio_to_exact"]["questions_per_second"]
    assert f"{serving_ratio:.2f}x" in text
    training_ratio = training[0]["runs"][0]["with_over_without_refresher"]["examples_per_second"]
    assert f"{training_ratio:.2f}x" in text
    assert "python -m benchmarks.serving_latency" in text
    assert "Not measured yet: `python -m benchmarks.quality`" in text
    assert "Not measured yet: `python -m benchmarks.indexing_throughput`" in text


def test_runner_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        runner.main(["--only=retrieval,bogus"])
    assert "unknown benchmark 'bogus'" in capsys.readouterr().err
    argv = runner.benchmark_argv("training", "small", tmp_path, tmp_path / "t.json", gpu=True)
    assert "--precision=mixed_float16" in argv and f"--workdir={tmp_path / 'training'}" in argv
    assert "--precision=mixed_float16" not in runner.benchmark_argv("training", "small", tmp_path, tmp_path, gpu=False)
    assert not any(a.startswith("--workdir") for a in runner.benchmark_argv("retrieval", "large", tmp_path, tmp_path,
                                                                             gpu=False))


@pytest.mark.slow  # Minutes on 2 cores: a real pipeline, trained or exported, then timed.
def test_indexing_times_the_pipeline_against_a_plain_loop(tmp_path):
    from benchmarks import indexing_throughput

    output = tmp_path / "indexing.json"
    results = indexing_throughput.main(["--num_docs=10", f"--workdir={tmp_path / 'work'}", f"--output={output}"])
    assert json.loads(output.read_text()) == results
    runs = results["runs"]
    assert set(runs) == {"plain_loop", "beam_in_memory", "beam_multi_processing"}
    assert runs["plain_loop"]["ratio_to_plain_loop"] == 1.0
    for run in runs.values():
        # Seconds are rounded to 0.01 and blocks/s to 0.1, so the rate lies between the rates of the
        # rounded time's two ends (a relative tolerance fails on a run of 0.2 s).
        fastest = results["num_blocks"] / max(run["seconds"] - 0.005, 1e-9)
        slowest = results["num_blocks"] / (run["seconds"] + 0.005)
        assert slowest - 0.05 <= run["blocks_per_second"] <= fastest + 0.05
    assert results["command"].startswith("python -m benchmarks.indexing_throughput")


def test_block_store_measures_the_compact_store_against_the_dicts_it_replaced(tmp_path):
    from benchmarks import block_store

    output = tmp_path / "block_store.json"
    # One shard: a piece's part-filled last pages would weigh on 400 blocks split four ways.
    results = block_store.main(["--num_blocks=400", "--shards=1", f"--workdir={tmp_path / 'work'}",
                                f"--output={output}"])
    assert json.loads(output.read_text()) == results
    assert results["body_tokens"] == 400 * block_store.BODY_TOKENS
    compact, baseline = results["compact"], results["baseline"]
    # uint16 ids: 2 bytes a token, the offsets index and part-filled pages (400 blocks fill enough of them).
    assert 2.0 <= compact["token_bytes_per_token_resident"] < 3.0
    assert 4.0 <= compact["offset_bytes_per_token_resident"] < 5.0  # Two uint16 a token, read in full.
    assert baseline["bytes_per_token"] > 10 * compact["token_bytes_per_token_resident"]
    assert results["ratios"]["memory_reduction"] == pytest.approx(
        baseline["heap_bytes"] / (results["body_tokens"] * (compact["token_bytes_per_token_resident"]
                                                             + compact["offset_bytes_per_token_resident"])),
        rel=0.02)
    assert results["command"].startswith("python -m benchmarks.block_store")


def test_pretraining_inputs_streams_in_bounded_memory_and_gathers_the_batches_of_before(tmp_path):
    from benchmarks import pretraining_inputs

    output = tmp_path / "pretraining_inputs.json"
    results = pretraining_inputs.main(["--num_blocks=300", "--num_examples=4000", "--window=500", "--batches=4",
                                       f"--workdir={tmp_path / 'work'}", f"--output={output}"])
    assert json.loads(output.read_text()) == results
    examples = results["examples"]
    # One epoch of the stream: every example, in batches of 32 (the last one runs into epoch 2).
    assert examples["baseline"]["examples"] == 4000 and 4000 <= examples["stream"]["examples"] < 4000 + 32
    # A window of 500 held, against 4,000 objects.
    assert examples["stream"]["peak_heap_bytes"] < examples["baseline"]["peak_heap_bytes"] / 2
    assert results["ratios"]["gathered_batches_vs_baseline"] == pytest.approx(
        results["batches"]["gathered"]["batches_per_second"] / results["batches"]["baseline"]["batches_per_second"],
        rel=0.02)
    assert results["command"].startswith("python -m benchmarks.pretraining_inputs")


def test_scale_runs_every_stage_at_each_size_in_its_own_process(tmp_path):
    from benchmarks import block_store, scale

    output = tmp_path / "scale.json"
    results = scale.main(["--sizes=3000,25000", "--queries=20", "--sweep_leaves=5,400", "--blocks_max=3000",
                          "--reorder_dtype=float32",
                          "--qa_retrieval=exact,two_part_exact", "--qa_questions=3", f"--workdir={tmp_path / 'work'}",
                          f"--output={output}"])
    assert json.loads(output.read_text()) == results
    small, large = results["sizes"]
    assert small["build"]["build"]["method"] == "brute_force" and large["build"]["build"]["method"] == "tree_ah"
    assert small["serve"]["recall_at_10"] == 1.0  # Brute force is exact.
    # --reorder_dtype overrides the base config's (bfloat16); brute force re-scores nothing.
    assert large["build"]["build"]["reorder_dtype"] == "float32" and small["build"]["build"]["reorder_dtype"] is None
    assert results["index_config"] == "base with index.reorder_dtype=float32"
    assert large["serve"]["recall_at_10"] >= 0.9 and large["serve"]["recall_queries"] == 20
    # The sweep: 400 leaves capped at the tree's; searching every leaf recalls at least what the default does.
    leaves = large["build"]["build"]["num_leaves"]
    assert [p["leaves_to_search"] for p in large["serve"]["sweep"]] == [5, leaves]
    assert large["serve"]["sweep"][1]["recall_at_10"] >= large["serve"]["recall_at_10"]
    assert "sweep" not in small["serve"]  # Brute force has no leaves.
    for size in results["sizes"]:
        for stage in ("build", "verify", "serve"):
            assert size[stage]["peak_rss_bytes"] >= size[stage]["rss_after_imports_bytes"] > 0
        assert size["index_bytes_on_disk"] > size["embeddings_bytes"]  # The embeddings are one of its files.
    # The blocks stages, at the size within --blocks_max only: the store's 2 bytes a token of ids
    # and 4 of character offsets, and a QA export over those blocks served in a fresh process.
    assert small["body_tokens"] == small["store"]["body_tokens"] == 3000 * block_store.BODY_TOKENS
    assert small["store"]["bytes_on_disk"] > 10 * small["body_tokens"]
    assert small["store"]["build_workers"] == 1  # Under PARALLEL_MIN_BLOCKS: built in the stage's process.
    assert small["batches"]["batches_per_second"] > 0 and small["batches"]["batch"]["p50_ms"] > 0
    # Every id read: uint16 ids and their row offsets, within the 3 bytes a token.
    assert small["store_read"]["tokens"]["body"] == small["body_tokens"]
    assert 2.0 < small["store_read"]["resident_bytes_per_body_token"] <= 3.0
    assert 0 < small["store_read"]["largest_token_id"] < 30522
    served = small["qa_serve:exact"]
    assert small["qa_export:exact"]["bytes_on_disk"] > 0 and "qa_export:scann" not in small
    assert served["one_question"]["p50_ms"] > 0 and served["rss_at_end_bytes"] > served["rss_after_imports_bytes"]
    # The two-part deployment: both parts on disk, served with the store's lookup in one process.
    two_parts = small["qa_serve:two_part_exact"]
    assert small["qa_export:two_part_exact"]["bytes_on_disk"] > 0
    assert two_parts["one_question"]["p50_ms"] > 0 and two_parts["load_seconds"] > 0
    assert "store" not in large and "batches" not in large and "qa_export:exact" not in large
    assert not (tmp_path / "work" / "n3000").exists()  # Removed after its size without --keep.


def test_scale_streams_a_store_too_large_for_its_shards_and_resumes_its_pieces(tmp_path):
    """Above --blocks_max, a size up to --streamed_blocks_max gets its store shard by shard
    (each shard deleted once its piece is built); a run cut short keeps its pieces, and the
    store is the one its shards, written whole, give."""
    from benchmarks import block_store, scale
    from realm_tf.artifacts.block_arrays import BlockArrays, blocks_manifest_sha256, compact_dir, partial_dir
    from realm_tf.corpus.block_store import BlockStore

    work = tmp_path / "work"
    blocks = work / "n600" / "blocks"
    names = block_store.write_synthetic_manifest(blocks, 600, 3)
    # An earlier attempt that built the first piece, then stopped.
    partial = partial_dir(compact_dir(str(blocks)), blocks_manifest_sha256(str(blocks)))
    scale._start_stream_worker()
    scale._stream_piece(str(blocks), 0, 3, 600, partial)
    assert not (blocks / names[0]).exists()  # Deleted once its piece was built.

    output = tmp_path / "scale.json"
    results = scale.main(["--sizes=600", "--blocks_max=0", "--streamed_blocks_max=600", "--shard_blocks=200",
                          "--stages=store_streamed,store_read", "--resume", "--keep", f"--workdir={work}",
                          f"--output={output}"])
    (size,) = results["sizes"]
    streamed = size["store_streamed"]
    assert (streamed["shards"], streamed["pieces_kept"], streamed["pieces_built_now"]) == (3, 1, 2)
    assert [a["pieces"] for a in streamed["attempts"]] == [2]  # The first attempt's piece was not logged.
    assert streamed["body_tokens"] == 600 * block_store.BODY_TOKENS and streamed["char_offsets_dtypes"] == ["uint16"]
    assert size["store_read"]["tokens"]["body"] == 600 * block_store.BODY_TOKENS
    assert "build" not in size and "batches" not in size  # Not among --stages.
    assert not list(blocks.glob("*.tfrecord"))  # No shard kept.
    # Resumed once the store is published: nothing is built again, every attempt still counted.
    again = scale.main(["--sizes=600", "--blocks_max=0", "--streamed_blocks_max=600", "--shard_blocks=200",
                        "--stages=store_streamed", "--resume", "--keep", f"--workdir={work}",
                        f"--output={tmp_path / 'again.json'}"])["sizes"][0]["store_streamed"]
    assert (again["pieces_built_now"], again["pieces_kept"]) == (0, 3)
    assert [a["pieces"] for a in again["attempts"]] == [2] and not list(blocks.glob(".compact-partial-*"))

    whole = tmp_path / "whole"
    block_store.write_synthetic_blocks(whole, 600, shards=3)
    expected, found = BlockStore(str(whole)).arrays, BlockArrays(compact_dir(str(blocks)))
    np.testing.assert_array_equal(found.block_ids, expected.block_ids)
    for part in ("title", "body"):
        for piece in range(3):
            for a, b in zip(found.piece_tokens(part, piece), expected.piece_tokens(part, piece)):
                np.testing.assert_array_equal(a, b)
    assert found.char_offsets("begins", 599).tolist() == expected.char_offsets("begins", 599).tolist()

    # The docs page: the store's row and its resident bytes a token judged against 3.
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    shutil.copy(output, results_dir / "scale_store.json")
    page = tmp_path / "docs" / "benchmarks.md"
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    resident = size["store_read"]["resident_bytes_per_body_token"]
    assert f"| 600 | {600 * block_store.BODY_TOKENS:,} | 3 | 1 | 2 pieces in " in page.read_text()
    assert (f"Against the target at 600 blocks (the store at most 3 bytes a token resident): {resident} bytes a body "
            f"token once every title and body id is read ({'met' if resident <= 3 else 'not met'})") in page.read_text()


def test_scale_serves_two_part_deployments_over_a_streamed_store_of_short_blocks(tmp_path):
    """A streamed size gets the two-part QA stages among --qa_retrieval (a single export, which
    holds every text, is left out there), over blocks of --body_tokens wordpieces; the docs
    page shows them."""
    from benchmarks import block_store, scale

    output = tmp_path / "scale_two_part.json"
    results = scale.main(["--sizes=600", "--blocks_max=0", "--streamed_blocks_max=600", "--shard_blocks=300",
                          "--body_tokens=12", "--queries=5", "--stages=store_streamed,build,qa_export,qa_serve",
                          "--qa_retrieval=exact,two_part_exact", "--qa_questions=2", f"--workdir={tmp_path / 'work'}",
                          f"--output={output}"])
    (size,) = results["sizes"]
    assert size["body_tokens"] == size["store_streamed"]["body_tokens"] == 600 * 12
    assert "qa_export:exact" not in size and "qa_serve:exact" not in size
    assert size["qa_export:two_part_exact"]["bytes_on_disk"] > 0
    served = size["qa_serve:two_part_exact"]
    assert served["one_question"]["p50_ms"] > 0 and served["rss_at_end_bytes"] > served["rss_after_imports_bytes"]
    assert block_store.BODY_TOKENS == 270  # The default bodies are left as they were.
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    shutil.copy(output, results_dir / "scale_two_part.json")
    page = tmp_path / "docs" / "benchmarks.md"
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    assert "## Scale: the two-part deployment at Wikipedia's 13.35M blocks" in text
    assert "Synthetic blocks with bodies of 12 wordpieces" in text and "| 600 | two_part_exact | " in text
    assert "scale_qa_served.png" not in text  # The plot needs the block store section's sizes too.
    shutil.copy(output, results_dir / "scale_blocks.json")
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    assert "![served memory against N](benchmarks/scale_qa_served.png)" in page.read_text()
    assert (page.parent / "benchmarks" / "scale_qa_served.png").stat().st_size > 0


def test_scale_exact_search_reads_chunk_by_chunk_and_finds_the_true_top_k(monkeypatch):
    from benchmarks import scale

    rng = np.random.default_rng(0)
    embeddings, queries = rng.standard_normal((103, 8)), rng.standard_normal((5, 8))
    monkeypatch.setattr(scale, "CHUNK_ROWS", 7)  # Many chunks, the last one short.
    np.testing.assert_array_equal(scale.exact_top_k(embeddings, queries, 10),
                                  np.argsort(-(queries @ embeddings.T), axis=1)[:, :10])


def test_report_shows_the_inputs_and_scale_results_beside_their_targets(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    for name in ("pretraining_inputs.json", "scale.json", "scale_blocks.json"):
        shutil.copy(REPO / "benchmarks" / "results" / name, results_dir / name)
    page = tmp_path / "docs" / "benchmarks.md"
    written = report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    assert {p.rsplit("/", 1)[-1] for p in written["images"]} == {"scale.png"}
    inputs = json.loads((results_dir / "pretraining_inputs.json").read_text())
    assert f"{inputs['ratios']['gathered_batches_vs_baseline']:.2f}x the baseline's batches" in text
    largest = json.loads((results_dir / "scale.json").read_text())["sizes"][-1]
    assert f"Against the targets for {largest['num_blocks']:,} blocks" in text
    assert f"recall@10 {largest['serve']['recall_at_10']} against at least 0.95" in text
    assert f"Searching other numbers of leaves at {largest['num_blocks']:,} blocks" in text
    assert text.count("(the build's)") == 1
    build = largest["build"]["build"]
    assert f"| {build['reorder_num_neighbors']:,} in {build.get('reorder_dtype') or 'float32'} |" in text
    # The block store and QA export section: each export's peak at 1M judged against 4 GB.
    blocks_results = json.loads((results_dir / "scale_blocks.json").read_text())
    blocks = blocks_results["sizes"][-1]
    assert blocks["num_blocks"] == 1_000_000
    assert f"| {blocks['num_blocks']:,} | exact | " in text and f"| {blocks['num_blocks']:,} | scann | " in text
    for kind in ("exact", "scann"):
        peak = blocks[f"qa_serve:{kind}"]["peak_rss_bytes"]
        assert f"{kind} {report._gib(peak)} GiB = {peak / 1e9:.2f} GB ({'met' if peak < 4e9 else 'not met'})" in text
    # A run that stopped short of the target's size says so.
    blocks_results["sizes"] = blocks_results["sizes"][:1]
    (results_dir / "scale_blocks.json").write_text(json.dumps(blocks_results))
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    assert "(a QA export of 1,000,000 blocks served in under 4 GB) is not measured by this run" in page.read_text()


def test_report_shows_exact_match_against_fine_tuning_steps_beside_the_target(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    results = json.loads((REPO / "benchmarks" / "results" / "finetune_steps.json").read_text())
    entry = results["results"]["ck1500_hybrid"]
    # Two checkpoints, the later one worse: the best one is judged, in step order.
    results["results"] = {"late": {**entry, "checkpoint": "ckpt-900", "exact_match": 0.39},
                          "early": {**entry, "checkpoint": "ckpt-300", "exact_match": 0.41}}
    (results_dir / "finetune_steps.json").write_text(json.dumps(results))
    page = tmp_path / "docs" / "benchmarks.md"
    written = report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    assert {p.rsplit("/", 1)[-1] for p in written["images"]} == {"finetune_steps.png"}
    assert text.index("| 300 | 5 |") < text.index("| 900 | 5 |")
    assert f"| 300 | 5 | {entry['recall@1']:.3g} |" in text and "| 41.0 |" in text and "| 39.0 |" in text
    assert "Against the target of exact match at least 40 on all 1,352 qa_dev questions: 41.0 (met)" in text
    results["results"] = {"late": results["results"]["late"]}
    (results_dir / "finetune_steps.json").write_text(json.dumps(results))
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    assert "39.0 (not met)" in page.read_text()


def test_lexical_scale_builds_and_serves_the_lexical_index_beside_dense_exact_search(tmp_path):
    from benchmarks import lexical_scale

    output = tmp_path / "lexical_scale.json"
    results = lexical_scale.main(["--num_blocks=3000", "--queries=5", f"--workdir={tmp_path / 'work'}",
                                  f"--output={output}"])
    assert json.loads(output.read_text()) == results
    build, serve = results["build"], results["serve"]
    # 8 bytes a posting (an int32 row, a float32 weight), 8 a term start and 8 a block id.
    assert build["bytes"] == build["postings"] * 8 + (30522 + 1) * 8 + 3000 * 8
    assert 50 < build["postings_per_block"] <= lexical_scale.TITLE_TOKENS + lexical_scale.BODY_TOKENS
    lexical, dense = serve["one_question"]["lexical"], serve["one_question"]["dense_exact"]
    assert results["ratios"]["lexical_p50_over_dense_exact_p50"] == pytest.approx(
        lexical["p50_ms"] / dense["p50_ms"], rel=0.01, abs=2e-3)
    assert results["command"].startswith("python -m benchmarks.lexical_scale")


def test_sentence_vectors_score_each_block_by_its_best_sentence():
    from benchmarks import sentence_vectors

    def halves(text):  # A splitter: "a. b" -> the spans of "a." and "b".
        cut = text.find(". ")
        return [(0, len(text))] if cut < 0 else [(0, cut + 1), (cut + 2, len(text))]

    sentences, owner = sentence_vectors.split_blocks(["One. Two", "Three", "  "], halves)
    # A block the splitter finds nothing in keeps its text, so every block has a row.
    assert sentences == ["One.", "Two", "Three", "  "] and owner.tolist() == [0, 0, 1, 2]
    scores = np.array([[0.1, 0.9, 0.3, -1.0], [0.5, 0.2, 0.8, 0.0]])
    np.testing.assert_array_equal(sentence_vectors.sentence_max(scores, owner, 3), [[0.9, 0.3, -1.0], [0.5, 0.8, 0.0]])
    with pytest.raises(ValueError, match="0..N-1 in order"):
        sentence_vectors.sentence_max(scores, np.array([0, 0, 2, 2]), 3)  # Block 1 has no sentence.
    ranked = sentence_vectors.ranked_docs(np.array([[0.1, 0.7, 0.3]]), np.array(["a", "b", "c"], object), 2)
    assert ranked == [["b", "c"]]
    with pytest.raises(SystemExit):
        sentence_vectors.main(["--blocks_dir=x", "--index=y", "--block_weights=0.5,2"])


def test_report_judges_the_sentence_vectors_best_weight_against_bm25(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    results = json.loads((REPO / "benchmarks" / "results" / "sentence_vectors.json").read_text())
    results["recall_by_block_weight"] = {"1.0": {"recall@1": 0.5, "recall@5": 0.8, "recall@20": 0.9},
                                         "0.5": {"recall@1": 0.6, "recall@5": 0.85, "recall@20": 0.95}}
    results["bm25"] = {"recall@1": 0.7, "recall@5": 0.86, "recall@20": 0.93}
    (results_dir / "sentence_vectors.json").write_text(json.dumps(results))
    page = tmp_path / "docs" / "benchmarks.md"
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    assert "| 0.5 | 0.600 | 0.850 | 0.950 |" in text and "| BM25 (same blocks) | 0.700 | 0.860 | 0.930 |" in text
    assert "Best recall@5: 0.850 at w = 0.5, below BM25's 0.860 (the block vectors alone: 0.800)" in text

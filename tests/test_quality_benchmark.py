"""benchmarks.quality end to end at a minimal size, and `python -m realm_tf.evaluate --retrieval bm25`."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import quality

from conftest import CORPUS, ICT_OVERRIDES, REPO, SMALL_CORPUS_DOCS

QA_DEV = REPO / "realm_tf" / "assets" / "squad_open" / "qa_dev.jsonl"
NUM_QUESTIONS = 20
STEPS = {"ict": 10, "pretrain": 4, "finetune": 3}
# Small batches keep it short; the refresher indexes the one export pre-training makes, at its
# end (each refresh is a Beam run); ICT holds out 10% of the ~140 blocks.
OVERRIDES = [o for o in ICT_OVERRIDES if not o.startswith(("ict.training.train_steps", "ict.training.checkpoint"))] + [
    "pretrain.training.batch_size=4", f"pretrain.refresh_every_steps={STEPS['pretrain']}",
    "pretrain.training.warmup_steps=1", "finetune.training.batch_size=4", "finetune.training.warmup_steps=1"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """The first documents of the embedded corpus plus the gold paragraphs of the first
    qa_dev questions (not among those documents), and those questions."""
    root = tmp_path_factory.mktemp("quality_data")
    questions = QA_DEV.read_text(encoding="utf-8").splitlines(keepends=True)[:NUM_QUESTIONS]
    gold = {json.loads(line)["gold_passage_id"] for line in questions}
    docs = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    chosen = docs[:SMALL_CORPUS_DOCS] + [line for line in docs[SMALL_CORPUS_DOCS:] if json.loads(line)["id"] in gold]
    assert {json.loads(line)["id"] for line in chosen} >= gold
    (root / "corpus.jsonl").write_text("".join(chosen), encoding="utf-8")
    (root / "qa.jsonl").write_text("".join(questions), encoding="utf-8")
    return {"corpus": root / "corpus.jsonl", "qa": root / "qa.jsonl"}


@pytest.fixture(scope="module")
def benchmark(small_data, tmp_path_factory):
    """The benchmark's report and workdir, run through its main() as the suite's runner calls it."""
    root = tmp_path_factory.mktemp("quality")
    argv = [f"--workdir={root / 'work'}", f"--output={root / 'quality.json'}", f"--corpus={small_data['corpus']}",
            f"--qa={small_data['qa']}", f"--limit={NUM_QUESTIONS}", "--sample=0", "--config=tiny",
            # The full size's beam (the small size's, the dense index, differs only in having no
            # dense_recall stages).
            "--finetune_retrieval=hybrid"] + \
        [f"--{stage}_steps={steps}" for stage, steps in STEPS.items()] + [f"--override={o}" for o in OVERRIDES]
    report = quality.main(argv)
    return {"report": report, "workdir": root / "work", "output": root / "quality.json", "argv": argv}


@pytest.mark.slow  # The whole pipeline, trained twice, then four evaluations: minutes on 2 cores.
def test_every_system_has_recall_exact_match_and_its_budget(benchmark):
    report = benchmark["report"]
    assert json.loads(benchmark["output"].read_text()) == report
    assert list(report["systems"]) == ["realm_pretrained", "ict_only", "bm25_reader", "no_retrieval"]
    for name, system in report["systems"].items():
        recalls = [system[f"recall@{k}"] for k in (1, 5, 20)]
        assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls), (name, recalls)
        assert 0.0 <= system["exact_match"] <= system["f1"] <= 1.0
        assert system["num_questions"] == NUM_QUESTIONS and system["top_k_read"] == 5
        assert system["evaluation_wall_seconds"] > 0
        budget = system["budget"]
        for stage, figures in budget["stages"].items():
            steps = STEPS[stage.split("_")[0]]
            assert figures["steps"] == steps and figures["examples_seen"] == steps * figures["batch_size"]
            assert figures["wall_seconds"] > 0
        assert budget["train_steps"] == sum(s["steps"] for s in budget["stages"].values())
    systems = report["systems"]
    assert set(systems["ict_only"]["budget"]["stages"]) == {"ict", "finetune_ict"}
    assert set(systems["realm_pretrained"]["budget"]["stages"]) == {"ict", "pretrain", "finetune_realm"}
    # The BM25 system reads with the REALM pipeline's reader; the ICT one with its own.
    assert systems["bm25_reader"]["checkpoint"] == systems["realm_pretrained"]["checkpoint"]
    assert systems["ict_only"]["checkpoint"] != systems["realm_pretrained"]["checkpoint"]
    # No retrieval: the null document holds no span and belongs to no passage.
    null = systems["no_retrieval"]
    assert null["exact_match"] == null["f1"] == 0.0
    assert null["recall@1"] == null["recall@5"] == null["recall@20"] == 0.0
    # BM25 finds the gold paragraph of SQuAD questions, whose words it shares, among ~200 blocks.
    assert systems["bm25_reader"]["recall@20"] >= 0.8
    assert systems["bm25_reader"]["retrieval"].startswith("BM25 over")
    # Both trained systems were fine-tuned and evaluated over hybrid retrieval of their own index,
    # and their dense retrievers were measured alone beside it.
    assert report["finetune_retrieval"] == "hybrid"
    for name in ("realm_pretrained", "ict_only"):
        assert systems[name]["retrieval"].startswith("hybrid (") and systems[name]["retriever"].startswith("hybrid")
        dense = [systems[name][f"dense_recall@{k}"] for k in (1, 5, 20)]
        assert all(0.0 <= r <= 1.0 for r in dense) and dense == sorted(dense), (name, dense)
        with_sentences = [systems[name][f"sentence_recall@{k}"] for k in (1, 5, 20)]
        assert all(0.0 <= r <= 1.0 for r in with_sentences) and with_sentences == sorted(with_sentences)
    assert not any(key.startswith(("dense_recall", "sentence_recall")) for key in systems["bm25_reader"])
    against = report["dense_against_bm25"]
    assert against["bm25"] == systems["bm25_reader"]["recall@5"]
    trained = ("realm_pretrained", "ict_only")
    assert against["dense"] == {name: systems[name]["dense_recall@5"] for name in trained}
    assert against["dense_with_sentence_vectors"] == {name: systems[name]["sentence_recall@5"] for name in trained}
    assert against["best_dense_at_least_bm25"] == (
        max([*against["dense"].values(), *against["dense_with_sentence_vectors"].values()]) >= against["bm25"])
    # Each system searched its own index version: ICT's, and pre-training's newest.
    training = report["stages"]["training"]
    assert training["finetune_ict"]["index_version"] != training["finetune_realm"]["index_version"]
    assert report["corpus"]["documents"] > SMALL_CORPUS_DOCS and report["num_questions"] == NUM_QUESTIONS


@pytest.mark.slow  # Reads the workdir of the benchmark fixture above.
def test_dense_recall_alone_is_what_the_reader_path_retrieves_densely(benchmark, small_data):
    """dense_recall@k (the retrieval step alone) against a whole evaluation over the dense
    index, whose evidence is the same ranking read by the reader."""
    from realm_tf.inference.open_qa_evaluation import evaluate_model_dir, read_questions

    questions = read_questions(str(small_data["qa"]), limit=NUM_QUESTIONS)
    for name in ("realm_pretrained", "ict_only"):
        whole = evaluate_model_dir(str(benchmark["workdir"] / quality.SYSTEMS[name].model_dir), questions,
                                   retrieval="index", evidence_depth=20, progress=False)
        system = benchmark["report"]["systems"][name]
        assert {k: system[f"dense_recall@{k}"] for k in (1, 5, 20)} == {
            k: whole.metrics[f"recall@{k}"] for k in (1, 5, 20)}


@pytest.mark.slow  # Reads the workdir of the benchmark fixture above.
def test_sentence_recall_searches_the_systems_own_block_vectors_plus_their_sentences(benchmark):
    """Each sentence_recall version is its system's index version embedded again by the same
    export: the same block vectors, in the same order, with sentence vectors beside them."""
    import numpy as np

    from realm_tf.artifacts.index_version import IndexVersion

    report = benchmark["report"]
    training = report["stages"]["training"]
    own = {"realm_pretrained": training["finetune_realm"]["index_version"],
           "ict_only": training["finetune_ict"]["index_version"]}
    versions = report["sentence_vectors"]["index_versions"]
    ledger = json.loads((benchmark["workdir"] / "stages.json").read_text())
    assert set(versions) == set(own) and len(set(versions.values())) == 2
    for name, path in versions.items():
        version, original = IndexVersion.load(path), IndexVersion.load(own[name])
        assert version.embedder_export == original.embedder_export
        assert version.sentences_dir and not original.sentences_dir
        np.testing.assert_array_equal(version.block_ids, original.block_ids)
        np.testing.assert_allclose(version.embeddings, original.embeddings, atol=1e-5)
        # The recall stage searched that version, with the system's own fine-tuned query tower.
        measured = ledger["stages"][f"sentence_recall_{name}"]["result"]
        assert measured["retrieval"] == path and measured["recall@20"] == report["systems"][name]["sentence_recall@20"]
        assert measured["checkpoint"] == report["systems"][name]["checkpoint"]


@pytest.mark.slow  # The whole pipeline, trained twice, then four evaluations: minutes on 2 cores.
def test_the_report_states_the_papers_ordering_and_whether_it_held(benchmark):
    report = benchmark["report"]
    assert report["paper"]["ordering"] == ["realm_pretrained", "ict_only", "bm25_reader", "no_retrieval"]
    assert report["paper"]["exact_match"]["REALM"] == {"NaturalQuestions-Open": 40.4, "WebQuestions": 40.7,
                                                       "CuratedTrec": 46.8}
    measured = report["measured"]
    assert sorted(measured["by_exact_match"]) == sorted(report["systems"])
    ems = [report["systems"][name]["exact_match"] for name in measured["by_exact_match"]]
    assert ems == sorted(ems, reverse=True)
    assert isinstance(measured["agrees_with_paper"], bool)
    assert measured["statement"].startswith("Yes" if measured["agrees_with_paper"] else "No")


def test_a_rerun_clears_only_a_workdir_of_its_own_no_run_holds(tmp_path):
    foreign = tmp_path / "not_a_benchmark"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(quality.BenchmarkError, match="not made by this benchmark"):
        quality.main([f"--workdir={foreign}", f"--output={tmp_path / 'q.json'}"])
    assert (foreign / "keep.txt").read_text() == "mine"
    # A workdir a live run of the benchmark holds (here: this test's parent process) is not cleared under it.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / quality.MARKER).write_text(f"{os.getppid()}\n")
    (busy / "checkpoint").write_text("in use")
    in_use = f"in use by another run of this benchmark .process {os.getppid()}."
    with pytest.raises(quality.BenchmarkError, match=in_use):
        quality.main([f"--workdir={busy}", f"--output={tmp_path / 'q.json'}"])
    assert (busy / "checkpoint").read_text() == "in use"
    bad_qa = tmp_path / "qa.jsonl"
    bad_qa.write_text('{"question": "q", "answers": ["a"]}\n')
    failed = subprocess.run([sys.executable, "-m", "benchmarks.quality", f"--workdir={tmp_path / 'w'}",
                             f"--qa={bad_qa}", f"--output={tmp_path / 'q.json'}"], cwd=REPO, capture_output=True,
                            text=True)
    assert failed.returncode == 2 and f"error: {bad_qa}:1: no gold_passage_id" in failed.stderr
    assert not (tmp_path / "q.json").exists()


@pytest.mark.slow  # Reads the fine-tuned model of the benchmark fixture above.
def test_evaluate_command_with_bm25_retrieval(benchmark, small_data, tmp_path, capsys):
    from realm_tf import evaluate
    from realm_tf.configs import load_config
    from realm_tf.corpus.block_store import BlockStore
    from realm_tf.retrieval.bm25_retrieval import Bm25Retriever
    from realm_tf.features import Featurizer

    model_dir = benchmark["workdir"] / "finetune_realm"
    predictions = tmp_path / "predictions.jsonl"
    command = [sys.executable, "-m", "realm_tf.evaluate", f"--model_dir={model_dir}", f"--qa={small_data['qa']}",
               "--limit=8", "--no_progress"]
    done = subprocess.run(command + ["--retrieval=bm25", "--evidence_depth=20", f"--output={predictions}"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recall@20" in done.stdout and "(8 questions; retrieval: BM25 over" in done.stdout
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    info = json.loads((model_dir / "open_qa.json").read_text())
    blocks = BlockStore(info["blocks_dir"], Featurizer(load_config("tiny").features))
    expected = Bm25Retriever.from_block_store(blocks).search([r["question"] for r in records], 20)
    for record, block_ids in zip(records, expected.tolist()):
        # BM25's ranking, 20 deep; every block weighs the same (BM25 scores are not retrieval logits).
        assert [e["block_id"] for e in record["evidence"]] == block_ids
        assert all(e["retrieval_probability"] == pytest.approx(1 / 20) for e in record["evidence"])
        # The answer comes from one of the 5 blocks read.
        assert record["prediction"] and any(record["prediction"] in e["text"] for e in record["evidence"][:5])
    # Bad combinations are errors that say why, without a traceback (in this process: the same main()).
    common = [f"--model_dir={model_dir}", f"--qa={small_data['qa']}", "--retrieval=bm25", "--no_progress"]
    assert evaluate.main(common + [f"--index={info['index_version']}"]) == 2
    assert "error: an index does not apply to --retrieval=bm25" in capsys.readouterr().err
    assert evaluate.main(common + ["--top_k=5", "--evidence_depth=3"]) == 2
    assert "error: evidence_depth (3) must be at least top_k (5)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        evaluate.main(common + ["--top_k=0"])
    assert usage.value.code == 2 and "--top_k: must be a positive integer, got 0" in capsys.readouterr().err


def test_pretraining_curves_come_from_tensorboard_and_reach_the_docs_page(tmp_path):
    import tensorflow as tf

    from benchmarks import report

    # A run that wrote steps 1-3, then resumed and wrote step 3 again: the last value wins.
    writer = tf.summary.create_file_writer(str(tmp_path / "pretrain" / "train"))
    with writer.as_default():
        for step, (accuracy, utility) in enumerate([(0.1, -0.2), (0.2, -0.1), (0.25, 0.0)], start=1):
            tf.summary.scalar("mlm_accuracy", accuracy, step=step)
            tf.summary.scalar("retrieval_utility", utility, step=step)
            tf.summary.scalar("learning_rate", 1e-4, step=step)
        tf.summary.scalar("mlm_accuracy", 0.3, step=3)
    writer.flush()
    curves = quality.training_curves(tmp_path / "pretrain")
    assert set(curves) == {"mlm_accuracy", "retrieval_utility"}  # Not learning_rate: only CURVE_TAGS.
    assert curves["mlm_accuracy"]["steps"] == [1, 2, 3]
    assert curves["mlm_accuracy"]["values"] == pytest.approx([0.1, 0.2, 0.3])
    assert curves["retrieval_utility"]["values"] == pytest.approx([-0.2, -0.1, 0.0])
    assert quality.training_curves(tmp_path / "nothing") == {}

    system = {"exact_match": 0.25, "f1": 0.3, "recall@1": 0.5, "recall@5": 0.7, "recall@20": 0.9,
              "dense_recall@1": 0.25, "dense_recall@5": 0.5, "dense_recall@20": 0.75,
              "budget": {"train_steps": 7, "training_wall_seconds": 12.0}}
    bm25 = {"exact_match": 0.0, "f1": 0.1, "recall@1": 0.5, "recall@5": 0.75, "recall@20": 1.0,
            "budget": {"train_steps": 7, "training_wall_seconds": 12.0}}
    systems = {"realm_pretrained": system, "ict_only": {**system, "dense_recall@5": 0.25}, "bm25_reader": bm25}
    against = quality.dense_against_bm25(systems)
    assert against == {"k": 5, "bm25": 0.75, "dense": {"realm_pretrained": 0.5, "ict_only": 0.25},
                       "best_dense_at_least_bm25": False}
    assert quality.dense_against_bm25({**systems, "ict_only": {**system, "dense_recall@5": 0.75}})[
        "best_dense_at_least_bm25"]
    # Sentence vectors count towards the target where they were measured.
    sentences = {**systems, "realm_pretrained": {**system, "sentence_recall@5": 0.8}}
    assert quality.dense_against_bm25(sentences) == {**against, "dense_with_sentence_vectors": {"realm_pretrained": 0.8},
                                                     "best_dense_at_least_bm25": True}
    results = {"description": "Four systems", "num_questions": 4, "systems": systems, "finetune_retrieval": "hybrid",
               "dense_against_bm25": against,
               "stages": {"training": {"pretrain": {"steps": 3, "batch_size": 4, "examples_seen": 12,
                                                    "learning_rate": 3e-5, "wall_seconds": 9.0, "curves": curves}}},
               "stage_attempts": {"pretrain": {"seconds": 9.0, "attempts": 2, "done": True},
                                  "ict": {"seconds": 1.0, "attempts": 1, "done": True, "note": "from its log"}}}
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    (results_dir / "quality_full.json").write_text(json.dumps(results))
    page = tmp_path / "docs" / "benchmarks.md"
    written = {p.rsplit("/", 1)[-1] for p in report.main([f"--results_dir={results_dir}", f"--output={page}"])["images"]}
    assert written == {"quality_full.png", "quality_full_pretraining.png"}
    text = page.read_text()
    assert "## Quality at the full budget: every qa_dev question" in text
    assert "](benchmarks/quality_full_pretraining.png)" in text
    assert "mlm_accuracy 0.100 over the first 1 logged steps and 0.300 over the last 1" in text
    assert "| pretrain | 3 | 4 | 12 |" in text
    assert "| system | recall@1 | recall@5 | recall@20 | exact_match | f1 | dense_recall@1 | dense_recall@5 | " \
           "dense_recall@20 |" in text and "| realm_pretrained | 0.5 | 0.7 | 0.9 | 0.25 | 0.3 | 0.25 | 0.5 | 0.75 |" \
           in text
    assert "Fine-tuned and evaluated over `hybrid` retrieval" in text
    assert ("recall@5: realm_pretrained 0.5, ict_only 0.25; BM25 0.75 (the target, dense at or above BM25: "
            "not met).") in text
    assert "adds up every attempt: pretrain 2 attempts, 9 s in all." in text and "- ict: from its log" in text
    assert "Not measured yet: `python -m benchmarks.quality`" in text  # The small size's file is absent.
    # With sentence vectors measured: their columns, what they are, and the target counted over them.
    (results_dir / "quality_full.json").write_text(json.dumps({
        **results, "systems": sentences, "dense_against_bm25": quality.dense_against_bm25(sentences),
        "sentence_vectors": {"block_weight": 0.5, "rescore_depth": 100, "index_versions": {}}}))
    report.main([f"--results_dir={results_dir}", f"--output={page}"])
    text = page.read_text()
    assert "| dense_recall@20 | sentence_recall@5 | train steps |" in text
    assert "the same dense retriever over its index rebuilt with sentence vectors (block weight 0.5" in text
    assert ("recall@5: realm_pretrained 0.5, ict_only 0.25; with sentence vectors, realm_pretrained 0.8; BM25 0.75 "
            "(the target, dense at or above BM25: met).") in text


@pytest.mark.slow  # Reads the workdir of the benchmark fixture above.
def test_a_resumed_run_skips_finished_stages_and_counts_every_attempt(benchmark):
    from benchmarks.stage_ledger import FILENAME

    ledger_path = benchmark["workdir"] / FILENAME
    ledger = json.loads(ledger_path.read_text())
    assert set(ledger["stages"]) == {"fetch", "chunk", "ict", "index", "examples", "pretrain", "finetune_ict",
                                     "finetune_realm", *(f"evaluate_{name}" for name in quality.SYSTEMS),
                                     *(f"{stage}_{name}" for stage in ("dense_recall", "sentence_index",
                                                                        "sentence_recall")
                                       for name in ("realm_pretrained", "ict_only"))}
    assert all(entry["done"] and entry["attempts"] == 1 for entry in ledger["stages"].values())
    # Which index version each fine-tuning searched is kept for a resumed run to find again.
    training = benchmark["report"]["stages"]["training"]
    assert ledger["stages"]["index"]["result"]["index_version"] == training["finetune_ict"]["index_version"]
    assert ledger["stages"]["pretrain"]["result"]["index_version"] == training["finetune_realm"]["index_version"]
    # As if the run had been cut short during its last evaluation, after 5 s of it.
    ledger["stages"]["evaluate_no_retrieval"].update(done=False, seconds=5.0, result=None)
    ledger_path.write_text(json.dumps(ledger))
    first = benchmark["report"]
    resumed = quality.main(benchmark["argv"] + ["--resume"])
    assert resumed["systems"]["realm_pretrained"] == first["systems"]["realm_pretrained"]
    attempts = resumed["stage_attempts"]
    assert attempts["evaluate_no_retrieval"]["attempts"] == 2 and attempts["evaluate_no_retrieval"]["done"]
    assert resumed["systems"]["no_retrieval"]["evaluation_wall_seconds"] > 5.0
    assert resumed["systems"]["no_retrieval"]["exact_match"] == 0.0
    assert attempts["pretrain"]["attempts"] == 1
    assert resumed["stages"]["training"] == first["stages"]["training"]
    # The pre-training stage was not run again: this attempt took a fraction of the first.
    assert resumed["this_attempt_wall_seconds"] < first["stages"]["training"]["pretrain"]["wall_seconds"]
    assert resumed["total_wall_seconds"] >= first["total_wall_seconds"]


def test_resume_needs_a_ledger_with_the_same_settings(tmp_path):
    from benchmarks.stage_ledger import StageLedger

    with pytest.raises(quality.BenchmarkError, match="holds no run of this benchmark to resume"):
        quality.main([f"--workdir={tmp_path / 'none'}", "--resume"])
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / quality.MARKER).write_text("made by an earlier run\n")
    with pytest.raises(quality.BenchmarkError, match="stages.json: no such file"):
        quality.main([f"--workdir={workdir}", "--resume"])
    StageLedger.start(workdir, {"size": "small"})
    with pytest.raises(quality.BenchmarkError, match="started with .*size='small'.*; this one asks .*size='full'"):
        quality.main([f"--workdir={workdir}", "--size=full", "--resume"])
    assert (workdir / quality.MARKER).is_file()  # Refused, not cleared.


def test_the_ledger_counts_the_seconds_of_every_attempt(tmp_path):
    import time

    from benchmarks.stage_ledger import LedgerError, StageLedger

    settings = {"steps": (1, 2)}
    ledger = StageLedger.start(tmp_path, settings, heartbeat_seconds=0.05)
    assert ledger.run("one", lambda: ["trained"])[::2] == (["trained"], True)

    def killed():
        time.sleep(0.3)
        # The heartbeat has written the running stage's seconds: a kill now loses at most one beat.
        entry = json.loads((tmp_path / "stages.json").read_text())["stages"]["two"]
        assert not entry["done"] and entry["attempts"] == 1 and entry["seconds"] >= 0.1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ledger.run("two", killed)
    again = StageLedger.resume(tmp_path, settings)
    assert again.done("one") and not again.done("two") and again.seconds("two") >= 0.3
    calls = []
    assert again.run("one", lambda: calls.append(1)) == (["trained"], again.seconds("one"), False) and not calls
    result, seconds, ran = again.run("two", lambda: {"em": 0.5})
    assert result == {"em": 0.5} and ran and seconds >= 0.3 and again.attempts("two") == 2
    assert StageLedger.resume(tmp_path, settings).summary()["two"] == {"seconds": seconds, "attempts": 2,
                                                                        "done": True}
    with pytest.raises(LedgerError, match=r"started with steps=\[1, 2\]; this one asks steps=\[1, 3\]"):
        StageLedger.resume(tmp_path, {"steps": (1, 3)})
    (tmp_path / "stages.json").write_text("{}")
    with pytest.raises(LedgerError, match="stages.json: not a stage ledger"):
        StageLedger.resume(tmp_path, settings)

"""Open-QA fine-tuning on the small corpus: targets, learning, the CLI, and evaluation."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from realm_tf import evaluate, train
from realm_tf.configs import load_config
from realm_tf.evaluation.answer_metrics import normalize_answer
from realm_tf.tasks.finetune import FinetuneTask
from realm_tf.training.trainer import Trainer

from conftest import QA_TRAIN, REPO

OVERRIDES = ["finetune.training.batch_size=4", "finetune.training.warmup_steps=2",
             "finetune.training.checkpoint_every_steps=100", "finetune.training.summary_every_steps=1"]


@pytest.fixture(scope="module")
def small_qa(small_blocks_dir, tmp_path_factory):
    """The training questions whose gold passage is in the small corpus (first 120 of them)."""
    from realm_tf.corpus.block_store import BlockStore

    doc_ids = set(BlockStore(small_blocks_dir, featurizer=_featurizer()).doc_ids.values())
    lines = [line for line in QA_TRAIN.read_text(encoding="utf-8").splitlines()
             if json.loads(line)["gold_passage_id"] in doc_ids][:120]
    path = tmp_path_factory.mktemp("qa") / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _featurizer():
    from realm_tf.features import Featurizer

    return Featurizer(load_config("tiny").features)


@pytest.fixture(scope="module")
def task(small_qa, small_blocks_dir, small_index_root):
    return FinetuneTask(load_config("tiny", OVERRIDES), small_qa, small_blocks_dir, small_index_root)


def test_answer_spans_mark_every_occurrence_the_reader_can_see(task):
    batch = task.make_batch(np.arange(len(task.examples)))
    k, width = task.top_k, task.max_span_length
    assert batch["answer_spans"].shape == (len(task.examples), k, task.config.features.reader_length, width)
    # The retriever's beam: the whole small corpus (fewer blocks than the tiny beam of 500).
    assert batch["candidate_embeddings"].shape == (len(task.examples), len(task.blocks), 128)
    assert (batch["retrieval_correct"][:, :k] >= batch["answer_spans"].any(axis=(2, 3))).all()
    marked = 0
    for row, example in enumerate(task.examples):
        answers = {normalize_answer(a) for a in example.answers}
        for column, block_id in enumerate(batch["candidate_ids"][row, :k]):
            words = batch["reader"]["input_word_ids"][row, column]
            offset = int(np.argmax(batch["reader"]["input_type_ids"][row, column]))
            begins, ends = task.blocks.token_begins[block_id], task.blocks.token_ends[block_id]
            text = task.blocks.texts[block_id]
            for position, w in zip(*np.nonzero(batch["answer_spans"][row, column])):
                start = position - offset
                assert 0 <= start and words[position + w] != task.featurizer.vocabulary.sep_id
                assert normalize_answer(text[begins[start]:ends[start + w]]) in answers
                marked += 1
            # A block whose visible text holds the answer as whole words has at least one target.
            visible = text[:ends[min(len(begins), (words != 0).sum() - offset - 1) - 1]] if len(begins) else ""
            if any(f" {a} " in f" {normalize_answer(visible)} " for a in answers if len(a.split()) <= 3):
                assert batch["answer_spans"][row, column].any(), (example.answers, visible)
    assert marked > 0, "some retrieved block should hold an answer in the small corpus"


def test_training_on_questions_with_answers_in_their_blocks_lowers_the_loss(task, tmp_path):
    trainer = Trainer(task, task.config.finetune.training, str(tmp_path / "model"))
    task.sync_search_embedder(trainer.model)
    batch = task.make_batch(np.arange(len(task.examples)))
    with_answer = np.nonzero(batch["answer_spans"].any(axis=(1, 2, 3)))[0]
    assert len(with_answer) > 0
    # The tiny model's towers start random, so how many questions find an answer in the blocks
    # they read is chance (1 to a few of the 120, by the seeds the tests before left): repeats
    # fill the batch of 4 when fewer do.
    fixed = task.make_batch(np.resize(with_answer[:4], 4))
    step = trainer.build_train_step()
    losses = [float(step(fixed)["loss"]) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_finetune_command_trains_mirrored_resumes_and_evaluates(small_qa, small_blocks_dir, small_index_root, ict_run,
                                                                 tmp_path):
    model_dir = tmp_path / "finetune"
    argv = ["--task=finetune", "--config=tiny", f"--blocks_dir={small_blocks_dir}", f"--index={small_index_root}",
            f"--qa_train={small_qa}", f"--model_dir={model_dir}", f"--init_from={ict_run['model_dir']}",
            "--no_progress"] + [f"--override={o}" for o in OVERRIDES]
    # A fresh process, so that the two logical CPUs can be made before TensorFlow starts.
    first = subprocess.run([sys.executable, "-m", "realm_tf.train", *argv, "--strategy=mirrored", "--cpu_devices=2",
                            "--override=finetune.training.train_steps=3"], cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "step 3: loss" in first.stdout and "answer_in_candidates" in first.stdout
    assert "Using MirroredStrategy with devices" in first.stderr
    assert f"retriever restored from {ict_run['model_dir']}" in first.stderr
    info = json.loads((model_dir / "open_qa.json").read_text())
    assert info["index_version"].startswith(small_index_root)
    resumed = train.run(argv + ["--override=finetune.training.train_steps=5", f"--eval_qa={small_qa}"])
    assert resumed["step"] == 5 and resumed["index_version"] == info["index_version"]
    metrics = json.loads((model_dir / "eval.json").read_text())
    assert metrics["num_questions"] == 120 and 0.0 <= metrics["exact_match"] <= metrics["f1"] <= 1.0
    assert metrics["recall@1"] <= metrics["recall@5"]
    assert metrics["checkpoint"].endswith("ckpt-5")


def test_evaluate_writes_predictions_with_evidence_and_the_null_baseline(small_qa, small_blocks_dir, small_index_root,
                                                                         tmp_path):
    model_dir = tmp_path / "finetune"
    train.run(["--task=finetune", "--config=tiny", f"--blocks_dir={small_blocks_dir}", f"--index={small_index_root}",
               f"--qa_train={small_qa}", f"--model_dir={model_dir}", "--no_progress",
               "--override=finetune.training.train_steps=1"] + [f"--override={o}" for o in OVERRIDES[:1]])
    predictions = tmp_path / "predictions.jsonl"
    metrics = evaluate.run([f"--model_dir={model_dir}", f"--qa={small_qa}", f"--output={predictions}", "--limit=20",
                            "--no_progress"])
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(records) == 20 == metrics["num_questions"]
    first = records[0]
    assert len(first["evidence"]) == 5 and sum(e["retrieval_probability"] for e in first["evidence"]) == pytest.approx(1)
    # The answer is a slice of one of its blocks (the untrained reader still picks a valid span).
    assert first["prediction"] and any(first["prediction"] in e["text"] for e in first["evidence"])
    null = evaluate.run([f"--model_dir={model_dir}", f"--qa={small_qa}", "--retrieval=null", "--limit=20",
                         "--no_progress"])
    assert null["exact_match"] == 0.0 and null["recall@1"] == 0.0  # Nothing to read, nothing to extract.
    # --sample: a draw across the file, not its first questions, the same each run, in file order.
    all_ids = [json.loads(line)["id"] for line in pathlib.Path(small_qa).read_text().splitlines()]
    draws = []
    for run in range(2):
        sampled = tmp_path / f"sampled-{run}.jsonl"
        evaluate.run([f"--model_dir={model_dir}", f"--qa={small_qa}", "--retrieval=null", "--sample=7",
                      f"--output={sampled}", "--no_progress"])
        draws.append([json.loads(line)["id"] for line in sampled.read_text().splitlines()])
    assert draws[0] == draws[1] and len(draws[0]) == 7
    assert draws[0] == [i for i in all_ids if i in draws[0]] and draws[0] != all_ids[:7]
    # The command line, in a fresh process: a bad QA file is an error naming its line.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answers": ["a"]}\n{"question": "q2", "answers": []}\n')
    failed = subprocess.run([sys.executable, "-m", "realm_tf.evaluate", f"--model_dir={model_dir}", f"--qa={bad}"],
                            cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 2 and f"{bad}:2:" in failed.stderr

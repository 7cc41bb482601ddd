"""The README's main job and the pipeline's command line, run as a user runs them."""

import json
import subprocess
import sys

from realm_tf import quickstart
from realm_tf.artifacts.index_version import IndexVersion, latest_version
from realm_tf.artifacts.manifests import BlocksManifest
from realm_tf.configs import load_config
from realm_tf.retrieval.embedder_export import EmbedderExport

from conftest import REPO


REDUCED = ["ict.training.train_steps=40", "pretrain.training.train_steps=12", "pretrain.refresh_every_steps=6",
           "finetune.training.train_steps=6"]


def test_quickstart_runs_every_stage_and_summarizes(tmp_path, capsys):
    # The real stages on the whole embedded corpus, with fewer training steps.
    # The random-weight path (tiny) keeps it within the default run; every qa_dev question.
    assert quickstart.main(["--workdir", str(tmp_path), "--config=tiny", "--eval_questions=0"]
                           + [f"--override={o}" for o in REDUCED]) == 0
    out = capsys.readouterr().out
    stages = [name for name, _, _ in quickstart.STAGES]
    assert stages == ["fetch", "chunk", "ict", "index", "examples", "pretrain", "retrieval", "finetune", "export", "evaluate",
                      "answer"]
    for number, name in enumerate(stages, start=1):
        assert f"[{number}/{len(stages)}] {name}: done" in out
    manifest = BlocksManifest.read(str(tmp_path / "blocks"))
    assert manifest.num_documents == 2067 and manifest.num_blocks > 2067
    assert f"wrote {manifest.num_blocks} blocks from 2067 documents" in out
    assert "config tiny names no registered pretrained weights: nothing to fetch" in out
    # ICT ran its configured steps and exported the embedder the index was built with.
    assert EmbedderExport.load(str(tmp_path / "ict" / "embedder" / "40")).step == 40
    # Pre-training ran its steps and the refresher indexed its last export: the newest
    # index version, the one evaluated, comes from the pre-trained embedder.
    steps = load_config("tiny", REDUCED).pretrain.training.train_steps
    assert (tmp_path / "pretrain" / "embedder" / "TRAINING_DONE").is_file()
    version = IndexVersion.load(latest_version(str(tmp_path / "index")))
    assert version.num_blocks == manifest.num_blocks
    assert version.manifest["metadata"]["embedder_export"] == str(tmp_path / "pretrain" / "embedder" / str(steps))
    assert "retrieved from" in out and "masked-LM accuracy" in out
    recall = json.loads((tmp_path / "retrieval_recall.json").read_text())
    assert recall["num_questions"] == 1352
    assert recall["bm25"]["recall@5"] > 0.8
    # The in-graph lexical retriever and its fusion with the (here random) dense one, beside them.
    assert recall["lexical"]["recall@5"] > 0.8 and 0 <= recall["hybrid"]["recall@5"] <= 1
    # Fine-tuning read the newest index (the pre-trained one) and kept it.
    info = json.loads((tmp_path / "finetune" / "open_qa.json").read_text())
    assert info["index_version"] == latest_version(str(tmp_path / "index"))
    assert (tmp_path / "finetune" / "checkpoints" / "ckpt-6.index").is_file()
    # Every qa_dev question has a prediction with its evidence, and the metrics are the file's.
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((tmp_path / "qa_dev_metrics.json").read_text())
    assert len(predictions) == metrics["num_questions"] == 1352
    assert metrics["exact_match"] == sum(p["exact_match"] for p in predictions) / 1352
    assert all(len(p["evidence"]) == 5 for p in predictions)
    # They are the SavedModel's: what is served is what is scored.
    export = tmp_path / "saved_models" / "realm_qa" / "1"
    assert metrics["retrieval"] == f"{export} (exact retrieval in the SavedModel)"
    assert f"the exported SavedModel: exact_match {metrics['exact_match']:.3f}" in out
    assert "no retrieval:       exact_match 0.000" in out
    # The SavedModel answered the sample question, in TF Serving's layout.
    assert (tmp_path / "saved_models" / "realm_qa" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "saved_models" / "models.config").is_file()
    assert "Q: When was Nikola Tesla born?" in out and "A: " in out and "1. p=" in out
    assert f"outputs under {tmp_path.resolve()}" in out
    assert out.rstrip().endswith(f"python -m realm_tf.serving.demo --saved_model {export}, "
                                 "then open http://127.0.0.1:8080/")


def test_chunk_corpus_command_line_in_a_fresh_process(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "title": "T", "text": "One sentence. Another one."}) + "\n{oops\n")
    command = [sys.executable, "-m", "beam_pipelines.chunk_corpus", f"--input={docs}", "--config=tiny"]
    failed = subprocess.run(command + [f"--output_dir={tmp_path / 'a'}"], cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"error: {docs}:2: malformed JSON" in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.count("malformed JSON") == 1, failed.stderr
    kept = subprocess.run(command + [f"--output_dir={tmp_path / 'b'}", "--on_bad_record=dead_letter"],
                          cwd=REPO, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert "wrote 1 blocks from 1 documents" in kept.stdout
    assert "1 bad record(s) in dead_letters-*.jsonl: {'malformed_json': 1}" in kept.stdout
    usage = subprocess.run([sys.executable, "-m", "beam_pipelines.chunk_corpus", "--help"], cwd=REPO,
                           capture_output=True, text=True)
    assert usage.returncode == 0 and "--on_bad_record" in usage.stdout and "passed to Beam untouched" in usage.stdout


def test_a_training_stage_sums_up_its_last_batch_or_that_it_had_nothing_left_to_do():
    from realm_tf.quickstart import _trained

    line = _trained({"step": 40, "steps_per_second": 0.5, "train": {"loss": 2.5, "mlm_accuracy": 0.25}},
                    "masked-LM accuracy {mlm_accuracy:.3f}, retrieval utility {retrieval_utility:.4f}")
    # A metric the run did not report reads nan, not a KeyError.
    assert line == "step 40 (0.50 steps/s): loss 2.500, masked-LM accuracy 0.250, retrieval utility nan (last batch)"
    # Resumed at its last checkpoint: no batch ran, so no loss to show (not "loss nan").
    line = _trained({"step": 500, "steps_per_second": 0.0, "train": {}}, "best span correct {span_accuracy:.3f}")
    assert line == "step 500: already trained that far (its last checkpoint); no step run"

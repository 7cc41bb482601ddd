"""The README's main job and the pipeline's command line, run as a user runs them."""

import json
import subprocess
import sys

from realm_tf import quickstart
from realm_tf.corpus.manifest import BlocksManifest

from conftest import REPO


def test_quickstart_runs_every_stage_and_summarizes(tmp_path, capsys):
    assert quickstart.main(["--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    manifest = BlocksManifest.read(str(tmp_path / "blocks"))
    assert manifest.num_documents == 2067 and manifest.num_blocks > 2067
    assert f"[1/{len(quickstart.STAGES)}] chunk: done" in out
    assert f"wrote {manifest.num_blocks} blocks from 2067 documents" in out
    assert f"outputs under {tmp_path.resolve()}" in out


def test_chunk_corpus_command_line_in_a_fresh_process(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "title": "T", "text": "One sentence. Another one."}) + "\n{oops\n")
    command = [sys.executable, "-m", "beam_pipelines.chunk_corpus", f"--input={docs}", "--config=tiny"]
    failed = subprocess.run(command + [f"--output_dir={tmp_path / 'a'}"], cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"error: {docs}:2: malformed JSON" in failed.stderr
    kept = subprocess.run(command + [f"--output_dir={tmp_path / 'b'}", "--on_bad_record=dead_letter"],
                          cwd=REPO, capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert "wrote 1 blocks from 1 documents" in kept.stdout
    assert "1 bad record(s) in dead_letters-*.jsonl: {'malformed_json': 1}" in kept.stdout
    usage = subprocess.run([sys.executable, "-m", "beam_pipelines.chunk_corpus", "--help"], cwd=REPO,
                           capture_output=True, text=True)
    assert usage.returncode == 0 and "--on_bad_record" in usage.stdout and "passed to Beam untouched" in usage.stdout

"""Pipelines started without --runner run on the DirectRunner: Beam's default, PrismRunner,
would download a runner binary at run time."""

import json
import logging

from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import chunk_corpus
from beam_pipelines.pipeline_options import pipeline_options


def test_no_runner_means_the_direct_runner_and_a_named_one_is_kept():
    assert pipeline_options([]).view_as(StandardOptions).runner == "DirectRunner"
    named = pipeline_options(["--runner=DataflowRunner", "--project=p"])
    assert named.view_as(StandardOptions).runner == "DataflowRunner"
    assert named.get_all_options()["project"] == "p"


def test_a_pipeline_without_runner_never_tries_prism(tmp_path, caplog):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "a", "title": "A", "text": "Tesla was born in 1856. He died in 1943."}) + "\n")
    caplog.set_level(logging.INFO)
    manifest = chunk_corpus.run([f"--input={docs}", f"--output_dir={tmp_path / 'blocks'}", "--config=tiny"])
    assert manifest.num_blocks == 1
    assert "prism" not in caplog.text.lower()

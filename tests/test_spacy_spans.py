"""The spacy salient span detector: spaCy's English NER (the ner extra), pinned, batched, in Beam."""

import importlib.util
import json
import random
import shutil

import pytest
import tensorflow as tf

from beam_pipelines import chunk_corpus, make_pretraining_examples
from realm_tf.configs import ConfigError, load_config
from realm_tf.corpus.pretraining_examples import PretrainingExample
from realm_tf.features import Featurizer
from realm_tf.features import spacy_spans
from realm_tf.features.salient_spans import SALIENT, detect_spans, get_span_detector, mask_sentence
from realm_tf.features.spacy_spans import SpacySpanDetector, SpanModelError

from conftest import CORPUS, REPO


@pytest.fixture(scope="module")
def detect():
    return get_span_detector("spacy")


@pytest.fixture(scope="module")
def tokenize(tiny_config):
    featurizer = Featurizer(tiny_config.features)
    return lambda texts: featurizer.tokenize(list(texts)).to_list()


def _found(detect, text):
    return [text[a:b] for a, b in detect(text)]


def test_finds_the_people_places_organisations_and_dates_of_hand_written_sentences(detect):
    assert _found(detect, "Marie Curie was born in Warsaw on 7 November 1867 and later worked at the "
                          "University of Paris.") == ["Marie Curie", "Warsaw", "7 November 1867", "University of Paris"]
    # A leading "the" and a trailing possessive are not part of the name.
    assert _found(detect, "The Treaty of Versailles was signed by Germany and the Allies in 1919.") == [
        "Treaty of Versailles", "Germany", "1919"]
    assert _found(detect, "The United Nations met Gabriel García Márquez's translator.") == [
        "United Nations", "Gabriel García Márquez"]
    # Numbers are not salient; a sentence without names has no span.
    assert _found(detect, "He lit electric lamps wirelessly at both locations, 25 miles apart.") == []


def test_entity_types_come_from_the_config(detect):
    text = "Marie Curie was born in Warsaw on 7 November 1867."
    people = SpacySpanDetector(["PERSON"])
    assert _found(people, text) == ["Marie Curie", "7 November 1867"]  # The date regex is kept.
    assert people._nlp is detect._nlp  # One pipeline loaded per process.
    with pytest.raises(ValueError, match=r"unknown entity types \['PEOPLE'\]"):
        SpacySpanDetector(["PEOPLE"])
    with pytest.raises(ConfigError, match="pretrain.salient_entity_types"):
        load_config("tiny", ["pretrain.salient_entity_types=[PERSON,PEOPLE]"])
    config = load_config("tiny", ["pretrain.salient_span_detector=spacy", "pretrain.salient_entity_types=[GPE]"])
    assert _found(get_span_detector("spacy", config.pretrain.salient_entity_types), text) == [
        "Warsaw", "7 November 1867"]


def test_a_batch_gives_what_one_text_at_a_time_gives(detect):
    texts = ["Tesla was born in Smiljan.", "", "Edison and Westinghouse competed in the 1880s.", "no names here."]
    assert detect_spans(detect, texts) == [detect(text) for text in texts]
    assert detect_spans(lambda text: [(0, 1)], ["ab", "cd"]) == [[(0, 1)], [(0, 1)]]


@pytest.mark.parametrize("text", [
    "Antonín Dvořák met Gabriel García Márquez's translator in São Paulo in March 1990.",
    "Eugene O'Neill and Jean-Paul Sartre never visited the Côte d'Ivoire.",
    "In Zürich, Jürgen Habermas (born 18 June 1929) spoke with Slavoj Žižek.",
])
def test_entities_map_onto_exactly_their_wordpieces(detect, tokenize, text):
    spans = detect(text)
    assert len(spans) >= 3
    sentence = tokenize([text])[0]
    for start, end in spans:
        query = mask_sentence(text, tokenize, [(start, end)], mask_id=103, max_query_tokens=62, max_masked_tokens=10,
                              rng=random.Random(0), random_fallback_probability=0.15, vocab_size=30522)
        assert query.kind == SALIENT, text[start:end]
        prefix, span = tokenize([text[:start], text[start:end]])
        # The masked wordpieces are the name's own, where the sentence has them.
        assert query.masked_positions == list(range(len(prefix), len(prefix) + len(span)))
        assert query.masked_token_ids == span == sentence[len(prefix):len(prefix) + len(span)]


def test_without_the_extra_the_error_names_the_install_command(monkeypatch, small_blocks_dir, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(spacy_spans.importlib.util, "find_spec", lambda name: None if name == "spacy" else real(name))
    with pytest.raises(SpanModelError, match=r"needs spacy, not installed: pip install -e '\.\[ner\]'"):
        get_span_detector("spacy")
    # The pipeline refuses before it starts, in one line naming the config field: no fall-back to the rules.
    status = make_pretraining_examples.main([f"--blocks_dir={small_blocks_dir}", f"--output_dir={tmp_path / 'out'}",
                                             "--config=tiny", "--override=pretrain.salient_span_detector=spacy"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and error == ["error: config field pretrain.salient_span_detector: the spacy salient span "
                                     "detector needs spacy, not installed: pip install -e '.[ner]'"]
    assert not (tmp_path / "out").exists()


def test_a_tampered_model_file_is_refused_naming_it_and_both_digests(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(spacy_spans.check_installed(), model_dir)
    moves = model_dir / "ner" / "moves"
    moves.write_bytes(moves.read_bytes() + b" ")
    with pytest.raises(SpanModelError, match=rf"{moves}: sha256 [0-9a-f]{{64}}, expected "
                                             rf"{spacy_spans.MODEL_FILES['ner/moves']}"):
        SpacySpanDetector(model_dir=model_dir)
    (model_dir / "ner" / "moves").unlink()
    with pytest.raises(SpanModelError, match="ner/moves: missing"):
        spacy_spans.verify_model_files(model_dir)


def test_the_detector_works_inside_the_beam_pipeline_in_multi_processing_mode(tmp_path, detect):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:6]), encoding="utf-8")
    blocks_dir = str(tmp_path / "blocks")
    chunk_corpus.run([f"--input={docs}", f"--output_dir={blocks_dir}", "--config=tiny"])
    outputs = {}
    for mode in ("in_memory", "multi_processing"):
        manifest = make_pretraining_examples.run(
            [f"--blocks_dir={blocks_dir}", f"--output_dir={tmp_path / mode}", "--config=tiny",
             "--override=pretrain.salient_span_detector=spacy", f"--direct_running_mode={mode}",
             "--direct_num_workers=2", "--batch_size=2"])
        assert manifest.salient_span_detector == "spacy"
        outputs[mode] = sorted(raw.numpy() for raw in tf.data.TFRecordDataset(manifest.example_paths(str(tmp_path / mode))))
    assert outputs["multi_processing"] == outputs["in_memory"]
    examples = [PretrainingExample.from_bytes(raw) for raw in outputs["in_memory"]]
    salient = [e for e in examples if e.kind == SALIENT]
    assert len(salient) >= 0.8 * len(examples)
    # Every salient example masks one of the sentence's spaCy spans.
    found = {e.sentence: detect(e.sentence) for e in salient}
    assert all(found[e.sentence] for e in salient)


def test_the_quickstart_masks_with_its_configs_tagger_or_says_it_uses_the_rules(monkeypatch, small_blocks_dir,
                                                                                 tmp_path):
    import yaml

    from realm_tf import quickstart

    values = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text(encoding="utf-8"))
    values.setdefault("pretrain", {})["salient_span_detector"] = "spacy"
    config = tmp_path / "tagger.yaml"
    config.write_text(yaml.safe_dump(values), encoding="utf-8")
    (tmp_path / "blocks").symlink_to(small_blocks_dir)
    lines = quickstart._examples_stage(quickstart.Workspace(tmp_path, str(config)))
    assert "spans from spacy" in lines[1]
    real = importlib.util.find_spec
    monkeypatch.setattr(spacy_spans.importlib.util, "find_spec", lambda name: None if name == "spacy" else real(name))
    lines = quickstart._examples_stage(quickstart.Workspace(tmp_path, str(config)))
    assert lines[0] == ("note: the spacy salient span detector needs spacy, not installed: pip install -e '.[ner]'; "
                        "masking with the rule-based detector (dates_and_entities) instead")
    assert "spans from dates_and_entities" in lines[2]
    # Asked for on the command line, the tagger is not replaced: the error names the install command.
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ner\]'"):
        quickstart._examples_stage(quickstart.Workspace(tmp_path, str(config), ["pretrain.salient_span_detector=spacy"]))


def test_the_labelled_sentences_and_how_a_span_is_judged(tmp_path):
    from benchmarks import salient_spans

    rows = salient_spans.read_labels(salient_spans.LABELS)
    assert len(rows) == 100 and {row["source"].split("#")[0] for row in rows} == {
        "Nikola_Tesla", "Economic_inequality", "Islamism", "United_Methodist_Church", "Prime_number"}
    tesla = next(row for row in rows if row["text"] == "Tesla died on 7 January 1943.")
    assert [tesla["text"][a:b] for a, b in tesla["spans"]] == ["Tesla", "7 January 1943"]
    # Every occurrence, but not inside a longer word ("Muslim" is not in "Muslims").
    muslims = next(row for row in rows if row["source"] == "Islamism#17")
    assert sorted(muslims["text"][a:b] for a, b in muslims["spans"]).count("Muslim") == 1
    assert salient_spans.judge([(0, 5), (0, 12), (13, 20)], [(0, 12)]) == {
        "inside": [True, True, False], "exact": [False, True, False]}
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"source": "x#0", "sentence": 0, "text": "Tesla died.", "salient": ["Edison"]}\n')
    with pytest.raises(ValueError, match=rf"{bad}:1: labelled span 'Edison' is not in the sentence"):
        salient_spans.read_labels(bad)


def test_the_benchmark_compares_the_detectors_in_the_pipeline_and_on_the_labels(tmp_path):
    from benchmarks import salient_spans

    output = tmp_path / "salient_spans.json"
    results = salient_spans.main(["--config=tiny", "--num_docs=4", "--repeats=1", f"--workdir={tmp_path / 'work'}",
                                  f"--output={output}"])
    assert json.loads(output.read_text()) == results
    rules, tagger = results["detectors"]["dates_and_entities"], results["detectors"]["spacy"]
    for detector in (rules, tagger):
        run, judged = detector["pipeline"], detector["labelled"]
        assert run["sentences"] > 0 and 0 < run["with_a_span"] <= 1 and run["sentences_per_second"] > 0
        assert judged["spans_found"] == len(judged["not_entities_or_dates"]) + round(
            judged["entity_or_date"] * judged["spans_found"])
        assert judged["labelled_spans"] == results["labels"]["labelled_spans"] > 200
    assert rules["pipeline"]["speed_vs_first"] == 1.0
    # The rules take a capitalized first word for a name; the tagger does not.
    assert "Conversely" in rules["labelled"]["not_entities_or_dates"]
    assert "Conversely" not in tagger["labelled"]["not_entities_or_dates"]

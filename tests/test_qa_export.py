"""The QA export (`python -m realm_tf.export`), built from a tiny fine-tuned model and loaded in fresh processes.

Three exports keep the file fast: a ScaNN one of the corpus the model was fine-tuned with
(the defaults of open_qa.json), an exact one of a grown corpus (re-indexed without
retraining), which is also the one checked for stock ops, bad requests and saved_model_cli,
and a hybrid one (exact and lexical retrieval) of the fine-tuning corpus.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.artifacts.qa_export import METADATA_PATH
from realm_tf.artifacts.serving_root import next_version_dir
from realm_tf.export import __main__ as export_cli
from realm_tf.export.qa_export import DEFAULT_MAX_K, OUTPUTS

from conftest import CORPUS, QA_TRAIN, REPO, SMALL_CORPUS_DOCS

QUESTIONS = [json.loads(line)["question"] for line in QA_TRAIN.read_text(encoding="utf-8").splitlines()[:6]] + [
    "", "¿Quién ganó el Super Bowl 50? — café, ½ ✓"]
# Documents the grown corpus adds (non-ASCII on purpose: answers are sliced by characters).
EXTRA_DOCS = [
    {"id": "extra-aurora", "title": "Estación Aurora",
     "text": "Estación Aurora is a polar laboratory on the Kessler Ice Shelf, where it is −40 °C in July. It was "
             "founded in 1987 by the glaciologist Mirela Vântongeren. Its scientists drill ice cores."},
    {"id": "extra-quill", "title": "Quillfeather Bridge",
     "text": "Quillfeather Bridge — a wooden footbridge over the river Lune — was built in 1642 by the "
             "carpenter Tobías Wren and rebuilt after the flood of 1771."},
]

# Prints the outputs of serving_default as JSON (strings decoded), in a process that
# registers the ScaNN ops the way a Python server would: `import scann` before loading.
SCANN_CLIENT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
import scann  # noqa: F401
loaded = tf.saved_model.load(sys.argv[1])
out = loaded.signatures["serving_default"](questions=tf.constant(json.loads(sys.argv[2]), tf.string))
decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
nested = lambda v: [nested(x) for x in v] if isinstance(v, list) else decode(v)
print(json.dumps({k: nested(v.numpy().tolist()) for k, v in out.items()}))
"""

# TensorFlow and TF Text only, as stock TF Serving: the ops of the exact export, its
# answers, bad requests, and the ScaNN export failing to load.
STOCK_CLIENT = """
import json, os, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

exact, scann_export, questions, new_blocks = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
report = {"imported": [m for m in ("scann", "tensorflow_recommenders", "realm_tf") if m in sys.modules]}
with open(os.path.join(exact, "saved_model.pb"), "rb") as f:
    proto = saved_model_pb2.SavedModel.FromString(f.read())
ops = set()
for graph in proto.meta_graphs:
    ops.update(node.op for node in graph.graph_def.node)
    for function in graph.graph_def.library.function:
        ops.update(node.op for node in function.node_def)
report["ops"] = sorted(ops)
report["unregistered"] = sorted(op for op in ops if op_def_registry.get(op) is None)

loaded = tf.saved_model.load(exact)
signatures = loaded.signatures
decode = lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
nested = lambda v: [nested(x) for x in v] if isinstance(v, list) else decode(v)

def call(signature, questions, **options):
    try:
        out = signatures[signature](questions=tf.constant(questions, tf.string),
                                    **{k: tf.constant(v, tf.int32) for k, v in options.items()})
    except tf.errors.InvalidArgumentError as e:
        return {"error": e.message}
    return {k: nested(v.numpy().tolist()) for k, v in out.items()}

report["answers"] = call("serving_default", questions)
report["all_blocks"] = call("answer_with_options", questions[:2], k=new_blocks, max_answer_length=10)
many = [questions[i % len(questions)] for i in range(1000)]
report["requests"] = {
    "empty question": call("serving_default", [""]),
    "100 KB question": call("serving_default", ["why " * 25_000]),
    "not UTF-8": call("serving_default", [b"fine", b"caf\\xe9 au lait"]),
    "empty batch": call("serving_default", []),
    "empty batch, k 3": call("answer_with_options", [], k=3, max_answer_length=2),
    "1,000 questions": call("answer_with_options", many, k=1, max_answer_length=3),
    "one at a time": [call("answer_with_options", [q], k=1, max_answer_length=3) for q in questions],
    "k 0": call("answer_with_options", ["who?"], k=0, max_answer_length=3),
    "k past the blocks": call("answer_with_options", ["who?"], k=new_blocks + 1, max_answer_length=3),
    "max_answer_length 0": call("answer_with_options", ["who?"], k=2, max_answer_length=0),
    "max_answer_length 11": call("answer_with_options", ["who?"], k=2, max_answer_length=11),
}
warmup_path = os.path.join(exact, "assets.extra", "tf_serving_warmup_requests")
if os.path.exists(warmup_path):  # Written when tensorflow-serving-api is installed (the test extra).
    from tensorflow_serving.apis import prediction_log_pb2
    report["warmup"] = []
    for record in tf.data.TFRecordDataset(warmup_path):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        out = signatures[request.model_spec.signature_name](
            **{name: tf.constant(tf.make_ndarray(tensor)) for name, tensor in request.inputs.items()})
        report["warmup"].append({"signature": request.model_spec.signature_name,
                                 "answers": nested(out["answer"].numpy().tolist())})
try:
    tf.saved_model.load(scann_export)
    report["scann_load_error"] = None
except Exception as e:  # The error's type is TensorFlow's to choose; its message names the op.
    report["scann_load_error"] = str(e)
print(json.dumps(report))
"""


def _fresh_process(code, *args, timeout=300):
    """Runs `code` in a new Python (cwd the repo) and returns the JSON its last stdout line holds."""
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _evidence(prediction):
    return [e.block_id for e in prediction.evidence], [e.retrieval_probability for e in prediction.evidence]


def _assert_same_as_predictor(outputs, predictions):
    """Outputs of an export (JSON lists) agree with `QaPredictor` predictions, row by row."""
    for row, prediction in enumerate(predictions):
        block_ids, probabilities = _evidence(prediction)
        assert outputs["answer"][row] == prediction.answer, (row, prediction.question)
        assert outputs["answer_block_id"][row] == prediction.answer_block_id
        assert outputs["block_ids"][row] == block_ids
        assert outputs["score"][row] == pytest.approx(prediction.score, abs=1e-3)
        assert outputs["probabilities"][row] == pytest.approx(probabilities, abs=1e-5)
        assert outputs["titles"][row] == [e.title for e in prediction.evidence]
        assert outputs["texts"][row] == [e.text for e in prediction.evidence]
        begin, end = outputs["answer_begin"][row], outputs["answer_end"][row]
        if prediction.answer_block_id == -1:
            assert (begin, end) == (-1, -1)
        else:  # The offsets are code points of the answer's block, so Python's str slicing applies.
            text = outputs["texts"][row][block_ids.index(prediction.answer_block_id)]
            assert 0 <= begin < end <= len(text) and text[begin:end] == prediction.answer


@pytest.fixture(scope="module")
def serving_root(tmp_path_factory):
    """The --output_root of both exports: TF Serving's layout."""
    return tmp_path_factory.mktemp("saved_models")


@pytest.fixture(scope="module")
def scann_export(finetuned, serving_root):
    output = export_cli.run([f"--model_dir={finetuned}", f"--output_root={serving_root}", "--retrieval=scann"])
    assert output == str(serving_root / "realm_qa_scann" / "1")
    return output


@pytest.fixture(scope="module")
def grown(finetuned, tmp_path_factory):
    """The small corpus plus EXTRA_DOCS, chunked and embedded with the fine-tuned run's document tower:
    {"blocks_dir", "index", "num_blocks"}."""
    from beam_pipelines import chunk_corpus, embed_and_index
    from realm_tf.corpus.block_store import BlockStore

    root = tmp_path_factory.mktemp("grown")
    docs = root / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:SMALL_CORPUS_DOCS])
                    + "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in EXTRA_DOCS), encoding="utf-8")
    chunk_corpus.run([f"--input={docs}", f"--output_dir={root / 'blocks'}", "--config=tiny"])
    index_version = json.loads(pathlib.Path(finetuned, "open_qa.json").read_text())["index_version"]
    with open(os.path.join(index_version, "manifest.json"), encoding="utf-8") as f:
        embedder = json.load(f)["metadata"]["embedder_export"]
    embed_and_index.run([f"--blocks_dir={root / 'blocks'}", f"--embedder_export={embedder}",
                         f"--index_root={root / 'index'}", "--config=tiny", "--runner=DirectRunner"])
    return {"blocks_dir": str(root / "blocks"), "index": str(root / "index"),
            "num_blocks": len(BlockStore(str(root / "blocks")))}


@pytest.fixture(scope="module")
def exact_export(finetuned, grown, serving_root):
    # --max_k past the blocks: k's bound is then the number of blocks.
    output = export_cli.run([f"--model_dir={finetuned}", f"--output_root={serving_root}", "--retrieval=exact",
                             f"--blocks_dir={grown['blocks_dir']}", f"--index={grown['index']}", "--max_k=1000000"])
    assert output == str(serving_root / "realm_qa" / "1")
    return output


@pytest.fixture(scope="module")
def stock_report(exact_export, scann_export, grown):
    return _fresh_process(STOCK_CLIENT, exact_export, scann_export, json.dumps(QUESTIONS), grown["num_blocks"])


def test_scann_export_answers_as_the_predictor_in_a_fresh_process(finetuned, scann_export):
    from realm_tf.inference.open_qa_evaluation import load_predictor

    predictor, checkpoint = load_predictor(finetuned)
    predictions = predictor.predict(QUESTIONS)
    outputs = _fresh_process(SCANN_CLIENT, scann_export, json.dumps(QUESTIONS))
    assert set(outputs) == set(OUTPUTS)
    _assert_same_as_predictor(outputs, predictions)
    assert any(outputs["answer"]), "the reader picks some valid span"
    metadata = json.loads(pathlib.Path(scann_export, METADATA_PATH).read_text())
    assert metadata["retrieval"] == "scann" and metadata["scann_build"]["method"] == "brute_force"
    assert metadata["top_k"] == 5 and metadata["num_blocks"] == len(predictor.retrieval.block_ids)
    assert metadata["checkpoint"] == os.path.abspath(checkpoint)
    assert metadata["index_version"] == os.path.abspath(predictor.retrieval.path)
    assert metadata["config"]["features"]["reader_length"] == 160


def test_exact_export_holds_only_ops_of_tensorflow_and_tf_text(stock_report):
    assert stock_report["imported"] == []
    assert "MatMul" in stock_report["ops"] and "TopKV2" in stock_report["ops"]
    assert not [op for op in stock_report["ops"] if "Scann" in op]
    assert stock_report["unregistered"] == []
    # The ScaNN export is the one that needs the ScaNN ops.
    assert "Op type not registered 'Scann" in stock_report["scann_load_error"]


def test_exact_export_of_a_grown_corpus_retrieves_its_new_blocks(finetuned, grown, stock_report):
    from realm_tf.inference.open_qa_evaluation import load_predictor

    predictor, _ = load_predictor(finetuned, blocks_dir=grown["blocks_dir"], index=grown["index"], method="exact")
    _assert_same_as_predictor(stock_report["answers"], predictor.predict(QUESTIONS))
    # Every block, the new ones too, scored as the exact search over the new index scores it.
    predictor.top_k = grown["num_blocks"]
    all_blocks = stock_report["all_blocks"]
    for row, prediction in enumerate(predictor.predict(QUESTIONS[:2])):
        block_ids, probabilities = _evidence(prediction)
        assert dict(zip(all_blocks["block_ids"][row], all_blocks["probabilities"][row])) == pytest.approx(
            dict(zip(block_ids, probabilities)), abs=1e-5)
        assert all_blocks["answer"][row] == prediction.answer
        titles = dict(zip(all_blocks["titles"][row], all_blocks["texts"][row]))
        assert all(titles[doc["title"]] in doc["text"] for doc in EXTRA_DOCS)


def test_exact_export_answers_bad_requests_or_refuses_them_clearly(stock_report, grown):
    requests = stock_report["requests"]
    shapes = lambda out: {name: [len(out[name])] + ([len(out[name][0])] if out[name] and isinstance(  # noqa: E731
        out[name][0], list) else []) for name in OUTPUTS}
    assert shapes(requests["empty question"]) == shapes(requests["100 KB question"]) == {
        name: [1] + [5] * (len(shape) - 1) for name, (_, shape) in OUTPUTS.items()}
    assert requests["empty question"]["answer"] == [stock_report["answers"]["answer"][QUESTIONS.index("")]]
    assert "questions must be UTF-8 text; not valid UTF-8 at index:] [1]" in requests["not UTF-8"]["error"]
    assert all(len(requests["empty batch"][name]) == 0 for name in OUTPUTS)
    assert len(requests["empty batch, k 3"]["block_ids"]) == 0
    # Read in chunks of reader_batch_size questions: each row is its question's own answer.
    many = requests["1,000 questions"]
    assert len(many["answer"]) == 1000 and all(len(row) == 1 for row in many["block_ids"])
    for i in range(1000):
        single = requests["one at a time"][i % len(QUESTIONS)]
        assert many["answer"][i] == single["answer"][0] and many["block_ids"][i] == single["block_ids"][0]
    assert "k must be at least 1" in requests["k 0"]["error"]
    assert f"k must be at most max_k, {grown['num_blocks']} (the number of blocks)" in requests["k past the blocks"][
        "error"]
    assert "max_answer_length must be at least 1" in requests["max_answer_length 0"]["error"]
    assert "max_answer_length must be at most reader.max_span_length, 10" in requests["max_answer_length 11"]["error"]


def test_saved_model_cli_runs_the_exact_export(exact_export):
    # saved_model_cli itself does not register the TF Text ops; this module is it with them.
    done = subprocess.run([sys.executable, "-m", "realm_tf.export.saved_model_cli", "run", f"--dir={exact_export}",
                           "--tag_set=serve", "--signature_def=serving_default",
                           "--input_exprs=questions=['Which team won Super Bowl 50?']"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in OUTPUTS:
        assert f"Result for output key {name}:" in done.stdout


def test_serving_layout_has_models_config_batching_and_warmup_requests(serving_root, exact_export, scann_export,
                                                                       stock_report):
    model_server_config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((serving_root / "models.config").read_text(), config)
    # Only the exact export: stock TF Serving cannot load the ScaNN one.
    assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] == [
        ("realm_qa", os.path.dirname(os.path.abspath(exact_export)), "tensorflow")]
    batching = (serving_root / "batching_parameters.txt").read_text()
    assert "max_batch_size { value: 16 }" in batching and "batch_timeout_micros { value: 5000 }" in batching
    # The warmup requests are valid requests of their signatures.
    assert [w["signature"] for w in stock_report["warmup"]] == ["serving_default", "answer_with_options"]
    assert all(len(w["answers"]) == 1 for w in stock_report["warmup"])
    assert json.loads(pathlib.Path(scann_export, METADATA_PATH).read_text())["warmup_requests"] == 2


def test_export_command_versions_and_refuses_bad_arguments(finetuned, tmp_path, capsys):
    base = tmp_path / "realm_qa"
    assert next_version_dir(str(base)) == str(base / "1")
    for name in ("1", "7", "10", ".tmp-11-abc", "notes"):
        (base / name).mkdir(parents=True)
    assert next_version_dir(str(base)) == str(base / "11")
    assert export_cli.main([f"--model_dir={finetuned}", f"--output={base / '12'}", "--top_k=0"]) == 2
    assert "top_k must be in [1," in capsys.readouterr().err
    assert export_cli.main([f"--model_dir={finetuned}", f"--output={base / '12'}", "--top_k=5", "--max_k=4"]) == 2
    assert "max_k must be at least top_k, 5; got 4" in capsys.readouterr().err
    assert export_cli.main([f"--model_dir={finetuned}", f"--output={base / '7'}"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert export_cli.main([f"--model_dir={tmp_path / 'missing'}", f"--output={base / '12'}"]) == 2
    assert "open_qa.json: missing" in capsys.readouterr().err
    assert not (base / "12").exists()


def test_evaluate_scores_an_export_through_its_signature_as_the_model_dir(finetuned, scann_export, tmp_path,
                                                                           capsys):
    from realm_tf import evaluate

    qa = pathlib.Path(finetuned).parent / "qa.jsonl"  # The fixture's 8 qa_train questions, with gold passages.
    served = evaluate.run([f"--saved_model={scann_export}", f"--qa={qa}", f"--output={tmp_path / 'served.jsonl'}",
                           "--batch_size=3", "--no_progress"])
    direct = evaluate.run([f"--model_dir={finetuned}", f"--qa={qa}", f"--output={tmp_path / 'direct.jsonl'}",
                           "--no_progress"])
    # The ScaNN export answers as the model_dir's predictor does, so every figure agrees.
    for name in ("exact_match", "f1", "recall@1", "recall@5", "num_questions", "top_k", "checkpoint"):
        assert served[name] == direct[name], name
    assert served["num_questions"] == 8
    assert served["retrieval"] == f"{scann_export} (scann retrieval in the SavedModel)"
    rows = lambda name: [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]  # noqa: E731
    for a, b in zip(rows("served.jsonl"), rows("direct.jsonl")):
        assert a["prediction"] == b["prediction"] and a["exact_match"] == b["exact_match"]
        # Recall@k reads each block's passage, which the export does not return: the blocks name it.
        assert [e["doc_id"] for e in a["evidence"]] == [e["doc_id"] for e in b["evidence"]]
        assert all(e["doc_id"] for e in a["evidence"])
    # k and the answer length go to answer_with_options.
    fewer = evaluate.run([f"--saved_model={scann_export}", f"--qa={qa}", "--top_k=2", "--max_answer_length=3",
                          f"--output={tmp_path / 'fewer.jsonl'}", "--no_progress"])
    assert fewer["top_k"] == 2 and "recall@5" not in fewer
    assert all(len(r["evidence"]) == 2 and len(r["prediction"].split()) <= 3 for r in rows("fewer.jsonl"))
    # What only a model_dir has is refused; so is a directory that is no QA export.
    assert evaluate.main([f"--saved_model={scann_export}", f"--qa={qa}", "--retrieval=bm25"]) == 2
    assert "--retrieval: not with --saved_model" in capsys.readouterr().err
    assert evaluate.main([f"--saved_model={tmp_path}", f"--qa={qa}"]) == 2
    assert f"{tmp_path / METADATA_PATH}: missing; is" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hybrid_report(finetuned, scann_export, tmp_path_factory):
    """The hybrid export of `finetuned` (exact dense and lexical retrieval; the index version has no
    lexical index, so one is built from the blocks), asked in a TensorFlow + TF Text process."""
    root = tmp_path_factory.mktemp("hybrid_models")
    output = export_cli.run([f"--model_dir={finetuned}", f"--output_root={root}", "--retrieval=hybrid"])
    assert output == str(root / "realm_qa_hybrid" / "1")
    # Stock TF Serving loads it: models.config names it.
    assert "realm_qa_hybrid" in (root / "models.config").read_text()
    return output, _fresh_process(STOCK_CLIENT, output, scann_export, json.dumps(QUESTIONS), DEFAULT_MAX_K)


def test_hybrid_export_answers_as_the_hybrid_predictor_with_stock_ops_only(finetuned, hybrid_report):
    from realm_tf.inference.open_qa_evaluation import load_predictor

    export, report = hybrid_report
    assert report["imported"] == [] and report["unregistered"] == []
    assert "UnsortedSegmentSum" in report["ops"] and not [op for op in report["ops"] if "Scann" in op]
    predictor, _ = load_predictor(finetuned, retrieval="hybrid", method="exact")
    outputs = report["answers"]
    assert set(outputs) == set(OUTPUTS)
    _assert_same_as_predictor(outputs, predictor.predict(QUESTIONS))
    # Each evidence block says which retriever found it, with both retrievers' scores.
    embeddings = predictor._embed(predictor.featurizer.query_features(tf.constant(QUESTIONS))).numpy()
    ranking = predictor.retrieval.rank(embeddings, QUESTIONS, predictor.top_k)
    for row in range(len(QUESTIONS)):
        assert outputs["block_ids"][row] == ranking.ids[row].tolist()
        assert outputs["dense_scores"][row] == pytest.approx(ranking.dense_scores[row].tolist(), abs=1e-4)
        assert outputs["lexical_scores"][row] == pytest.approx(ranking.lexical_scores[row].tolist(), abs=1e-4)
        expected = ["both" if d and x else "dense" if d else "lexical"
                    for d, x in zip(ranking.found_by_dense[row], ranking.found_by_lexical[row])]
        assert outputs["retrieved_by"][row] == expected
    assert {"lexical", "both"} & {by for row in outputs["retrieved_by"] for by in row}
    assert json.loads(pathlib.Path(export, METADATA_PATH).read_text())["retrieval"] == "hybrid"


def test_hybrid_export_refuses_bad_requests_clearly(hybrid_report):
    _, report = hybrid_report
    requests = report["requests"]
    assert len(requests["empty question"]["answer"]) == 1 and len(requests["100 KB question"]["block_ids"][0]) == 5
    assert "questions must be UTF-8 text; not valid UTF-8 at index:] [1]" in requests["not UTF-8"]["error"]
    assert all(len(requests["empty batch"][name]) == 0 for name in OUTPUTS)
    assert f"k must be at most max_k, {DEFAULT_MAX_K} (as exported, --max_k)" in requests["k past the blocks"]["error"]
    many = requests["1,000 questions"]
    assert len(many["answer"]) == 1000 and all(len(row) == 1 for row in many["block_ids"])


def test_scann_hybrid_export_answers_as_the_hybrid_predictor_over_scann(finetuned, tmp_path):
    from realm_tf.inference.open_qa_evaluation import load_predictor

    export = export_cli.run([f"--model_dir={finetuned}", f"--output={tmp_path / 'scann_hybrid'}",
                             "--retrieval=scann_hybrid"])
    outputs = _fresh_process(SCANN_CLIENT, export, json.dumps(QUESTIONS))
    predictor, _ = load_predictor(finetuned, retrieval="hybrid")  # ScaNN search, as the export's.
    _assert_same_as_predictor(outputs, predictor.predict(QUESTIONS))
    assert {by for row in outputs["retrieved_by"] for by in row} <= {"dense", "lexical", "both"}
    metadata = json.loads(pathlib.Path(export, METADATA_PATH).read_text())
    assert metadata["retrieval"] == "scann_hybrid" and metadata["scann_build"]["method"] == "brute_force"


def test_an_index_version_with_sentence_vectors_is_refused_by_name(finetuned, small_index_root, tmp_path, capsys):
    """The export carries block vectors only; serving them for a version ranked by sentences too would
    answer from another ranking than the evaluated one."""
    from realm_tf.artifacts.index_version import IndexVersion, latest_version
    from realm_tf.configs import load_config
    from realm_tf.retrieval.index_build import publish_index_version
    from realm_tf.retrieval.sentence_vectors import SentenceVectors

    plain = IndexVersion.load(latest_version(str(small_index_root)))
    n = plain.num_blocks
    # One made-up sentence a block: the refusal depends on their presence, not their values.
    sentences = SentenceVectors(np.asarray(plain.embeddings), np.arange(n + 1), 0.5, 10)
    version = publish_index_version(str(tmp_path / "index"), plain.embeddings, plain.block_ids,
                                    load_config("tiny").index, dict(plain.metadata), sentence_vectors=sentences)
    assert export_cli.main([f"--model_dir={finetuned}", f"--output={tmp_path / 'out'}", f"--index={version}"]) == 2
    assert f"{version}: has sentence vectors, which the QA export does not carry yet" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

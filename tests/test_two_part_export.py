"""The two-part deployment (`python -m realm_tf.export --parts two`): a retriever, a reader and the
block lookup between them (`realm_tf.serving.two_part.TwoPartPredictor`)."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.artifacts.qa_export import METADATA_PATH, QaExportError
from realm_tf.artifacts.serving_root import MODELS_CONFIG
from realm_tf.export import __main__ as export_cli
from realm_tf.export.qa_export import OUTPUTS, READER_OUTPUTS, RETRIEVER_OUTPUTS

from test_qa_export import QUESTIONS, _assert_same_as_predictor, _fresh_process

# Answers QUESTIONS with both parts and the block lookup in a fresh process; prints OUTPUTS as JSON.
TWO_PART_CLIENT = """
import json, sys
from realm_tf.serving.two_part import TwoPartPredictor
predictor = TwoPartPredictor(sys.argv[1], sys.argv[2])
out = predictor.outputs(json.loads(sys.argv[3]))
decode = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
nested = lambda v: [nested(x) for x in v] if isinstance(v, list) else decode(v)
print(json.dumps({k: nested(v.tolist()) for k, v in out.items()}))
"""


@pytest.fixture(scope="module")
def serving_root(tmp_path_factory):
    return tmp_path_factory.mktemp("two_part_models")


@pytest.fixture(scope="module")
def parts(finetuned, serving_root):
    """(retriever, reader): the exact two-part deployment of `finetuned` in TF Serving's layout."""
    retriever, reader = export_cli.run([f"--model_dir={finetuned}", f"--output_root={serving_root}",
                                        "--retrieval=exact", "--parts=two"])
    assert (retriever, reader) == (str(serving_root / "realm_retriever" / "1"),
                                   str(serving_root / "realm_reader" / "1"))
    return retriever, reader


def test_two_parts_answer_as_the_predictor_in_a_fresh_process(finetuned, parts):
    from realm_tf.inference.open_qa_evaluation import load_predictor

    predictor, _ = load_predictor(finetuned)
    outputs = _fresh_process(TWO_PART_CLIENT, *parts, json.dumps(QUESTIONS))
    assert set(outputs) == set(OUTPUTS)
    _assert_same_as_predictor(outputs, predictor.predict(QUESTIONS))
    assert any(outputs["answer"]), "the reader picks some valid span"
    assert all(by == ["dense"] * 5 for by in outputs["retrieved_by"])


def _saved_variables(export_dir):
    """{name: (shape, dtype)} of a SavedModel's variables (its checkpoint's, bookkeeping aside)."""
    reader = tf.train.load_checkpoint(str(pathlib.Path(export_dir, "variables", "variables")))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    return {name: (list(shapes[name]), dtypes[name]) for name in shapes if not name.startswith("_CHECKPOINTABLE")}


def test_the_reader_holds_the_model_alone_and_the_retriever_no_text(finetuned, parts):
    from realm_tf.artifacts.qa_export import load_qa_export
    from realm_tf.inference.open_qa_evaluation import load_predictor

    predictor, _ = load_predictor(finetuned)
    num_blocks = len(predictor.retrieval.block_ids)
    model_size = sum(int(np.prod(v.shape)) for v in predictor.model.variables)
    (retriever_info, _), (reader_info, _) = map(load_qa_export, parts)
    assert (retriever_info.part, reader_info.part) == ("retriever", "reader")
    assert set(retriever_info.outputs) == set(RETRIEVER_OUTPUTS) and set(reader_info.outputs) == set(READER_OUTPUTS)
    assert retriever_info.checkpoint == reader_info.checkpoint
    # The reader's variables are the model's, however many blocks there are; the index's
    # rows are the retriever's, with its ids, and no string (no title, no text) is in it.
    retriever_variables, reader_variables = map(_saved_variables, parts)
    assert sum(int(np.prod(shape)) for shape, _ in reader_variables.values()) == model_size
    assert not any(dtype == tf.string for _, dtype in retriever_variables.values())
    assert [shape for shape, dtype in retriever_variables.values() if dtype == tf.float32 and shape[:1] == [num_blocks]
            ] == [[num_blocks, predictor.retrieval.version.dim]]
    config = (pathlib.Path(parts[0]).parents[1] / MODELS_CONFIG).read_text()
    assert '"realm_retriever"' in config and '"realm_reader"' in config


def test_each_part_refuses_bad_requests_clearly(parts):
    from realm_tf.artifacts.qa_export import load_qa_export

    (_, retriever), (info, reader) = map(load_qa_export, parts)
    retrieve, read = retriever.signatures["retrieve_with_options"], reader.signatures["read_with_options"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be at least 1"):
        retrieve(questions=tf.constant(["who?"]), k=tf.constant(0))
    texts = tf.constant([["Tesla was born in 1856."] * 2])
    rows = tf.zeros([1, 2, info.config["retriever"]["projection_size"]])
    length = tf.constant(3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="texts must have a row of blocks for each question"):
        read(questions=tf.constant(["who?", "when?"]), texts=texts, candidate_embeddings=rows, max_answer_length=length)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"candidate_embeddings must be \[questions, k, "):
        read(questions=tf.constant(["who?"]), texts=texts, candidate_embeddings=rows[:, :1], max_answer_length=length)
    with pytest.raises(tf.errors.InvalidArgumentError, match="texts must be UTF-8 text"):
        read(questions=tf.constant(["who?"]), texts=tf.constant([[b"caf\xe9", b"ok"]]), candidate_embeddings=rows,
             max_answer_length=length)
    answered = read(questions=tf.constant(["When was Tesla born?"]), texts=texts, candidate_embeddings=rows,
                    max_answer_length=length)
    assert answered["answer_index"].shape == [1] and answered["probabilities"].shape == [1, 2]
    # An empty batch keeps the outputs' shapes.
    empty = retriever.signatures["serving_default"](questions=tf.constant([], tf.string))
    assert empty["block_ids"].shape[0] == 0 and empty["candidate_embeddings"].shape.rank == 3


def test_the_predictor_refuses_parts_that_do_not_belong_together(finetuned, parts, tmp_path):
    from realm_tf.serving.two_part import TwoPartPredictor

    with pytest.raises(QaExportError, match="a 'reader' export, not the retriever part"):
        TwoPartPredictor(parts[1], parts[1])
    # A reader made from another checkpoint scores blocks with another query tower.
    other = tmp_path / "other_reader"
    other.mkdir()
    record = json.loads(pathlib.Path(parts[1], METADATA_PATH).read_text())
    (other / METADATA_PATH).parent.mkdir()
    (other / METADATA_PATH).write_text(json.dumps({**record, "checkpoint": "/elsewhere/ckpt-9"}))
    with pytest.raises(QaExportError, match="both parts must come from one model"):
        TwoPartPredictor(parts[0], str(other))
    predictor = TwoPartPredictor(*parts)
    with pytest.raises(QaExportError, match="block 987654321 retrieved but not in"):
        predictor.lookup(np.array([[987654321]], np.int64))


def test_export_command_refuses_a_model_name_for_two_parts(finetuned, tmp_path, capsys):
    assert export_cli.main([f"--model_dir={finetuned}", f"--output_root={tmp_path}", "--parts=two",
                            "--model_name=mine"]) == 2
    assert "a two-part deployment goes to realm_retriever_scann and realm_reader" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())

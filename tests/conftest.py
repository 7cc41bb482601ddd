"""Shared fixtures. TF_USE_LEGACY_KERAS is set before anything imports TensorFlow."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import logging  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

from realm_tf.configs import load_config  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / "realm_tf" / "assets" / "squad_open" / "corpus.jsonl"
QA_TRAIN = REPO / "realm_tf" / "assets" / "squad_open" / "qa_train.jsonl"
VOCAB = REPO / "realm_tf" / "assets" / "bert_vocab" / "vocab.txt"


@pytest.fixture(autouse=True)
def _no_leaked_log_handlers():
    """A command line's `main`, called in a test, sets up logging on the root logger
    (`logging.basicConfig`, force=True in some) with a handler on that test's captured
    stderr, which is closed once the test ends: later tests would log into it ("I/O
    operation on closed file"). Such handlers are removed, and the level restored."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def tiny_config():
    return load_config("tiny")


@pytest.fixture(scope="session")
def vocab_tokens():
    """The real BERT uncased vocabulary, id -> token, for hand-checking ids."""
    return VOCAB.read_text(encoding="utf-8").splitlines()


SMALL_CORPUS_DOCS = 80  # The first articles of the embedded corpus: ~150 tiny-config blocks.
ICT_OVERRIDES = ["ict.training.batch_size=16", "ict.training.train_steps=120", "ict.training.warmup_steps=10",
                 "ict.training.checkpoint_every_steps=60", "ict.heldout_percent=10"]


def chunk_small_corpus(root: pathlib.Path, *flags: str) -> str:
    """The first documents of the embedded corpus, chunked with the tiny config (and
    `flags`) into `root`/blocks by the pipeline's command line; returns that directory."""
    from beam_pipelines import chunk_corpus

    docs = root / "docs.jsonl"
    docs.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:SMALL_CORPUS_DOCS]),
                    encoding="utf-8")
    chunk_corpus.run([f"--input={docs}", f"--output_dir={root / 'blocks'}", "--config=tiny", *flags])
    return str(root / "blocks")


@pytest.fixture(scope="session")
def small_blocks_dir(tmp_path_factory):
    """The first documents of the embedded corpus, chunked with the tiny config."""
    return chunk_small_corpus(tmp_path_factory.mktemp("small_corpus"))


@pytest.fixture(scope="session")
def ict_run(small_blocks_dir, tmp_path_factory):
    """An ICT run on the small corpus through the real CLI: {"step", "train", "eval", "export", "model_dir"}."""
    from realm_tf import train

    model_dir = tmp_path_factory.mktemp("ict")
    result = train.run(["--task=ict", "--config=tiny", f"--blocks_dir={small_blocks_dir}", f"--model_dir={model_dir}",
                        "--no_progress"] + [f"--override={o}" for o in ICT_OVERRIDES])
    return dict(result, model_dir=str(model_dir))


@pytest.fixture(scope="session")
def small_index_root(ict_run, small_blocks_dir, tmp_path_factory):
    """An index version of the small corpus, built from the ICT export (the initial index)."""
    from beam_pipelines import embed_and_index

    root = tmp_path_factory.mktemp("small_index")
    embed_and_index.run([f"--blocks_dir={small_blocks_dir}", f"--embedder_export={ict_run['export']}",
                         f"--index_root={root}", "--config=tiny", "--runner=DirectRunner"])
    return str(root)


@pytest.fixture(scope="session")
def small_examples_dir(small_blocks_dir, tmp_path_factory):
    """Masked pre-training sentences of the small corpus."""
    from beam_pipelines import make_pretraining_examples

    output = tmp_path_factory.mktemp("examples") / "examples"
    make_pretraining_examples.run([f"--blocks_dir={small_blocks_dir}", f"--output_dir={output}", "--config=tiny"])
    return str(output)


@pytest.fixture(scope="session")
def finetuned(small_blocks_dir, small_index_root, ict_run, tmp_path_factory):
    """A fine-tuned model_dir (one step from the ICT retriever), what the QA exports are made from."""
    from realm_tf import train

    root = tmp_path_factory.mktemp("qa_export")
    qa = root / "qa.jsonl"
    qa.write_text("".join(QA_TRAIN.read_text(encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
    model_dir = root / "finetune"
    train.run(["--task=finetune", "--config=tiny", f"--blocks_dir={small_blocks_dir}", f"--index={small_index_root}",
               f"--qa_train={qa}", f"--model_dir={model_dir}", f"--init_from={ict_run['model_dir']}", "--no_progress",
               "--override=finetune.training.train_steps=1", "--override=finetune.training.batch_size=4"])
    return str(model_dir)


@pytest.fixture(scope="session")
def exact_qa_export(finetuned, tmp_path_factory):
    """The exact-retrieval QA export of `finetuned`, as realm_qa/1 in TF Serving's layout; what the
    serving client and the demo page are tested against."""
    from realm_tf.export import __main__ as export_cli

    output = export_cli.run([f"--model_dir={finetuned}", f"--output_root={tmp_path_factory.mktemp('saved_models')}",
                             "--retrieval=exact"])
    assert pathlib.Path(output).parent.name == "realm_qa"
    return output

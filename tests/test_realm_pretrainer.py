"""The REALM pre-training model and loss, checked against a direct numpy computation."""

import numpy as np
import pytest
import tensorflow as tf

from realm_tf.configs import load_config
from realm_tf.features import Featurizer
from realm_tf.modeling.realm_pretrainer import RealmPretrainer

KEYS = ("input_word_ids", "input_mask", "input_type_ids")
# Each query masks the wordpieces of some of its words (the second masks two tokens of one span).
QUERIES = [("nikola tesla was born in 1856 in smiljan .", ["1856"]),
           ("super bowl 50 was played in santa clara .", ["santa", "clara"])]
BLOCKS = [["", "Nikola Tesla", "Super Bowl 50"], ["", "Levi's Stadium", "Denver Broncos"]]
BODIES = [["", "Tesla was born in 1856 in Smiljan.", "The game was played in 2016."],
          ["", "The stadium is in Santa Clara.", "Denver won the game."]]
MAX_MASKS = 3


def make_batch(featurizer):
    """Two queries, three candidates each (the null document first)."""
    mask_id = featurizer.vocabulary.mask_id
    b, k = len(QUERIES), len(BLOCKS[0])
    ids = featurizer.tokenize([text for text, _ in QUERIES]).to_list()
    positions = np.zeros((b, MAX_MASKS), np.int32)
    targets = np.zeros((b, MAX_MASKS), np.int32)
    weights = np.zeros((b, MAX_MASKS), np.float32)
    for row, (_, words) in enumerate(QUERIES):
        masked = [ids[row].index(t) for t in featurizer.tokenize(words).flat_values.numpy().tolist()]
        for j, position in enumerate(masked):
            positions[row, j] = position + 1  # After [CLS].
            targets[row, j] = ids[row][position]
            weights[row, j] = 1
            ids[row][position] = mask_id
    query_tokens = tf.ragged.constant(ids, dtype=tf.int64)
    titles = featurizer.tokenize([t for row in BLOCKS for t in row])
    bodies = featurizer.tokenize([t for row in BODIES for t in row])
    reader = featurizer.pack_reader(tf.gather(query_tokens, np.repeat(np.arange(b), k)), bodies)
    candidates = featurizer.pack_block(titles, bodies)
    return {
        "query": featurizer.pack_query(query_tokens),
        "candidates": {key: tf.reshape(candidates[key], [b, k, -1]) for key in KEYS},
        "reader": {key: tf.reshape(reader[key], [b, k, -1]) for key in KEYS},
        "masked_positions": tf.constant(positions),
        "masked_ids": tf.constant(targets),
        "masked_weights": tf.constant(weights),
        "index_step": tf.constant([40, 40], tf.int64),
    }


@pytest.fixture(scope="module")
def setup():
    config = load_config("tiny", ["retriever.share_towers=false"])
    featurizer = Featurizer(config.features)
    model = RealmPretrainer(config)
    batch = make_batch(featurizer)
    model(batch)
    return model, batch


def _log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def test_loss_equals_a_direct_numpy_computation_of_the_per_token_marginal(setup):
    from realm_tf.modeling.marginal import pretraining_loss

    model, batch = setup
    b, k = batch["candidates"]["input_word_ids"].shape[:2]
    flat = {key: tf.reshape(batch["candidates"][key], [b * k, -1]) for key in KEYS}
    flat_reader = {key: tf.reshape(batch["reader"][key], [b * k, -1]) for key in KEYS}
    # The model's parts, each called on its own, then the marginal by hand in numpy.
    q = model.retriever.embed_queries(batch["query"]).numpy()
    z = model.retriever.embed_blocks(flat).numpy().reshape(b, k, -1)
    log_p_z = _log_softmax(np.einsum("bp,bkp->bk", q, z))
    positions = np.repeat(batch["masked_positions"].numpy(), k, axis=0)
    logits = model.reader(flat_reader, tf.constant(positions)).numpy().reshape(b, k, MAX_MASKS, -1)
    log_p_y = _log_softmax(logits.astype(np.float64))
    targets = batch["masked_ids"].numpy()
    token = np.take_along_axis(log_p_y, np.repeat(targets[:, None, :, None], k, axis=1), axis=-1)[..., 0]
    joint = log_p_z[:, :, None] + token
    marginal = np.log(np.exp(joint - joint.max(axis=1, keepdims=True)).sum(axis=1)) + joint.max(axis=1)
    w = batch["masked_weights"].numpy()
    assert w.sum() == 3
    # The masks sit where the reader packing has [MASK] (the query comes first in it).
    reader_ids = batch["reader"]["input_word_ids"].numpy()
    for row in range(b):
        for j in range(int(w[row].sum())):
            assert (reader_ids[row, :, positions[row * k, j]] == 103).all()
    expected_loss = -(w * marginal).sum() / w.sum()
    expected_utility = (w * (marginal - token[:, 0, :])).sum() / w.sum()

    loss, metrics = pretraining_loss(model(batch), batch)
    assert loss.numpy() == pytest.approx(expected_loss, rel=1e-4)
    assert metrics["retrieval_utility"].numpy() == pytest.approx(expected_utility, abs=1e-4)
    assert metrics["index_step"].numpy() == 40
    # Padding targets (weight 0) do not count: changing their ids leaves the loss alone.
    padded = dict(batch, masked_ids=tf.constant(np.where(w > 0, targets, 7), np.int32))
    assert pretraining_loss(model(padded), padded)[0].numpy() == pytest.approx(loss.numpy(), rel=1e-6)


def test_gradients_reach_both_towers_through_the_relevance_scores(setup):
    from realm_tf.modeling.marginal import pretraining_loss

    model, batch = setup
    with tf.GradientTape(persistent=True) as tape:
        loss, _ = pretraining_loss(model(batch, training=False), batch)
    for tower in (model.retriever.query_embedder, model.retriever.block_embedder, model.reader):
        gradients = tape.gradient(loss, tower.trainable_variables)
        norms = [float(tf.norm(g)) for g in gradients if g is not None]
        assert norms and max(norms) > 0, tower.name


def test_the_loss_compiles_with_xla_and_agrees(setup):
    from realm_tf.modeling.marginal import pretraining_loss

    model, batch = setup
    eager = pretraining_loss(model(batch), batch)[0]
    compiled = tf.function(lambda b: pretraining_loss(model(b), b)[0], jit_compile=True)
    assert compiled(batch).numpy() == pytest.approx(eager.numpy(), rel=1e-4)
    # The whole loss lowers to one XLA module (it would raise on an op XLA cannot compile).
    assert compiled.experimental_get_compiler_ir(batch)(stage="hlo").startswith("HloModule")


MIRRORED = """
import sys
sys.path.insert(0, "tests")
from realm_tf.training.strategies import build_strategy
strategy = build_strategy("mirrored", cpu_devices=2)
import numpy as np, tensorflow as tf, tf_keras
from realm_tf.configs import load_config
from realm_tf.features import Featurizer
from realm_tf.modeling.marginal import pretraining_loss
from realm_tf.modeling.realm_pretrainer import RealmPretrainer
from test_realm_pretrainer import make_batch
config = load_config("tiny")
batch = make_batch(Featurizer(config.features))  # 2 queries: 1 and 2 masked tokens, unequal on purpose
tf_keras.utils.set_random_seed(0)
with strategy.scope():
    model = RealmPretrainer(config)
    model(batch)
single = float(pretraining_loss(model(batch), batch)[0])
dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).unbatch().batch(2))
per_replica = strategy.run(lambda b: pretraining_loss(model(b), b)[0], args=(next(iter(dataset)),))
mirrored = float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))
print(strategy.num_replicas_in_sync, single, mirrored)
"""


def test_a_mirrored_strategy_of_two_cpus_gives_the_default_strategys_loss():
    import subprocess
    import sys

    from conftest import REPO

    run = subprocess.run([sys.executable, "-c", MIRRORED], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    replicas, single, mirrored = run.stdout.split()[-3:]
    assert int(replicas) == 2
    assert float(mirrored) == pytest.approx(float(single), rel=1e-5)

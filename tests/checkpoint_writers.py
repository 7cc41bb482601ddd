"""Writers of pretrained checkpoints in the formats of the real releases, at tiny sizes.

The weights cannot be downloaded here, so the checkpoint tests write their own, with the
exact variable names, layouts and files of each release:

  Hugging Face   `BertForPreTraining` / `BertModel` `save_pretrained` (config.json +
                 model.safetensors), the older `pytorch_model.bin`, and the oldest
                 `pytorch_model.bin` with TF's `gamma`/`beta` LayerNorm names.
  Model Garden   tfm's functional `BertEncoder` saved as `tf.train.Checkpoint(encoder=...)`
                 to `bert_model.ckpt` + `bert_config.json` (the tf_model_garden BERT releases).
  REALM / ORQA   TF1 name-based checkpoints (`tf.raw_ops.SaveV2`, the op TF1's Saver runs):
                 the `cc_news_pretrained/{bert,embedder}` TF-Hub module directories and the
                 fine-tuned `orqa_nq_model_from_realm`, with Adam slots and `global_step`.

Values are random with non-trivial LayerNorm gammas/betas and biases, so a tensor put in
the wrong place, transposed or left out changes the outputs.
"""

import dataclasses
import json
import os
import pathlib
from typing import Dict, Optional

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

BUNDLED_VOCAB = pathlib.Path(realm_tf.__file__).resolve().parent / "assets" / "bert_vocab" / "vocab.txt"

# The REALM embedder's projection width (`module/module/dense` is [768, 128] in the release).
PROJECTION_SIZE = 128


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A BERT's sizes, in the names of this project's `BertConfig`."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 64
    type_vocab_size: int = 2


# --- random values ----------------------------------------------------------------------


def _f32(value) -> np.ndarray:
    return np.asarray(value, np.float32)


def kernel(rng, fan_in: int, fan_out: int) -> np.ndarray:
    return _f32(rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out)))


def bias(rng, size: int) -> np.ndarray:
    return _f32(rng.normal(0.0, 0.1, size))


def gamma(rng, size: int) -> np.ndarray:
    return _f32(1.0 + rng.normal(0.0, 0.2, size))


def embeddings(rng, rows: int, width: int) -> np.ndarray:
    return _f32(rng.normal(0.0, 0.5, (rows, width)))


# --- TF1 name-based checkpoints (BERT, REALM, ORQA) --------------------------------------


def bert_tf1_tensors(rng, sizes: Sizes, scope: str = "", masked_lm: bool = False) -> Dict[str, np.ndarray]:
    """Original BERT's variables, `<scope>bert/...` (and `<scope>cls/predictions/...`)."""
    h, i = sizes.hidden_size, sizes.intermediate_size
    b = scope + "bert/"
    t = {
        b + "embeddings/word_embeddings": embeddings(rng, sizes.vocab_size, h),
        b + "embeddings/token_type_embeddings": embeddings(rng, sizes.type_vocab_size, h),
        b + "embeddings/position_embeddings": embeddings(rng, sizes.max_position_embeddings, h),
        b + "embeddings/LayerNorm/gamma": gamma(rng, h),
        b + "embeddings/LayerNorm/beta": bias(rng, h),
    }
    for n in range(sizes.num_layers):
        layer = f"{b}encoder/layer_{n}/"
        for part in ("query", "key", "value"):
            t[f"{layer}attention/self/{part}/kernel"] = kernel(rng, h, h)
            t[f"{layer}attention/self/{part}/bias"] = bias(rng, h)
        t[layer + "attention/output/dense/kernel"] = kernel(rng, h, h)
        t[layer + "attention/output/dense/bias"] = bias(rng, h)
        t[layer + "attention/output/LayerNorm/gamma"] = gamma(rng, h)
        t[layer + "attention/output/LayerNorm/beta"] = bias(rng, h)
        t[layer + "intermediate/dense/kernel"] = kernel(rng, h, i)
        t[layer + "intermediate/dense/bias"] = bias(rng, i)
        t[layer + "output/dense/kernel"] = kernel(rng, i, h)
        t[layer + "output/dense/bias"] = bias(rng, h)
        t[layer + "output/LayerNorm/gamma"] = gamma(rng, h)
        t[layer + "output/LayerNorm/beta"] = bias(rng, h)
    t[b + "pooler/dense/kernel"] = kernel(rng, h, h)
    t[b + "pooler/dense/bias"] = bias(rng, h)
    if masked_lm:
        c = scope + "cls/predictions/"
        t[c + "transform/dense/kernel"] = kernel(rng, h, h)
        t[c + "transform/dense/bias"] = bias(rng, h)
        t[c + "transform/LayerNorm/gamma"] = gamma(rng, h)
        t[c + "transform/LayerNorm/beta"] = bias(rng, h)
        t[c + "output_bias"] = bias(rng, sizes.vocab_size)
    return t


def projection_tf1_tensors(rng, hidden: int, scope: str, norm_name: str = "LayerNorm") -> Dict[str, np.ndarray]:
    """REALM's embedding projection `<scope>dense/{kernel,bias}` and `<scope><norm_name>/{gamma,beta}`."""
    return {
        scope + "dense/kernel": kernel(rng, hidden, PROJECTION_SIZE),
        scope + "dense/bias": bias(rng, PROJECTION_SIZE),
        f"{scope}{norm_name}/gamma": gamma(rng, PROJECTION_SIZE),
        f"{scope}{norm_name}/beta": bias(rng, PROJECTION_SIZE),
    }


def write_tf1_checkpoint(prefix: str, tensors: Dict[str, np.ndarray], rng=None, optimizer_state: bool = True,
                         global_step: int = 100_000) -> str:
    """Writes `tensors` under exactly their names as TF1's Saver does (a V2 `prefix.index` +
    `prefix.data-00000-of-00001`), with each trainable tensor's `adam_m`/`adam_v` slots and
    `global_step` when `optimizer_state`. Returns `prefix`."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    everything = dict(tensors)
    if optimizer_state:
        rng = rng if rng is not None else np.random.default_rng(0)
        for name, value in tensors.items():
            if name != "block_emb":  # Not trained: no slots.
                everything[name + "/adam_m"] = _f32(rng.normal(0.0, 1e-3, value.shape))
                everything[name + "/adam_v"] = _f32(np.abs(rng.normal(0.0, 1e-6, value.shape)))
        everything["global_step"] = np.asarray(global_step, np.int64)
    names = sorted(everything)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(everything[name]) for name in names])
    return prefix


def write_hub_module(directory: str, tensors: Dict[str, np.ndarray], vocab_text: Optional[str], rng=None,
                     optimizer_state: bool = False) -> str:
    """A TF-Hub module directory as the REALM releases ship: `variables/variables.*` and
    `assets/vocab.txt`. Returns `directory`."""
    write_tf1_checkpoint(os.path.join(directory, "variables", "variables"), tensors, rng, optimizer_state)
    if vocab_text is not None:
        os.makedirs(os.path.join(directory, "assets"), exist_ok=True)
        pathlib.Path(directory, "assets", "vocab.txt").write_text(vocab_text, encoding="utf-8")
    return directory


def truncated_bert_vocab(size: int) -> str:
    """The first `size` lines of the bundled BERT uncased vocabulary ([PAD], [unused*], [UNK],
    [CLS], [SEP], [MASK], ...): a real vocabulary file for a tiny embedding table."""
    return "\n".join(BUNDLED_VOCAB.read_text(encoding="utf-8").splitlines()[:size]) + "\n"


def write_realm_bert_module(directory: str, rng, sizes: Sizes, vocab_text: Optional[str]) -> Dict[str, np.ndarray]:
    """`cc_news_pretrained/bert`: the knowledge-augmented encoder, `bert/...` + `cls/predictions/...`."""
    tensors = bert_tf1_tensors(rng, sizes, masked_lm=True)
    write_hub_module(directory, tensors, vocab_text, rng, optimizer_state=True)
    return tensors


def write_realm_embedder_module(directory: str, rng, sizes: Sizes, vocab_text: Optional[str], num_blocks: int = 0,
                                norm_name: str = "LayerNorm") -> Dict[str, np.ndarray]:
    """`cc_news_pretrained/embedder`: body `module/module/module/bert/...`, projection
    `module/module/dense`, `module/module/<norm_name>` ("LayerNorm" in REALM, Keras'
    "layer_normalization" in ORQA's ICT code); with `num_blocks`, `encoded/encoded.ckpt`
    holding `block_emb` [num_blocks, 128]. Returns every tensor (block_emb included)."""
    tensors = bert_tf1_tensors(rng, sizes, scope="module/module/module/")
    tensors.update(projection_tf1_tensors(rng, sizes.hidden_size, "module/module/", norm_name))
    write_hub_module(directory, tensors, vocab_text, rng, optimizer_state=True)
    everything = dict(tensors)
    if num_blocks:
        block_emb = {"block_emb": _f32(rng.normal(0.0, 1.0, (num_blocks, PROJECTION_SIZE)))}
        write_tf1_checkpoint(os.path.join(directory, "encoded", "encoded.ckpt"), block_emb, optimizer_state=False)
        everything.update(block_emb)
    return everything


ORQA_STEP = 300


def write_orqa_finetuned(directory: str, rng, sizes: Sizes, span_hidden: int, num_blocks: int,
                         vocab_text: Optional[str] = None) -> Dict[str, np.ndarray]:
    """`orqa_nq_model_from_realm`: a training directory (`checkpoint` + `model.ckpt-<step>.*`) with
    the question embedder `module/module/module/module/bert/...`, its projection
    `module/module/module/{dense,LayerNorm}`, the reader `reader/module/{bert,cls}/...`, the span
    MLP `reader/dense` [H, 2 * span_hidden], `reader/layer_normalization` [span_hidden],
    `reader/dense_1` [span_hidden, 1], and `block_emb`; Adam slots and `global_step` too."""
    tensors = bert_tf1_tensors(rng, sizes, scope="module/module/module/module/")
    tensors.update(projection_tf1_tensors(rng, sizes.hidden_size, "module/module/module/"))
    tensors.update(bert_tf1_tensors(rng, sizes, scope="reader/module/", masked_lm=True))
    tensors.update({
        "reader/dense/kernel": kernel(rng, sizes.hidden_size, 2 * span_hidden),
        "reader/dense/bias": bias(rng, 2 * span_hidden),
        "reader/layer_normalization/gamma": gamma(rng, span_hidden),
        "reader/layer_normalization/beta": bias(rng, span_hidden),
        "reader/dense_1/kernel": kernel(rng, span_hidden, 1),
        "reader/dense_1/bias": bias(rng, 1),
        "block_emb": _f32(rng.normal(0.0, 1.0, (num_blocks, PROJECTION_SIZE))),
    })
    write_tf1_checkpoint(os.path.join(directory, f"model.ckpt-{ORQA_STEP}"), tensors, rng, global_step=ORQA_STEP)
    pathlib.Path(directory, "checkpoint").write_text(
        f'model_checkpoint_path: "model.ckpt-{ORQA_STEP}"\nall_model_checkpoint_paths: "model.ckpt-{ORQA_STEP}"\n',
        encoding="utf-8")
    if vocab_text is not None:
        pathlib.Path(directory, "vocab.txt").write_text(vocab_text, encoding="utf-8")
    return tensors


def read_tf_checkpoint(prefix: str) -> Dict[str, np.ndarray]:
    """Every tensor of a TensorFlow checkpoint, by its stored name."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def copy_tf1_checkpoint(source_prefix: str, prefix: str, drop=(),
                        replace: Optional[Dict[str, np.ndarray]] = None) -> str:
    """A copy of a TF checkpoint without the names in `drop` and with `replace`d values."""
    tensors = {name: value for name, value in read_tf_checkpoint(source_prefix).items() if name not in drop}
    tensors.update(replace or {})
    return write_tf1_checkpoint(prefix, tensors, optimizer_state=False)


# --- Hugging Face ---------------------------------------------------------------------


def hugging_face_config(sizes: Sizes, **overrides):
    import transformers

    return transformers.BertConfig(
        vocab_size=sizes.vocab_size, hidden_size=sizes.hidden_size, num_hidden_layers=sizes.num_layers,
        num_attention_heads=sizes.num_attention_heads, intermediate_size=sizes.intermediate_size,
        max_position_embeddings=sizes.max_position_embeddings, type_vocab_size=sizes.type_vocab_size,
        hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        **overrides)


def random_hugging_face_model(sizes: Sizes, seed: int, pretraining: bool = True, **overrides):
    """`BertForPreTraining` (names under `bert.`, `cls.`) or `BertModel` (no prefix), random, in eval mode."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cls = transformers.BertForPreTraining if pretraining else transformers.BertModel
    model = cls(hugging_face_config(sizes, **overrides)).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # Tied parameters come once.
            shape = tuple(parameter.shape)
            if name.endswith("LayerNorm.weight"):
                value = gamma(rng, shape[0])
            elif name.endswith("embeddings.weight"):
                value = embeddings(rng, *shape)
            elif name.endswith(".weight"):  # torch.nn.Linear: [out, in].
                value = kernel(rng, shape[1], shape[0]).T
            else:
                value = _f32(rng.normal(0.0, 0.1, shape))
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model


def write_hugging_face(directory: str, model, variant: str = "safetensors") -> str:
    """Saves `model` as a Hugging Face directory.

    variant: "safetensors" (`save_pretrained`: config.json + model.safetensors),
      "sharded" (`save_pretrained` in shards: model.safetensors.index.json + model-0000i-of-0000n.safetensors),
      "bin" (config.json + `pytorch_model.bin`, the state dict `torch.save`d as
      transformers < 4.35 wrote it, tied `cls.predictions.decoder.*` included), or
      "bin_gamma_beta" (the same with the LayerNorms' TF names `gamma`/`beta`, as in the
      first PyTorch BERT exports).
    """
    import torch

    os.makedirs(directory, exist_ok=True)
    if variant == "safetensors":
        model.save_pretrained(directory)
        return directory
    if variant == "sharded":
        model.save_pretrained(directory, max_shard_size="40KB")
        assert os.path.exists(os.path.join(directory, "model.safetensors.index.json"))
        return directory
    model.config.save_pretrained(directory)
    state = {name: value.detach().clone().contiguous() for name, value in model.state_dict().items()}
    if variant == "bin_gamma_beta":
        renamed = {}
        for name, value in state.items():
            if ".LayerNorm." in name:
                name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            renamed[name] = value
        state = renamed
    elif variant != "bin":
        raise ValueError(variant)
    torch.save(state, os.path.join(directory, "pytorch_model.bin"))
    return directory


def read_hugging_face(directory: str) -> Dict[str, np.ndarray]:
    """Every tensor of a Hugging Face directory's weights file, by its stored name."""
    from safetensors.numpy import load_file

    path = os.path.join(directory, "model.safetensors")
    if os.path.exists(path):
        return load_file(path)
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        shards = set(json.loads(pathlib.Path(index).read_text(encoding="utf-8"))["weight_map"].values())
        return {name: value for shard in sorted(shards)
                for name, value in load_file(os.path.join(directory, shard)).items()}
    import torch

    state = torch.load(os.path.join(directory, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    return {name: value.numpy() for name, value in state.items()}


def edit_hugging_face_config(source: str, directory: str, **changes) -> str:
    """A copy of a Hugging Face directory with config.json fields changed."""
    import shutil

    shutil.copytree(source, directory)
    path = os.path.join(directory, "config.json")
    config = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    config.update(changes)
    pathlib.Path(path).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


# --- Model Garden -----------------------------------------------------------------------


def random_model_garden_encoder(sizes: Sizes, seed: int):
    """tfm's functional `BertEncoder` (the one the tf_model_garden BERT releases were saved
    from), tanh-GELU as released, random."""
    import tf_keras
    from official.nlp.modeling import networks

    encoder = networks.BertEncoder(
        vocab_size=sizes.vocab_size, hidden_size=sizes.hidden_size, num_layers=sizes.num_layers,
        num_attention_heads=sizes.num_attention_heads, max_sequence_length=sizes.max_position_embeddings,
        type_vocab_size=sizes.type_vocab_size, inner_dim=sizes.intermediate_size,
        output_dropout=0.0, attention_dropout=0.0, dict_outputs=True,
        initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    rng = np.random.default_rng(seed)
    for variable in encoder.weights:
        shape, name = tuple(variable.shape), variable.name
        if "gamma" in name:
            value = gamma(rng, shape)
        elif "beta" in name or "bias" in name:
            value = _f32(rng.normal(0.0, 0.1, shape))
        elif "embeddings" in name:
            value = embeddings(rng, *shape)
        else:  # Dense [in, out] and Einsum [H, heads, size] / [heads, size, H] kernels.
            value = _f32(rng.normal(0.0, 1.0 / np.sqrt(sizes.hidden_size), shape))
        variable.assign(value)
    return encoder


def write_model_garden(directory: str, encoder, sizes: Sizes) -> str:
    """`bert_model.ckpt` (`tf.train.Checkpoint(encoder=...)`) and `bert_config.json` with the
    release's keys. Returns the checkpoint prefix."""
    os.makedirs(directory, exist_ok=True)
    prefix = tf.train.Checkpoint(encoder=encoder).write(os.path.join(directory, "bert_model.ckpt"))
    config = {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": sizes.hidden_size, "initializer_range": 0.02, "intermediate_size": sizes.intermediate_size,
        "max_position_embeddings": sizes.max_position_embeddings,
        "num_attention_heads": sizes.num_attention_heads, "num_hidden_layers": sizes.num_layers,
        "type_vocab_size": sizes.type_vocab_size, "vocab_size": sizes.vocab_size,
    }
    pathlib.Path(directory, "bert_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return prefix


# --- hand-made inputs -------------------------------------------------------------------

CLS_ID, SEP_ID, MASK_ID = 101, 102, 103  # As in the BERT uncased vocabulary.


def pack(segments, length: int) -> Dict[str, np.ndarray]:
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, padded: int32 [length] each input."""
    ids, types = [CLS_ID] + list(segments[0]) + [SEP_ID], [0] * (len(segments[0]) + 2)
    if len(segments) > 1:
        ids += list(segments[1]) + [SEP_ID]
        types += [1] * (len(segments[1]) + 1)
    assert len(ids) <= length, (len(ids), length)
    pad = length - len(ids)
    return {"input_word_ids": np.asarray(ids + [0] * pad, np.int32),
            "input_mask": np.asarray([1] * len(ids) + [0] * pad, np.int32),
            "input_type_ids": np.asarray(types + [0] * pad, np.int32)}


def stack(packings) -> Dict[str, np.ndarray]:
    return {key: np.stack([p[key] for p in packings]) for key in packings[0]}


def words(rng, vocab_size: int, count: int):
    return [int(w) for w in rng.integers(MASK_ID + 1, vocab_size, count)]


def realm_batch(rng, vocab_size: int, batch_size: int = 2, num_candidates: int = 3, num_masks: int = 2,
                query_length: int = 12, block_length: int = 16, reader_length: int = 26) -> Dict[str, np.ndarray]:
    """A `RealmPretrainer` batch made by hand: queries with `num_masks` [MASK]s, candidate 0 the
    null document (`[CLS] [SEP] [SEP]`), the others `[CLS] title [SEP] body [SEP]` of varied
    lengths, and the reader packing `[CLS] query [SEP] body [SEP]`."""
    queries, candidates, readers, positions, targets = [], [], [], [], []
    for _ in range(batch_size):
        query = words(rng, vocab_size, 8)
        where = sorted(rng.choice(len(query), num_masks, replace=False))
        targets.append([query[p] for p in where])
        positions.append([p + 1 for p in where])  # After [CLS].
        for p in where:
            query[p] = MASK_ID
        queries.append(pack([query], query_length))
        row_candidates, row_readers = [], []
        for k in range(num_candidates):
            title, body = ([], []) if k == 0 else (words(rng, vocab_size, 2), words(rng, vocab_size, 4 + 3 * k % 7))
            row_candidates.append(pack([title, body], block_length))
            row_readers.append(pack([query, body], reader_length))
        candidates.append(stack(row_candidates))
        readers.append(stack(row_readers))
    return {
        "query": stack(queries),
        "candidates": stack(candidates),
        "reader": stack(readers),
        "masked_positions": np.asarray(positions, np.int32),
        "masked_ids": np.asarray(targets, np.int32),
        "masked_weights": np.ones([batch_size, num_masks], np.float32),
        "index_step": np.zeros([batch_size], np.int64),
    }

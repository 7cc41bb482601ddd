"""Pretrained checkpoints in their released formats, seen through BERT's canonical names.

`open_checkpoint(path)` recognises:

  hugging_face  a directory with `config.json` and `model.safetensors` (or a sharded
                index, or `pytorch_model.bin`): `[bert.]embeddings.word_embeddings.weight`,
                `[bert.]encoder.layer.<i>.attention.self.query.weight` [out, in], ... and,
                in pre-training models, `cls.predictions.transform.*`, `cls.predictions.bias`.
                BERT and its smaller relatives (MiniLM) alike. A sentence-transformers
                directory's Pooling config (`modules.json`, `1_Pooling/config.json`) says
                whether it was trained to pool by mean or [CLS] (`PretrainedCheckpoint.pooling`).
  model_garden  a TF2 object-based checkpoint of Model Garden's `BertEncoder` saved as
                `tf.train.Checkpoint(encoder=...)` (the `bert_model.ckpt` + `bert_config.json`
                of the tf_model_garden BERT releases): `encoder/layer_with_weights-<n>/...`.
  tf1           a TF1 name-based checkpoint: original BERT (`bert/...`, `cls/predictions/...`)
                and the REALM/ORQA releases, whose BERT bodies sit under scopes:
                  pre-trained knowledge-augmented encoder  `bert/`, `cls/predictions/`
                  pre-trained embedder                     `module/module/module/bert/`,
                                                           projection `module/module/{dense,LayerNorm}`
                  fine-tuned ORQA-style question embedder  one `module/` deeper
                  fine-tuned reader                        `reader/module/{bert,cls}/`, span MLP
                                                           `reader/{dense,layer_normalization,dense_1}`
                  block embeddings                         `block_emb` [num_blocks, 128]
                A TF-Hub module directory (`variables/variables.index`), as the REALM
                `cc_news_pretrained/{bert,embedder}` releases are, is read through its variables.

Optimizer slots (`adam_m`, `adam_v`, `Adam*`) and `global_step` are never read.
"""

import dataclasses
import glob
import json
import logging
import os
import re
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

import numpy as np

from realm_tf.checkpoints.bert_layout import assign_targets, infer_encoder_sizes
from realm_tf.checkpoints.fetch import resolve_checkpoint
from realm_tf.checkpoints.tensor_sources import (
    CheckpointError, HuggingFaceSource, TensorSource, TfCheckpointSource)

logger = logging.getLogger(__name__)

# Training state, never model weights: TF1 Adam slots and step counters, and TF2
# checkpoints' optimizer slots and save counter.
_OPTIMIZER = re.compile(r"(^|/)(adam_[mv]|Adam(_\d+)?|global_step|beta[12]_power|save_counter|\.OPTIMIZER_SLOT)($|/)")
_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Hugging Face `hidden_act` -> `BertConfig.hidden_activation`. HF's "gelu" is the exact
# erf form; the tanh approximation (BERT's own) goes by "gelu_new" and friends there.
_HF_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu",
                   "relu": "relu"}
# `BertConfig` dropout fields -> the key both config.json (Hugging Face) and bert_config.json
# (the TF releases) name them by.
DROPOUT_KEYS = {"dropout_rate": "hidden_dropout_prob", "attention_dropout_rate": "attention_probs_dropout_prob"}
# The `encoder_sizes` no tensor shape shows: a config file states them, or they are guessed.
CONFIG_STATED_SIZES = ("num_attention_heads", "hidden_activation")
# The sentence-transformers `Pooling` modes (its config.json's `pooling_mode_*` flags) the
# retriever towers implement -> `retriever.pooling`. Max, mean-sqrt-len and the rest are not.
_POOLING_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


def is_optimizer_state(name: str) -> bool:
    """Adam slots, the step counter and the like: never part of a model."""
    return bool(_OPTIMIZER.search(name))


@dataclasses.dataclass
class TensorView:
    """Part of a checkpoint under the names a model asks for.

    `to_source(name)` is the checkpoint's name for `name`; `transform(name, value)` brings
    the stored value to the asked layout (a transpose, a reshape), float32.
    """

    source: TensorSource
    to_source: Callable[[str], str]
    transform: Callable[[str, np.ndarray], np.ndarray] = lambda name, value: value

    def has(self, name: str) -> bool:
        return self.to_source(name) in self.source

    def read(self, name: str) -> np.ndarray:
        return self.transform(name, self.source.read(self.to_source(name)))

    def shape(self, name: str) -> Tuple[int, ...]:
        # Transforms only transpose or reshape, so an unfilled array of the stored shape
        # gives the asked shape without reading the tensor.
        return self.transform(name, np.empty(self.source.shape(self.to_source(name)), np.float32)).shape

    def assign(self, targets) -> List[str]:
        """Fills `targets` (`bert_layout.Target`s) or raises `CheckpointError`; returns names read."""
        return assign_targets(targets, self.read, self.to_source, self.has, self.source.path)


@dataclasses.dataclass
class Projection:
    """REALM's embedding projection: Dense(128) then a LayerNorm, under `view`'s names
    `dense/kernel|bias` and `<norm_name>/gamma|beta`."""

    view: TensorView
    norm_name: str  # "LayerNorm" (REALM, eps 1e-12) or "layer_normalization" (Keras, eps 1e-3)
    epsilon: float


@dataclasses.dataclass
class PretrainedCheckpoint:
    """One opened checkpoint and what of REALM's models it holds.

    Attributes:
      format: "hugging_face", "model_garden" or "tf1".
      path: what the user named (for a registered name, its fetched directory).
      source: its tensors.
      encoder_sizes: `BertConfig` fields the checkpoint fixes (sizes, `hidden_activation`).
      vocab_file: the vocabulary shipped with it, if found.
      guessed: the `encoder_sizes` fields no file states (of `CONFIG_STATED_SIZES`): a TF
        checkpoint without bert_config.json gets one head per 64 dimensions and tanh GELU,
        the BERT releases' choices, which a config may set otherwise.
      config_file: the config.json or bert_config.json that states sizes and dropout, if any.
      dropout: the `BertConfig` dropout fields (`DROPOUT_KEYS`) that `config_file` states.
      pooling: "cls" or "mean" where a sentence-transformers Pooling config (`pooling_file`)
        says how the checkpoint was trained to pool; None where nothing says.
    """

    format: str
    path: str
    source: TensorSource
    encoder_sizes: Dict[str, object]
    vocab_file: Optional[str]
    _bodies: Dict[str, TensorView]  # role -> BERT body (and masked-LM head) in canonical names
    projection: Optional[Projection] = None
    span_head: Optional[TensorView] = None  # `dense/*`, `layer_normalization/*`, `dense_1/*`
    block_embeddings: Optional[str] = None  # the name of `block_emb`, if present
    guessed: FrozenSet[str] = frozenset()
    config_file: Optional[str] = None
    dropout: Dict[str, float] = dataclasses.field(default_factory=dict)
    pooling: Optional[str] = None
    pooling_file: Optional[str] = None

    def stated_sizes(self) -> Dict[str, object]:
        """`encoder_sizes` less the guessed ones: what a config must match to load the weights
        (a guessed head count only splits the same kernels otherwise)."""
        return {field: value for field, value in self.encoder_sizes.items() if field not in self.guessed}

    def bert(self, role: str) -> TensorView:
        """The BERT body for role "retriever" (a query/document tower) or "reader"."""
        if role in self._bodies:
            return self._bodies[role]
        raise CheckpointError(f"{self.path}: holds no BERT for the {role} ({self.describe()})")

    def roles(self) -> List[str]:
        return sorted(self._bodies)

    def describe(self) -> str:
        parts = [f"format {self.format}", f"BERT for {', '.join(self.roles()) or 'nothing'}"]
        if self.projection:
            parts.append(f"projection with {self.projection.norm_name}")
        if self.span_head:
            parts.append("span head")
        if self.block_embeddings:
            parts.append(f"block embeddings {list(self.source.shape(self.block_embeddings))}")
        return "; ".join(parts)


# --- locating files ---------------------------------------------------------------------


def checkpoint_prefix(path: str) -> Optional[str]:
    """The checkpoint prefix that `path` (a prefix or a directory) names, if any."""
    if os.path.exists(path + ".index"):
        return path
    if not os.path.isdir(path):
        return None
    for candidate in ("bert_model.ckpt", os.path.join("variables", "variables")):
        if os.path.exists(os.path.join(path, candidate + ".index")):
            return os.path.join(path, candidate)
    import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(path)
    if latest:
        return latest
    indexes = glob.glob(os.path.join(path, "*.index"))
    if len(indexes) == 1:
        return indexes[0][: -len(".index")]
    if indexes:
        raise CheckpointError(f"{path}: {len(indexes)} checkpoints and no 'checkpoint' file; name one prefix")
    return None


def _find_file(start: str, names) -> Optional[str]:
    """The first of `names` in `start`'s directory or its parent (a hub module keeps
    `assets/vocab.txt` beside `variables/`)."""
    directory = start if os.path.isdir(start) else os.path.dirname(start)
    for base in (directory, os.path.dirname(os.path.normpath(directory))):
        for name in names:
            if os.path.exists(os.path.join(base, name)):
                return os.path.join(base, name)
    return None


def _read_json(path: str) -> Dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable JSON config ({error})") from error


def open_checkpoint(path: str) -> PretrainedCheckpoint:
    """Recognises the format of `path` (see the module docstring) and opens it.

    `path` may also be a fetched registered name (`all-minilm-l6-v2`, see `fetch`), which
    opens its checked directory; `PretrainedCheckpoint.path` is then that directory.
    """
    path = resolve_checkpoint(path)
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError(f"{path}: no such file or directory")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        return _open_hugging_face(path)
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise CheckpointError(
            f"{path}: not a checkpoint this project reads (a Hugging Face directory with config.json, "
            "a TensorFlow checkpoint prefix, or a directory holding one)")
    source = TfCheckpointSource(prefix)
    if any(name.endswith(_OBJECT_SUFFIX) for name in source.names()):
        return _open_model_garden(path, source)
    return _open_tf1(path, source)


def _bert_config(config_path: Optional[str]) -> Dict:
    """A BERT `bert_config.json` (TF releases), or {} where there is none."""
    return _read_json(config_path) if config_path else {}


def _bert_config_sizes(config: Dict) -> Dict[str, object]:
    """The `BertConfig` fields a BERT `bert_config.json` states."""
    fields = {"num_attention_heads": "num_attention_heads", "hidden_act": "hidden_activation"}
    return {ours: config[theirs] for theirs, ours in fields.items() if theirs in config}


def _stated_dropout(config_path: Optional[str], config: Dict) -> Dict[str, float]:
    """The dropout fields (`DROPOUT_KEYS`) a config.json or bert_config.json states: what the
    checkpoint was trained with, and so what fine-tuning it should keep."""
    dropout = {}
    for ours, theirs in DROPOUT_KEYS.items():
        if theirs not in config:
            continue
        value = config[theirs]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise CheckpointError(f"{config_path}: {theirs} {value!r} is not a dropout probability in [0, 1)")
        dropout[ours] = float(value)
    return dropout


def _check_sizes(path: str, inferred: Dict[str, object],
                 stated: Dict[str, object]) -> Tuple[Dict[str, object], FrozenSet[str]]:
    """The encoder sizes, `stated` ones over `inferred` ones, and which of
    `CONFIG_STATED_SIZES` nothing stated (the BERT releases' defaults stand in)."""
    sizes = dict(inferred)
    hidden = sizes["hidden_size"]
    heads = int(stated.get("num_attention_heads", sizes["num_attention_heads"]))
    if hidden % heads:
        raise CheckpointError(f"{path}: hidden size {hidden} is not a multiple of {heads} attention heads")
    sizes["num_attention_heads"] = heads
    sizes["hidden_activation"] = stated.get("hidden_activation", "gelu")
    return sizes, frozenset(field for field in CONFIG_STATED_SIZES if field not in stated)


# --- Hugging Face -----------------------------------------------------------------------


def _hugging_face_name(prefix: str, source: TensorSource) -> Callable[[str], str]:
    def to_source(name: str) -> str:
        if name.startswith("cls/predictions/"):
            head = name[len("cls/predictions/"):]
            if head == "output_bias":
                return "cls.predictions.bias"
            mapped = "cls.predictions." + head
        else:
            mapped = prefix + re.sub(r"encoder/layer_(\d+)", r"encoder.layer.\1", name)
        mapped = mapped.replace("/", ".")
        if mapped.endswith(".kernel"):
            return mapped[: -len("kernel")] + "weight"
        if mapped.endswith(("_embeddings", "embeddings.word_embeddings")):
            return mapped + ".weight"
        for ours, theirs in ((".gamma", ".weight"), (".beta", ".bias")):
            # Older exports keep TF's gamma/beta names.
            if mapped.endswith(ours) and mapped[: -len(ours)] + theirs in source:
                return mapped[: -len(ours)] + theirs
        return mapped

    return to_source


def _transpose_linear(name: str, value: np.ndarray) -> np.ndarray:
    # torch.nn.Linear stores [out, in]; TF kernels are [in, out].
    return np.ascontiguousarray(value.T) if name.endswith("/kernel") else value


def _open_hugging_face(path: str) -> PretrainedCheckpoint:
    config_path = os.path.join(path, "config.json")
    config = _read_json(config_path)
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError(f"{config_path}: model_type {model_type!r}; only BERT-architecture models load here")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{config_path}: position_embedding_type {config['position_embedding_type']!r}; "
                              "Model Garden's BERT has absolute positions only")
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    if abs(epsilon - 1e-12) > 1e-15:
        raise CheckpointError(f"{config_path}: layer_norm_eps {epsilon}; Model Garden's BERT fixes it at 1e-12")
    act = config.get("hidden_act", "gelu")
    if act not in _HF_ACTIVATIONS:
        raise CheckpointError(f"{config_path}: hidden_act {act!r} is not one of {sorted(_HF_ACTIVATIONS)}")
    source = HuggingFaceSource(path)
    prefix = "bert." if any(name.startswith("bert.") for name in source.names()) else ""
    view = TensorView(source, _hugging_face_name(prefix, source), _transpose_linear)
    # A missing hidden_act is Hugging Face's default, "gelu": stated all the same.
    stated = {"hidden_activation": _HF_ACTIVATIONS[act]}
    if "num_attention_heads" in config:
        stated["num_attention_heads"] = config["num_attention_heads"]
    sizes, guessed = _check_sizes(path, infer_encoder_sizes(view.shape, view.has), stated)
    pooling, pooling_file = sentence_transformers_pooling(path)
    return PretrainedCheckpoint("hugging_face", path, source, sizes, _find_file(path, ["vocab.txt"]),
                                {"retriever": view, "reader": view}, guessed=guessed, config_file=config_path,
                                dropout=_stated_dropout(config_path, config), pooling=pooling,
                                pooling_file=pooling_file)


def _pooling_folder(directory: str) -> Optional[str]:
    """The folder of a sentence-transformers model's Pooling module: the one `modules.json`
    names, else the conventional `1_Pooling`; None where it has none."""
    modules_path = os.path.join(directory, "modules.json")
    if os.path.exists(modules_path):
        modules = _read_json(modules_path)
        if not isinstance(modules, list):
            raise CheckpointError(f"{modules_path}: not a sentence-transformers module list")
        return next((os.path.join(directory, module.get("path", "")) for module in modules
                     if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling")), None)
    folder = os.path.join(directory, "1_Pooling")
    return folder if os.path.isdir(folder) else None


def sentence_transformers_pooling(directory: str) -> Tuple[Optional[str], Optional[str]]:
    """How a sentence-transformers model directory was trained to pool its token vectors:
    ("mean" or "cls", its Pooling config.json), or (None, None) where nothing says.

    Other modes (max, mean_sqrt_len, ...) and several at once (sentence-transformers
    concatenates them) raise `CheckpointError` naming the file: the towers implement
    mean and [CLS] pooling only.
    """
    folder = _pooling_folder(directory)
    if folder is None:
        return None, None
    config_path = os.path.join(folder, "config.json")
    config = _read_json(config_path)
    modes = sorted(key for key, value in config.items() if key.startswith("pooling_mode_") and value is True)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise CheckpointError(f"{config_path}: pools by {' + '.join(modes) or 'no pooling_mode'}; the retriever "
                              f"towers implement {' or '.join(sorted(_POOLING_MODES))} alone")
    return _POOLING_MODES[modes[0]], config_path


# --- Model Garden (TF2 object-based) ---------------------------------------------------

_MODEL_GARDEN_LAYER_PARTS = {
    "attention/self/query": "_attention_layer/_query_dense",
    "attention/self/key": "_attention_layer/_key_dense",
    "attention/self/value": "_attention_layer/_value_dense",
    "attention/output/dense": "_attention_layer/_output_dense",
    "attention/output/LayerNorm": "_attention_layer_norm",
    "intermediate/dense": "_intermediate_dense",
    "output/dense": "_output_dense",
    "output/LayerNorm": "_output_layer_norm",
}


def _model_garden_name(num_layers: int) -> Callable[[str], str]:
    """Canonical -> `encoder/layer_with_weights-<n>/...`: the functional `BertEncoder` numbers
    its weighted layers word, position, type embeddings, embedding LayerNorm, the
    transformer blocks, then the pooler."""
    fixed = {"embeddings/word_embeddings": "0/embeddings", "embeddings/position_embeddings": "1/embeddings",
             "embeddings/token_type_embeddings": "2/embeddings", "embeddings/LayerNorm/gamma": "3/gamma",
             "embeddings/LayerNorm/beta": "3/beta", "pooler/dense/kernel": f"{4 + num_layers}/kernel",
             "pooler/dense/bias": f"{4 + num_layers}/bias"}

    def to_source(name: str) -> str:
        if name in fixed:
            return f"encoder/layer_with_weights-{fixed[name]}{_OBJECT_SUFFIX}"
        match = re.fullmatch(r"encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", name)
        if not match or match.group(2) not in _MODEL_GARDEN_LAYER_PARTS:
            return f"(no Model Garden name for {name})"
        layer, part, leaf = int(match.group(1)), match.group(2), match.group(3)
        return (f"encoder/layer_with_weights-{4 + layer}/{_MODEL_GARDEN_LAYER_PARTS[part]}/{leaf}"
                f"{_OBJECT_SUFFIX}")

    return to_source


def _flatten_einsum(name: str, value: np.ndarray) -> np.ndarray:
    # Attention projections are Einsum-shaped: [H, heads, size] in, [heads, size, H] out.
    if name.endswith("attention/output/dense/kernel"):
        return value.reshape(-1, value.shape[-1])
    if "/attention/self/" in name and name.endswith("/kernel"):
        return value.reshape(value.shape[0], -1)
    if "/attention/" in name and name.endswith("/bias"):
        return value.reshape(-1)
    return value


def _open_model_garden(path: str, source: TensorSource) -> PretrainedCheckpoint:
    if f"encoder/layer_with_weights-0/embeddings{_OBJECT_SUFFIX}" not in source:
        roots = sorted({name.split("/")[0] for name in source.names() if name.endswith(_OBJECT_SUFFIX)})
        raise CheckpointError(f"{source.path}: a TF2 object-based checkpoint without an 'encoder' root (roots: "
                              f"{roots}); save Model Garden encoders as tf.train.Checkpoint(encoder=...)")
    num_layers = sum(1 for name in source.names() if name.endswith(f"_query_dense/kernel{_OBJECT_SUFFIX}"))
    if f"encoder/layer_with_weights-4/kernel{_OBJECT_SUFFIX}" in source:
        raise CheckpointError(f"{source.path}: the encoder projects its embeddings (embedding width differs "
                              "from the hidden size), which this project's BertEncoderV2 towers do not")
    view = TensorView(source, _model_garden_name(num_layers), _flatten_einsum)
    config_path = _find_file(source.path, ["bert_config.json"])
    config = _bert_config(config_path)
    sizes, guessed = _check_sizes(path, infer_encoder_sizes(view.shape, view.has), _bert_config_sizes(config))
    return PretrainedCheckpoint("model_garden", path, source, sizes, _find_file(source.path, ["vocab.txt"]),
                                {"retriever": view, "reader": view}, guessed=guessed, config_file=config_path,
                                dropout=_stated_dropout(config_path, config))


# --- TF1 names: BERT, REALM, ORQA ----------------------------------------------------


def _tf1_view(source: TensorSource, scope: str) -> TensorView:
    """The BERT under `scope` (`<scope>bert/...`, its head `<scope>cls/predictions/...`)."""
    return TensorView(source, lambda name: scope + (name if name.startswith("cls/") else "bert/" + name))


def _open_tf1(path: str, source: TensorSource) -> PretrainedCheckpoint:
    word_embeddings = "bert/embeddings/word_embeddings"
    scopes = [name[: -len(word_embeddings)] for name in source.names() if name.endswith(word_embeddings)]
    if not scopes:
        raise CheckpointError(f"{source.path}: no BERT variables (no '.../{word_embeddings}') among "
                              f"{len(source.names())} variables")
    bodies, projection = {}, None
    for scope in scopes:
        if scope.startswith("reader/"):
            bodies["reader"] = _tf1_view(source, scope)
        elif scope.startswith("module/"):
            # The embedder's projection sits one `module/` above its BERT.
            outer = scope[: -len("module/")]
            plain = TensorView(source, lambda name, outer=outer: outer + name)
            found = next((Projection(plain, norm, epsilon)
                          for norm, epsilon in (("LayerNorm", 1e-12), ("layer_normalization", 1e-3))
                          if plain.has("dense/kernel") and plain.has(f"{norm}/gamma")), None)
            if found is not None:  # The embedder with its projection wins over a bare BERT.
                projection, bodies["retriever"] = found, _tf1_view(source, scope)
            else:
                bodies.setdefault("retriever", _tf1_view(source, scope))
        elif scope == "":
            bodies["plain"] = _tf1_view(source, scope)
    plain = bodies.pop("plain", None)
    if plain is not None:
        # Original BERT, or REALM's knowledge-augmented encoder: good for either role.
        bodies.setdefault("reader", plain)
        bodies.setdefault("retriever", plain)
    span = TensorView(source, lambda name: "reader/" + name)
    span_head = span if span.has("dense/kernel") and span.has("dense_1/kernel") else None
    any_body = next(iter(bodies.values()))
    config_path = _find_file(source.path, ["bert_config.json"])
    config = _bert_config(config_path)
    sizes, guessed = _check_sizes(path, infer_encoder_sizes(any_body.shape, any_body.has), _bert_config_sizes(config))
    vocab = _find_file(source.path, ["vocab.txt", os.path.join("assets", "vocab.txt")])
    return PretrainedCheckpoint("tf1", path, source, sizes, vocab, bodies, projection, span_head,
                                "block_emb" if "block_emb" in source else None, guessed=guessed,
                                config_file=config_path, dropout=_stated_dropout(config_path, config))

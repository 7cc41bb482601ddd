"""BERT's weights under one naming, and the Model Garden variables each one fills.

Canonical names are the original TF1 BERT's without its `bert/` scope, with 2-D kernels
[in, out] (`encoder/layer_3/attention/self/query/kernel`: float32 [H, H]). Each checkpoint
format maps them to its own names (`realm_tf.checkpoints.formats`); this module maps them
onto a `BertEncoderV2` and a `MaskedLM` head, whose attention kernels are Einsum-shaped
([H, heads, H / heads] and so on): a canonical tensor fills a variable by a reshape.
"""

import dataclasses
from typing import Callable, Dict, List, Sequence

import numpy as np

from realm_tf.checkpoints.tensor_sources import CheckpointError

_LAYER_PARTS = (
    "attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
    "intermediate/dense", "output/dense",
)


def encoder_names(num_layers: int) -> List[str]:
    """Every canonical name of a BERT body with `num_layers` layers (pooler included)."""
    names = ["embeddings/word_embeddings", "embeddings/position_embeddings", "embeddings/token_type_embeddings",
             "embeddings/LayerNorm/gamma", "embeddings/LayerNorm/beta"]
    for i in range(num_layers):
        for part in _LAYER_PARTS:
            names += [f"encoder/layer_{i}/{part}/kernel", f"encoder/layer_{i}/{part}/bias"]
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            names += [f"encoder/layer_{i}/{norm}/gamma", f"encoder/layer_{i}/{norm}/beta"]
    return names + ["pooler/dense/kernel", "pooler/dense/bias"]


# BERT's masked-LM head; its output matrix is the word embeddings, so only the bias is its own.
MASKED_LM_NAMES = tuple(f"cls/predictions/{name}" for name in (
    "transform/dense/kernel", "transform/dense/bias", "transform/LayerNorm/gamma", "transform/LayerNorm/beta",
    "output_bias"))


@dataclasses.dataclass(frozen=True)
class Target:
    """One variable to fill: from the canonical tensor `name`, float [canonical_shape]."""

    name: str
    variable: object  # tf.Variable
    canonical_shape: tuple


def _dense(prefix: str, layer, heads_in: bool = False, heads_out: bool = False) -> List[Target]:
    """A Dense or EinsumDense layer; Einsum kernels are [in, heads, size] or [heads, size, out]."""
    kernel, bias = layer.kernel, layer.bias
    shape = tuple(kernel.shape)
    if heads_out:  # [H, heads, size] <- [H, heads * size]
        canonical = (shape[0], shape[1] * shape[2])
    elif heads_in:  # [heads, size, H] <- [heads * size, H]
        canonical = (shape[0] * shape[1], shape[2])
    else:
        canonical = shape
    return [Target(f"{prefix}/kernel", kernel, canonical),
            Target(f"{prefix}/bias", bias, (int(np.prod(bias.shape)),))]


def _norm(prefix: str, layer) -> List[Target]:
    return [Target(f"{prefix}/gamma", layer.gamma, tuple(layer.gamma.shape)),
            Target(f"{prefix}/beta", layer.beta, tuple(layer.beta.shape))]


def encoder_targets(encoder) -> List[Target]:
    """The variables of a built Model Garden `BertEncoderV2`, by canonical name."""
    embeddings = encoder.get_embedding_table()
    positions = encoder._position_embedding_layer._position_embeddings  # No public accessor.
    types = encoder._type_embedding_layer.embeddings
    targets = [Target("embeddings/word_embeddings", embeddings, tuple(embeddings.shape)),
               Target("embeddings/position_embeddings", positions, tuple(positions.shape)),
               Target("embeddings/token_type_embeddings", types, tuple(types.shape)),
               *_norm("embeddings/LayerNorm", encoder._embedding_norm_layer)]
    for i, block in enumerate(encoder.transformer_layers):
        layer = f"encoder/layer_{i}"
        attention = block._attention_layer
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            targets += _dense(f"{layer}/attention/self/{part}", dense, heads_out=True)
        targets += _dense(f"{layer}/attention/output/dense", attention._output_dense, heads_in=True)
        targets += _norm(f"{layer}/attention/output/LayerNorm", block._attention_layer_norm)
        targets += _dense(f"{layer}/intermediate/dense", block._intermediate_dense)
        targets += _dense(f"{layer}/output/dense", block._output_dense)
        targets += _norm(f"{layer}/output/LayerNorm", block._output_layer_norm)
    return targets + _dense("pooler/dense", encoder.pooler_layer)


def masked_lm_targets(masked_lm) -> List[Target]:
    """The variables of a built Model Garden `MaskedLM` head, by `MASKED_LM_NAMES`."""
    return [*_dense("cls/predictions/transform/dense", masked_lm.dense),
            *_norm("cls/predictions/transform/LayerNorm", masked_lm.layer_norm),
            Target("cls/predictions/output_bias", masked_lm.bias, tuple(masked_lm.bias.shape))]


def dense_targets(prefix: str, layer) -> List[Target]:
    """A plain Dense layer's kernel [in, out] and bias [out] as `<prefix>/kernel|bias`."""
    return _dense(prefix, layer)


def norm_targets(prefix: str, layer) -> List[Target]:
    """A LayerNormalization's gamma and beta [H] as `<prefix>/gamma|beta`."""
    return _norm(prefix, layer)


def assign_targets(targets: Sequence[Target], read: Callable[[str], np.ndarray],
                   source_name: Callable[[str], str], has: Callable[[str], bool], path: str) -> List[str]:
    """Fills every target from `read(name)` (canonical shape), or changes nothing.

    Every target is checked first: a missing tensor or one of another shape raises one
    `CheckpointError` naming `path`, the checkpoint's own variable names and both shapes.
    Returns the checkpoint names read, in target order.
    """
    problems, values = [], {}
    for target in targets:
        name = source_name(target.name)
        if not has(target.name):
            problems.append(f"missing {name} (for {target.variable.name}, shape {list(target.canonical_shape)})")
            continue
        value = read(target.name)
        if tuple(value.shape) != target.canonical_shape:
            problems.append(f"{name} has shape {list(value.shape)}; {target.variable.name} needs "
                            f"{list(target.canonical_shape)}")
            continue
        values[target.name] = value
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise CheckpointError(f"{path}: {len(problems)} variable(s) do not fit the model:\n  {shown}")
    for target in targets:
        value = values[target.name]
        target.variable.assign(value.reshape(target.variable.shape).astype(target.variable.dtype.as_numpy_dtype))
    return [source_name(target.name) for target in targets]


def infer_encoder_sizes(shape_of: Callable[[str], tuple], has: Callable[[str], bool],
                        num_attention_heads: int = 0) -> Dict[str, int]:
    """`BertConfig` sizes from canonical tensor shapes.

    The number of attention heads is not in any shape: BERT's releases use one head per
    64 dimensions, which is the default when `num_attention_heads` is 0.
    """
    vocab_size, hidden = shape_of("embeddings/word_embeddings")
    num_layers = 0
    while has(f"encoder/layer_{num_layers}/attention/self/query/kernel"):
        num_layers += 1
    if num_layers == 0:
        raise CheckpointError("no encoder/layer_0 found")
    heads = num_attention_heads or max(1, hidden // 64)
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_layers": num_layers,
        "num_attention_heads": heads,
        "intermediate_size": shape_of("encoder/layer_0/intermediate/dense/kernel")[1],
        "max_position_embeddings": shape_of("embeddings/position_embeddings")[0],
        "type_vocab_size": shape_of("embeddings/token_type_embeddings")[0],
    }

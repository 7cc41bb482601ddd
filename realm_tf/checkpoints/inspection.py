"""What a pretrained checkpoint holds: the model parts it fills and the tensors nothing reads."""

from typing import Dict, List

from realm_tf.checkpoints.bert_layout import MASKED_LM_NAMES, encoder_names
from realm_tf.checkpoints.formats import PretrainedCheckpoint, is_optimizer_state, open_checkpoint

_SPAN_HEAD = ("dense/kernel", "dense/bias", "layer_normalization/gamma", "layer_normalization/beta",
              "dense_1/kernel", "dense_1/bias")


def components(checkpoint: PretrainedCheckpoint) -> Dict[str, List[str]]:
    """The checkpoint's own names of each model part it holds."""
    parts = {}
    num_layers = checkpoint.encoder_sizes["num_layers"]
    for role in checkpoint.roles():
        view = checkpoint.bert(role)
        parts[f"{role} BERT"] = [view.to_source(n) for n in encoder_names(num_layers) if view.has(n)]
        if role == "reader" and all(view.has(n) for n in MASKED_LM_NAMES):
            parts[f"{role} masked-LM head"] = [view.to_source(n) for n in MASKED_LM_NAMES]
    if checkpoint.projection:
        norm = checkpoint.projection.norm_name
        parts["retriever projection"] = [checkpoint.projection.view.to_source(n) for n in
                                         ("dense/kernel", "dense/bias", f"{norm}/gamma", f"{norm}/beta")]
    if checkpoint.span_head:
        parts["reader span head"] = [checkpoint.span_head.to_source(n) for n in _SPAN_HEAD]
    if checkpoint.block_embeddings:
        parts["block embeddings"] = [checkpoint.block_embeddings]
    return parts


def inspect_checkpoint(path: str) -> Dict:
    """What `python -m realm_tf.checkpoints inspect` reports of the checkpoint at `path`:
    {"path", "format", "tensors_file", "encoder" (its sizes), "vocab_file",
    "projection_norm_epsilon", "pooling", "pooling_file", "parts" ({part: tensors}),
    "optimizer_state_skipped" (count), "unread" (names no part reads)}."""
    checkpoint = open_checkpoint(path)
    parts = components(checkpoint)
    used = {name for names in parts.values() for name in names}
    names = [n for n in checkpoint.source.names() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    optimizer = [n for n in names if is_optimizer_state(n)]
    unread = [n for n in names if n not in used and not is_optimizer_state(n)]
    return {"path": path, "format": checkpoint.format, "tensors_file": checkpoint.source.path,
            "encoder": checkpoint.encoder_sizes, "vocab_file": checkpoint.vocab_file,
            "projection_norm_epsilon": checkpoint.projection.epsilon if checkpoint.projection else None,
            "pooling": checkpoint.pooling, "pooling_file": checkpoint.pooling_file,
            "parts": {part: len(names) for part, names in parts.items()},
            "optimizer_state_skipped": len(optimizer), "unread": unread}

"""Starting this project's models from pretrained checkpoints (`retriever.init_checkpoint`,
`reader.init_checkpoint`).

What each model part takes from a checkpoint (`formats.PretrainedCheckpoint`):

  `ProjectedEmbedder` (a retriever tower)   the "retriever" BERT (REALM/ORQA: the embedder's;
                                            otherwise the checkpoint's only BERT), and REALM's
                                            projection + LayerNorm when present
  `KnowledgeAugmentedEncoder`               the "reader" BERT and the masked-LM head when present
  `SpanReader`                              the "reader" BERT and ORQA's span MLP when present

A part the checkpoint does not hold (the projection of a plain BERT, say) keeps its
random initialization, as REALM's own start from BERT does; the report says which.
Everything else must be there in the model's shape, or nothing is loaded.
"""

import dataclasses
import hashlib
import logging
from typing import Collection, Dict, List

from realm_tf.checkpoints.bert_layout import (
    MASKED_LM_NAMES, dense_targets, encoder_targets, masked_lm_targets, norm_targets)
from realm_tf.checkpoints.fetch import is_pinned_name, warn_if_unverified
from realm_tf.checkpoints.formats import PretrainedCheckpoint, is_optimizer_state, open_checkpoint
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.configs import BertConfig, ExperimentConfig
from realm_tf.features.vocabulary import BUNDLED_VOCAB_PATH

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadReport:
    """What one model part took from one checkpoint."""

    part: str
    checkpoint: str
    format: str
    read: List[str]
    left_initialized: List[str]

    def summary(self) -> str:
        text = f"{self.part}: {len(self.read)} tensors from {self.checkpoint} ({self.format})"
        if self.left_initialized:
            text += f"; not in the checkpoint, left at initialization: {', '.join(self.left_initialized)}"
        return text


def check_encoder_fits(checkpoint: PretrainedCheckpoint, encoder: BertConfig, field: str) -> None:
    """Raises `CheckpointError` if `encoder` (the config at `field`) is sized otherwise than
    the checkpoint; warns if the activation differs (the weights load, the outputs shift)."""
    sizes = {k: v for k, v in checkpoint.stated_sizes().items() if k != "hidden_activation"}
    wrong = [f"{field}.{k}: config {getattr(encoder, k)}, checkpoint {v}" for k, v in sizes.items()
             if getattr(encoder, k) != v]
    if wrong:
        raise CheckpointError(
            f"{checkpoint.path}: the config's encoder does not match the checkpoint:\n  " + "\n  ".join(wrong)
            + f"\n`python -m realm_tf.checkpoints config --retriever {checkpoint.path} --output FILE` writes a config "
            "that fits")
    activation = checkpoint.encoder_sizes["hidden_activation"]
    if encoder.hidden_activation != activation:
        logger.warning("%s: trained with hidden_activation %r; %s.hidden_activation is %r",
                       checkpoint.path, activation, field, encoder.hidden_activation)


def check_vocabulary_fits(checkpoint: PretrainedCheckpoint, vocab_file: str) -> None:
    """Raises `CheckpointError` if the checkpoint ships a vocabulary other than the config's:
    the embedding rows would mean other wordpieces."""
    if checkpoint.vocab_file is None:
        return
    configured = vocab_file or str(BUNDLED_VOCAB_PATH)
    digest = lambda path: hashlib.sha256(open(path, "rb").read().replace(b"\r\n", b"\n").strip()).hexdigest()  # noqa: E731
    if digest(checkpoint.vocab_file) != digest(configured):
        raise CheckpointError(f"{checkpoint.vocab_file}: the checkpoint's vocabulary differs from the configured "
                              f"{configured}; set features.vocab_file: {checkpoint.vocab_file}")


def load_embedder(embedder, checkpoint: PretrainedCheckpoint, part: str = "retriever") -> LoadReport:
    """Fills a built `ProjectedEmbedder` from `checkpoint`."""
    read = checkpoint.bert("retriever").assign(encoder_targets(_built(embedder.encoder)))
    left = []
    projection = checkpoint.projection
    if projection is None:
        left.append("projection and its LayerNorm")
    else:
        if abs(projection.epsilon - embedder.layer_norm.epsilon) > projection.epsilon * 1e-3:
            raise CheckpointError(
                f"{checkpoint.path}: the projection's {projection.norm_name} was trained with epsilon "
                f"{projection.epsilon}; set retriever.projection_norm_epsilon: {projection.epsilon}")
        read += projection.view.assign(dense_targets("dense", embedder.projection)
                                       + norm_targets(projection.norm_name, embedder.layer_norm))
    return LoadReport(part, checkpoint.path, checkpoint.format, read, left)


def _built(layer):
    """`layer`, whose variables exist only once it has been called."""
    if not layer.built:
        raise ValueError(f"{layer.name}: build the model (call it once) before loading a checkpoint into it")
    return layer


def _reader_encoder_targets(reader, body, left: List[str]):
    """The reader BERT's targets; the pooler only if the checkpoint has one (masked-LM
    checkpoints drop it, and no reader uses it)."""
    targets = encoder_targets(_built(reader.encoder))
    if not body.has("pooler/dense/kernel"):
        left.append("pooler (unused by the reader)")
        targets = [t for t in targets if not t.name.startswith("pooler/")]
    return targets


def load_knowledge_encoder(reader, checkpoint: PretrainedCheckpoint, part: str = "reader") -> LoadReport:
    """Fills a built `KnowledgeAugmentedEncoder` (BERT, and the masked-LM head if present)."""
    body = checkpoint.bert("reader")
    left = []
    targets = _reader_encoder_targets(reader, body, left)
    if all(body.has(name) for name in MASKED_LM_NAMES):
        targets += masked_lm_targets(_built(reader.masked_lm))
    else:
        # As BERT's own head: its output matrix is the word embeddings just loaded, so only
        # the transform (dense + LayerNorm) and the output bias start from scratch.
        left.append("masked-LM transform and output bias (its output matrix is the loaded word embeddings)")
    return LoadReport(part, checkpoint.path, checkpoint.format, body.assign(targets), left)


def load_span_reader(reader, checkpoint: PretrainedCheckpoint, part: str = "reader") -> LoadReport:
    """Fills a built `SpanReader` (BERT, and ORQA's span MLP if present)."""
    body, left = checkpoint.bert("reader"), []
    read = body.assign(_reader_encoder_targets(reader, body, left))
    if checkpoint.span_head is None:
        left.append("span head")
    else:
        scorer = checkpoint.span_head
        span = _built(reader.span_scorer)
        read += scorer.assign(dense_targets("dense", span.dense) + norm_targets("layer_normalization", span.layer_norm)
                              + dense_targets("dense_1", span.dense_1))
    return LoadReport(part, checkpoint.path, checkpoint.format, read, left)


def unread_names(checkpoint: PretrainedCheckpoint, reports: List[LoadReport]) -> List[str]:
    """The checkpoint's tensors no report read, optimizer state left out."""
    read = {name for report in reports for name in report.read}
    return [name for name in checkpoint.source.names()
            if name not in read and not is_optimizer_state(name) and name != "_CHECKPOINTABLE_OBJECT_GRAPH"]


def initialize_from_checkpoints(model, config: ExperimentConfig, skip: Collection[str] = ()) -> List[LoadReport]:
    """Loads `config.retriever.init_checkpoint` and `config.reader.init_checkpoint` into the
    parts of `model` (a built `Retriever`, `RealmPretrainer` or `OpenQaModel`) they apply to.

    `skip` names parts ("retriever", "reader") that an earlier stage's checkpoint
    (`--init_from`) fills instead, so the log reports only what stays as loaded here.
    Returns one report per part filled (none if neither option is set).
    """
    from realm_tf.modeling.open_qa import OpenQaModel
    from realm_tf.modeling.realm_pretrainer import RealmPretrainer
    from realm_tf.modeling.retriever import Retriever

    opened: Dict[str, PretrainedCheckpoint] = {}

    def checkpoint_for(path: str, encoder: BertConfig, field: str) -> PretrainedCheckpoint:
        if path not in opened:
            opened[path] = open_checkpoint(path)
            if not is_pinned_name(path):  # A registered name's copy was just checked in resolving it.
                warn_if_unverified(opened[path].path)
            check_vocabulary_fits(opened[path], config.features.vocab_file)
        check_encoder_fits(opened[path], encoder, field)
        return opened[path]

    if isinstance(model, Retriever):
        towers, reader = {"query_embedder": model.query_embedder, "block_embedder": model.block_embedder}, None
    elif isinstance(model, RealmPretrainer):
        towers = {"query_embedder": model.retriever.query_embedder, "block_embedder": model.retriever.block_embedder}
        reader = (model.reader, load_knowledge_encoder)
    elif isinstance(model, OpenQaModel):
        towers, reader = {"query_embedder": model.query_embedder}, (model.reader, load_span_reader)
    else:
        raise TypeError(f"no pretrained initialization for {type(model).__name__}")

    reports = []
    if config.retriever.init_checkpoint and "retriever" not in skip:
        checkpoint = checkpoint_for(config.retriever.init_checkpoint, config.retriever.encoder, "retriever.encoder")
        loaded = set()
        for name, tower in towers.items():
            if id(tower) not in loaded:  # Shared towers are one embedder.
                reports.append(load_embedder(tower, checkpoint, part=f"retriever.{name}"))
                loaded.add(id(tower))
    if config.reader.init_checkpoint and reader is not None and "reader" not in skip:
        checkpoint = checkpoint_for(config.reader.init_checkpoint, config.reader.encoder, "reader.encoder")
        layer, load = reader
        reports.append(load(layer, checkpoint))
    for report in reports:
        logger.info("%s", report.summary())
    return reports

"""A config fitted to pretrained checkpoints: what `python -m realm_tf.checkpoints config` writes.

The base config, with the user's `--override`s, changes in three kinds of field:

  fixed by the checkpoint    the encoder sizes its shapes (or its config file) state, the
                             projection's width and LayerNorm epsilon, the span MLP's width,
                             the vocabulary: the weights load only so, and an --override that
                             says otherwise is an error naming both values.
  guessed for it             what no file states (a TF checkpoint's head count without its
                             bert_config.json): the BERT releases' rule, unless an --override
                             says otherwise.
  suggested for it           how to train from a pretrained start: the pooling and dropout it
                             was trained with, for a sentence-embedding checkpoint (one with
                             a pooling config and no projection) an identity projection of
                             the encoder's width, a fresh projection's LayerNorm gain
                             (`FRESH_SCORE_SCALE`), learning rates and warm-up for a pretrained
                             start (`PRETRAINED_LEARNING_RATES`); an --override always wins.

Each value set is a `Choice` (field, value, reason): the command prints them, and the YAML
it writes carries them as a comment block. The fitted config is validated before anything
is written, so the file always loads; lengths a checkpoint cannot read are an error naming
the field, the checkpoint's limit and the --override that fixes it, never a silent change.
"""

import math
import os
import tempfile
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple


from realm_tf.checkpoints.fetch import is_pinned_name
from realm_tf.checkpoints.formats import DROPOUT_KEYS, PretrainedCheckpoint, open_checkpoint
from realm_tf.checkpoints.initialize import check_vocabulary_fits
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.configs import ConfigError, ExperimentConfig, load_config, save_config
from realm_tf.configs.loading import apply_overrides, validate_config

# Learning rates for a pretrained start: ORQA's ICT warm start (Lee et al. 2019) and REALM's
# pre-training and fine-tuning (Guu et al. 2020), as configs/base.yaml has them.
PRETRAINED_LEARNING_RATES = {"ict": 1e-4, "pretrain": 3e-5, "finetune": 1e-5}
_RATE_SOURCES = {"ict": "ORQA's ICT", "pretrain": "REALM's pre-training", "finetune": "REALM's fine-tuning"}
# A base rate more than this many times the pretrained-start one is a from-scratch rate and is
# replaced (tiny.yaml's are 10-33 times); one within it is taken as meant for a pretrained start
# and kept (BERT's fine-tuning grid, 2e-5 to 5e-5, lies within 5 times REALM's 1e-5).
FROM_SCRATCH_FACTOR = 5.0
# BERT's fine-tuning warm-up proportion: a longer warm-up spends the run below its rate.
WARMUP_FRACTION = 0.1
# The models each task trains; ICT trains the retriever alone.
_TRAINED = {"ict": ("retriever",), "pretrain": ("retriever", "reader"), "finetune": ("retriever", "reader")}
# The packings each role's encoder reads.
_LENGTHS = {"retriever": ("query_length", "block_length"), "reader": ("reader_length",)}
# The retrieval-score scale a fresh projection over a pretrained encoder starts at: the
# similarity scale sentence-transformers' contrastive loss (MultipleNegativesRankingLoss)
# multiplies cosines by, by default. See RetrieverConfig.projection_norm_gain.
FRESH_SCORE_SCALE = 20.0
# How `formats` fills the sizes no file states: the BERT releases' choices.
_GUESSES = {"num_attention_heads": "one head per 64 dimensions", "hidden_activation": "tanh GELU"}


class Choice(NamedTuple):
    """One field the command set, its value, and why."""

    field: str
    value: object
    reason: str

    def line(self) -> str:
        return f"{self.field} = {self.value} ({self.reason})"


class FittedConfig(NamedTuple):
    """The validated config and the choices that made it, in the order made."""

    config: ExperimentConfig
    choices: List[Choice]


def fitted_config(base: str, overrides: Sequence[str], retriever: Optional[str],
                  reader: Optional[str]) -> FittedConfig:
    """`base` (a config name or YAML) with `overrides`, fitted to the checkpoints at
    `retriever` (both towers) and `reader`, either of which may be None.

    Raises:
      CheckpointError: an override contradicts a checkpoint, or a length exceeds what it reads.
      ConfigError: the fitted config would not load (the message names the field).
    """
    config = load_config(base)
    fitter = _Fitter(config, apply_overrides(config, overrides))
    opened: Dict[str, PretrainedCheckpoint] = {}
    for role, path in (("retriever", retriever), ("reader", reader)):
        if not path:
            continue
        checkpoint = opened[role] = open_checkpoint(path)
        section = getattr(config, role)
        section.init_checkpoint = path if is_pinned_name(path) else os.path.abspath(path)
        fitter.record(f"{role}.init_checkpoint", section.init_checkpoint, f"the --{role} checkpoint")
        _fit_encoder(fitter, role, checkpoint)
        _fit_around_encoder(fitter, role, checkpoint)
        _fit_vocabulary(fitter, checkpoint)
    _fit_training(fitter, opened)
    check_lengths(config, opened)
    _validate(config)
    return FittedConfig(config, fitter.choices)


def save_fitted_config(fitted: FittedConfig, path: str) -> None:
    """Writes the config as `save_config` does (so `load_config(path)` reads it back equal),
    headed by a comment block with each choice and its reason."""
    header = ["# Fitted to pretrained checkpoints by `python -m realm_tf.checkpoints config`; its choices:"]
    header += [f"#   {choice.line()}" for choice in fitted.choices]
    with tempfile.TemporaryDirectory() as scratch:
        body = os.path.join(scratch, "config.yaml")
        save_config(fitted.config, body)
        with open(body, encoding="utf-8") as f:
            text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + text)


# --- overrides --------------------------------------------------------------------------


class _Fitter:
    """Sets fields of `config` as fixed or suggested values, minding the user's overrides,
    and records each as a `Choice`."""

    def __init__(self, config: ExperimentConfig, overridden: Set[str]):
        self.config, self.overridden = config, overridden
        self.choices: List[Choice] = []
        self._fixed: Dict[str, Tuple[object, str]] = {}  # field -> (value, checkpoint path)

    def get(self, field: str):
        owner, name = self._owner(field)
        return getattr(owner, name)

    def record(self, field: str, value, reason: str) -> None:
        owner, name = self._owner(field)
        setattr(owner, name, value)
        self.choices.append(Choice(field, value, reason))

    def fixed(self, field: str, value, reason: str, path: str) -> None:
        """A value the checkpoint at `path` dictates: an override, or another checkpoint,
        that says otherwise is an error."""
        if field in self.overridden and self.get(field) != value:
            raise CheckpointError(f"{path}: --override {field}={self.get(field)} contradicts the checkpoint's "
                                  f"{value} ({reason}); drop the override")
        earlier = self._fixed.get(field)
        if earlier is not None and earlier[0] != value:
            raise CheckpointError(f"{path}: needs {field} = {value} ({reason}), but {earlier[1]} needs {earlier[0]}")
        self._fixed[field] = (value, path)
        self.record(field, value, reason)

    def suggested(self, field: str, value, reason: str) -> None:
        """A value the command proposes; an override wins, noted where it differs."""
        if field not in self.overridden:
            self.record(field, value, reason)
        elif self.get(field) != value:
            self.note(field, self.get(field), f"your --override; else {value}: {reason}")

    def note(self, field: str, value, reason: str) -> None:
        """A value left as it is, and why."""
        self.choices.append(Choice(field, value, reason))

    def _owner(self, field: str):
        *sections, name = field.split(".")
        owner = self.config
        for section in sections:
            owner = getattr(owner, section)
        return owner, name


# --- what each checkpoint fixes or suggests --------------------------------------------


def _config_name(checkpoint: PretrainedCheckpoint) -> str:
    return os.path.basename(checkpoint.config_file) if checkpoint.config_file else "config"


def _size_reason(field: str, checkpoint: PretrainedCheckpoint) -> str:
    if field == "num_attention_heads":
        return f"from the checkpoint's {_config_name(checkpoint)} num_attention_heads"
    if field == "hidden_activation":
        return f"from the checkpoint's {_config_name(checkpoint)} hidden_act"
    return "the checkpoint's tensor shapes"


def _fit_encoder(fitter: _Fitter, role: str, checkpoint: PretrainedCheckpoint) -> None:
    """Sizes and dropout of `role`'s encoder: stated sizes fixed, guessed ones and the
    checkpoint's dropout suggested (an --override of either wins)."""
    for field, value in checkpoint.encoder_sizes.items():
        dotted = f"{role}.encoder.{field}"
        if field in checkpoint.guessed:
            config_name = _config_name(checkpoint) if checkpoint.config_file else "bert_config.json"
            fitter.suggested(dotted, value, f"guessed, {_GUESSES[field]} as in the BERT releases: no {config_name} "
                                            f"states it; set --override {dotted}=... if trained otherwise")
        else:
            fitter.fixed(dotted, value, _size_reason(field, checkpoint), checkpoint.path)
    for field, value in checkpoint.dropout.items():
        # Dropout the model was trained with: a from-scratch base's (tiny.yaml's 0) need not fit it.
        fitter.suggested(f"{role}.encoder.{field}", value,
                         f"from the checkpoint's {_config_name(checkpoint)} {DROPOUT_KEYS[field]}")


def _fit_around_encoder(fitter: _Fitter, role: str, checkpoint: PretrainedCheckpoint) -> None:
    """The parts around the encoder: the retriever's projection and pooling, the reader's
    trainable layers and span MLP."""
    path = checkpoint.path
    if role == "retriever" and checkpoint.projection:
        projection = checkpoint.projection
        fitter.fixed("retriever.projection_size", projection.view.shape("dense/kernel")[1],
                     "the width of the checkpoint's projection dense/kernel", path)
        fitter.fixed("retriever.projection_norm_epsilon", projection.epsilon,
                     f"the checkpoint's projection {projection.norm_name}", path)
    if role == "retriever" and not checkpoint.projection:
        if checkpoint.pooling:
            fitter.suggested("retriever.projection_initializer", "identity",
                             "the checkpoint was trained for the cosine of its pooled outputs and has no projection: "
                             "an identity keeps that similarity, where a random projection loses some of it")
        if fitter.get("retriever.projection_initializer") == "identity":
            fitter.suggested("retriever.projection_size", fitter.get("retriever.encoder.hidden_size"),
                             "an identity projection keeps the encoder's width")
        size = fitter.get("retriever.projection_size")
        fitter.suggested("retriever.projection_norm_gain", round(math.sqrt(FRESH_SCORE_SCALE / size), 4),
                         f"the projection starts fresh: retrieval scores start near {FRESH_SCORE_SCALE:g} x the "
                         f"embeddings' correlation, not up to {size}")
    if role == "retriever" and checkpoint.pooling:
        where = os.path.relpath(checkpoint.pooling_file, path)
        fitter.suggested("retriever.pooling", checkpoint.pooling, f"how the checkpoint was trained to pool: {where}")
    if role == "reader":
        layers, trainable = fitter.get("reader.encoder.num_layers"), fitter.get("reader.trainable_layers")
        if trainable > layers:  # A base sized for a deeper checkpoint (minilm.yaml trains the top 4 of 6).
            fitter.suggested("reader.trainable_layers", layers,
                             f"the base trains {trainable} layers; the checkpoint has {layers}")
    if role == "reader" and checkpoint.span_head:
        # ORQA's span MLP: one Dense of 2 x span_hidden_size, split into start and end halves.
        fitter.fixed("reader.span_hidden_size", checkpoint.span_head.shape("dense/kernel")[1] // 2,
                     "half the width of the checkpoint's span MLP reader/dense", path)


def _fit_vocabulary(fitter: _Fitter, checkpoint: PretrainedCheckpoint) -> None:
    """The checkpoint's vocabulary, where the configured one differs: its embedding rows mean
    its own wordpieces."""
    if not checkpoint.vocab_file:
        return
    try:
        check_vocabulary_fits(checkpoint, fitter.config.features.vocab_file)
    except CheckpointError:
        fitter.fixed("features.vocab_file", os.path.abspath(checkpoint.vocab_file),
                     "the vocabulary the checkpoint ships; the configured one differs", checkpoint.path)


def _fit_training(fitter: _Fitter, opened: Mapping[str, PretrainedCheckpoint]) -> None:
    """Learning rate and warm-up of each task that trains a model started from a checkpoint."""
    for task in PRETRAINED_LEARNING_RATES:
        from_scratch = [role for role in _TRAINED[task] if role not in opened]
        if len(from_scratch) == len(_TRAINED[task]):
            continue  # Nothing it trains starts pretrained: the base's schedule is meant for it.
        _fit_learning_rate(fitter, task, from_scratch)
        if not from_scratch:
            _fit_warmup(fitter, task)


def _fit_learning_rate(fitter: _Fitter, task: str, from_scratch: Sequence[str]) -> None:
    """A from-scratch rate becomes the pretrained-start one, unless a model the task trains
    starts from scratch: that rate would stall it, so the base's stays, noted."""
    field, target = f"{task}.training.learning_rate", PRETRAINED_LEARNING_RATES[task]
    rate = fitter.get(field)
    # The tolerance keeps a rate of exactly FROM_SCRATCH_FACTOR times the target (5e-5 for 1e-5) as it is.
    if rate <= FROM_SCRATCH_FACTOR * target * (1 + 1e-9):
        return
    if from_scratch:
        fitter.note(field, rate, f"kept: the {' and '.join(from_scratch)} starts from scratch here, which "
                                 f"{target:g}, a pretrained-start rate, would stall")
    else:
        fitter.suggested(field, target, f"{_RATE_SOURCES[task]} rate for a pretrained start; {rate:g} is over "
                                        f"{FROM_SCRATCH_FACTOR:g}x that, a from-scratch rate")


def _fit_warmup(fitter: _Fitter, task: str) -> None:
    """At most `WARMUP_FRACTION` of the run: a pretrained start needs no long warm-up, and
    a longer one spends the run below its rate (all of it, where it exceeds train_steps)."""
    field = f"{task}.training.warmup_steps"
    steps, current = fitter.get(f"{task}.training.train_steps"), fitter.get(field)
    warmup = max(1, int(steps * WARMUP_FRACTION))
    if current <= warmup:
        return
    share = "longer than the run" if current >= steps else f"{current / steps:.0%} of it"
    fitter.suggested(field, warmup, f"{WARMUP_FRACTION:.0%} of the {steps} train_steps, for a pretrained start; "
                                    f"{current} is {share}")


# --- the whole ----------------------------------------------------------------------------


def check_lengths(config: ExperimentConfig, opened: Mapping[str, PretrainedCheckpoint]) -> None:
    """Raises `CheckpointError` if a packing is longer than a checkpoint's position table;
    the lengths are the user's to shorten (packings shape the corpus), never silently cut."""
    for role, checkpoint in opened.items():
        limit = checkpoint.encoder_sizes["max_position_embeddings"]
        over = [(f"features.{name}", getattr(config.features, name)) for name in _LENGTHS[role]
                if getattr(config.features, name) > limit]
        if over:
            raise CheckpointError(
                f"{checkpoint.path}: the {role} checkpoint reads at most {limit} wordpieces "
                f"(max_position_embeddings), fewer than {' and '.join(f'{f} = {v}' for f, v in over)}; pass "
                + " ".join(f"--override {field}={limit}" for field, _ in over) + " or shorter")


def _validate(config: ExperimentConfig) -> None:
    """`validate_config`, its error saying that it is the fitted config (base, overrides and
    checkpoints together) that would not load."""
    try:
        validate_config(config)
    except ConfigError as error:
        raise ConfigError(f"the fitted config would not load: {error}") from error

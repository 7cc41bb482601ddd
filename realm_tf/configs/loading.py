"""Loads an `ExperimentConfig` from a YAML file in `configs/` plus `key.path=value` overrides.

Unknown keys and values of the wrong type are errors that name the key and the file,
so a typo in a YAML never trains with a silently ignored setting.
"""

import dataclasses
import pathlib
from typing import Any, Iterable, List, Mapping, Sequence, Set

import yaml

from realm_tf.configs.experiment import (ONTONOTES_ENTITY_TYPES, PROJECTION_INITIALIZERS, REORDER_DTYPES,
                                         ExperimentConfig)
from realm_tf.errors import RealmError

_SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The named configs: configs/*.yaml at the top of a source checkout (an editable install
# reads them there); a built package carries copies in realm_tf/configs/named/ (setup.py).
CONFIG_DIR = (_SOURCE_ROOT / "configs" if (_SOURCE_ROOT / "setup.cfg").is_file()
              else pathlib.Path(__file__).resolve().parent / "named")


class ConfigError(RealmError, ValueError):
    """A config file, override or value that cannot be used."""


def resolve_config_path(name_or_path: str) -> pathlib.Path:
    """Returns the YAML for `name_or_path`: a path, or a name in `configs/` ("tiny", "base")."""
    path = pathlib.Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {name_or_path}")
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(
            f"unknown config {name_or_path!r}: not a file, and not one of {known} in {CONFIG_DIR}"
        )
    return named


def load_config(name_or_path: str = "tiny", overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Builds the config: defaults (the paper's sizes) <- YAML <- overrides, then validates.

    Args:
      name_or_path: a YAML path, or the name of one in `configs/`.
      overrides: strings `dotted.key=value`, the value parsed as YAML
        (e.g. `ict.training.batch_size=8`, `retriever.share_towers=false`).

    Raises:
      ConfigError: naming the file, key or value that is wrong.
    """
    path = resolve_config_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(values).__name__}")
    config = ExperimentConfig()
    _override(config, values, source=str(path))
    apply_overrides(config, overrides)
    validate_config(config)
    return config


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> Set[str]:
    """Applies `dotted.key=value` overrides (the value parsed as YAML) onto `config`, strictly,
    without validating the whole: `load_config` validates after, and a config fitted to a
    checkpoint takes the checkpoint's sizes first (a head count that fits the checkpoint's
    width need not fit the base's). Returns every dotted field they set."""
    fields: Set[str] = set()
    for override in overrides:
        key, sep, raw = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form dotted.key=value")
        try:
            nested = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {override!r}: the value is not valid YAML ({error})") from error
        fields.update(_leaves(key, nested))
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _override(config, nested, source=f"override {override!r}")
    return fields


def _leaves(key: str, value) -> List[str]:
    """The dotted fields a value sets: `a.b={c: 1}` sets `a.b.c`."""
    if not isinstance(value, Mapping):
        return [key]
    return [leaf for name, inner in value.items() for leaf in _leaves(f"{key}.{name}", inner)]


def save_config(config: ExperimentConfig, path) -> None:
    """Writes every value of `config` as YAML that `load_config(path)` reads back equal."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by realm_tf: the full config this model was trained with.\n")
        yaml.safe_dump(config.as_dict(), f, sort_keys=False)


def _override(config, values: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Strictly applies nested `values` onto `config`, checking every key and type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {dotted!r} (known here: {sorted(fields)})")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted!r} is a section and needs a mapping, got {value!r}")
            _override(current, value, source, prefix=f"{dotted}.")
            continue
        setattr(config, key, _coerce(value, type(current), dotted, source))


def _coerce(value: Any, expected: type, dotted: str, source: str) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-5" (no dot) as a string.
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: {dotted!r} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def validate_config(config: ExperimentConfig) -> None:
    """Checks the relations between fields that a wrong YAML could break."""
    f = config.features
    _require(f.query_length >= 3, "features.query_length", f.query_length, "must be at least 3")
    _require(f.block_length >= 4, "features.block_length", f.block_length, "must be at least 4")
    _require(
        f.reader_length > f.query_length,
        "features.reader_length",
        f.reader_length,
        f"must exceed features.query_length ({f.query_length}) to leave room for the block",
    )
    max_title = (f.block_length - 3) // 2
    _require(
        1 <= config.corpus.max_title_tokens <= max_title,
        "corpus.max_title_tokens",
        config.corpus.max_title_tokens,
        f"must be in [1, {max_title}] so the body keeps at least half of features.block_length",
    )
    for name, encoder, longest in (
        ("retriever.encoder", config.retriever.encoder, max(f.query_length, f.block_length)),
        ("reader.encoder", config.reader.encoder, f.reader_length),
    ):
        _require(
            encoder.hidden_size % encoder.num_attention_heads == 0,
            f"{name}.hidden_size",
            encoder.hidden_size,
            f"must be divisible by num_attention_heads ({encoder.num_attention_heads})",
        )
        _require(
            encoder.max_position_embeddings >= longest,
            f"{name}.max_position_embeddings",
            encoder.max_position_embeddings,
            f"must cover the longest input it reads ({longest} wordpieces)",
        )
    for name in ("ict", "pretrain", "finetune"):
        training = getattr(config, name).training
        for field in ("batch_size", "checkpoint_every_steps", "summary_every_steps"):
            value = getattr(training, field)
            _require(value >= 1, f"{name}.training.{field}", value, "must be positive")
        # Zero steps is a run that only evaluates and exports its starting weights (a
        # pretrained checkpoint's zero-shot retriever, say).
        _require(training.train_steps >= 0, f"{name}.training.train_steps", training.train_steps,
                 "must not be negative")
        _require(
            training.learning_rate > 0, f"{name}.training.learning_rate", training.learning_rate, "must be positive"
        )
    for name in ("pretrain.top_k", "finetune.top_k", "pretrain.refresh_every_steps", "pretrain.max_masked_tokens"):
        section, field = name.split(".")
        value = getattr(getattr(config, section), field)
        _require(value >= 1, name, value, "must be positive")
    for field in ("training_sample_size", "dims_per_block", "reorder_num_neighbors", "keep_versions",
                  "embed_batch_size"):
        value = getattr(config.index, field)
        _require(value >= 1, f"index.{field}", value, "must be positive")
    for field in ("exact_below", "num_leaves", "num_leaves_to_search"):
        value = getattr(config.index, field)
        _require(value >= 0, f"index.{field}", value, "must not be negative")
    _require(config.index.reorder_dtype in REORDER_DTYPES, "index.reorder_dtype", config.index.reorder_dtype,
             f"must be one of {list(REORDER_DTYPES)}")
    _require(0 <= config.ict.heldout_percent < 100, "ict.heldout_percent", config.ict.heldout_percent,
             "must be in [0, 100)")
    _require(config.finetune.retriever_beam_size >= config.finetune.top_k, "finetune.retriever_beam_size",
             config.finetune.retriever_beam_size, f"must be at least finetune.top_k ({config.finetune.top_k})")
    _require(config.pretrain.top_k >= 2, "pretrain.top_k", config.pretrain.top_k,
             "must be at least 2 (the null document and one retrieved block)")
    reader = config.reader
    _require(0 <= reader.trainable_layers <= reader.encoder.num_layers, "reader.trainable_layers",
             reader.trainable_layers, f"must be in [0, reader.encoder.num_layers = {reader.encoder.num_layers}]")
    _require(config.retriever.pooling in ("cls", "mean"), "retriever.pooling", config.retriever.pooling,
             "must be 'cls' or 'mean'")
    retriever = config.retriever
    _require(retriever.projection_initializer in PROJECTION_INITIALIZERS, "retriever.projection_initializer",
             retriever.projection_initializer, f"must be one of {list(PROJECTION_INITIALIZERS)}")
    _require(retriever.projection_initializer != "identity" or retriever.projection_size == retriever.encoder.hidden_size,
             "retriever.projection_size", retriever.projection_size,
             f"must be retriever.encoder.hidden_size ({retriever.encoder.hidden_size}) for an identity "
             "retriever.projection_initializer")
    _require(config.retriever.projection_norm_gain > 0, "retriever.projection_norm_gain",
             config.retriever.projection_norm_gain, "must be positive")
    _require(config.pretrain.masking in ("salient", "random"), "pretrain.masking", config.pretrain.masking,
             "must be 'salient' or 'random'")
    types = config.pretrain.salient_entity_types
    _require(isinstance(types, (list, tuple)) and types and set(types) <= set(ONTONOTES_ENTITY_TYPES),
             "pretrain.salient_entity_types", types, f"must be a non-empty list of {list(ONTONOTES_ENTITY_TYPES)}")
    _require(0 < config.pretrain.random_mask_probability <= 1, "pretrain.random_mask_probability",
             config.pretrain.random_mask_probability, "must be in (0, 1]")
    p = config.ict.remove_sentence_probability
    _require(0.0 <= p <= 1.0, "ict.remove_sentence_probability", p, "must be in [0, 1]")
    _require(config.finetune.retrieval in ("index", "hybrid"), "finetune.retrieval", config.finetune.retrieval,
             "must be 'index' or 'hybrid'")
    hybrid = config.index.hybrid
    _require(hybrid.fusion in ("rrf", "interpolation"), "index.hybrid.fusion", hybrid.fusion,
             "must be 'rrf' or 'interpolation'")
    _require(0.0 <= hybrid.dense_weight <= 1.0, "index.hybrid.dense_weight", hybrid.dense_weight, "must be in [0, 1]")
    _require(hybrid.candidates >= 1, "index.hybrid.candidates", hybrid.candidates, "must be positive")
    _require(hybrid.k1 > 0, "index.hybrid.k1", hybrid.k1, "must be positive")
    _require(0.0 <= hybrid.b <= 1.0, "index.hybrid.b", hybrid.b, "must be in [0, 1]")
    _require(hybrid.rrf_constant >= 0, "index.hybrid.rrf_constant", hybrid.rrf_constant, "must not be negative")
    sentences = config.index.sentence_vectors
    _require(0.0 <= sentences.block_weight <= 1.0, "index.sentence_vectors.block_weight", sentences.block_weight,
             "must be in [0, 1]")
    _require(sentences.rescore_depth >= 1, "index.sentence_vectors.rescore_depth", sentences.rescore_depth,
             "must be positive")


def _require(ok: bool, field: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config field {field} = {value!r} {rule}")

"""Typed experiment configs (Model Garden `hyperparams.Config` dataclasses) and their YAML loader."""

from realm_tf.configs.experiment import (
    BertConfig,
    CorpusConfig,
    ExperimentConfig,
    FeaturesConfig,
    FinetuneConfig,
    HybridConfig,
    IctConfig,
    IndexConfig,
    PretrainConfig,
    ReaderConfig,
    RetrieverConfig,
    TrainingConfig,
)
from realm_tf.configs.loading import CONFIG_DIR, ConfigError, load_config, save_config

__all__ = [
    "BertConfig",
    "CONFIG_DIR",
    "ConfigError",
    "CorpusConfig",
    "ExperimentConfig",
    "FeaturesConfig",
    "FinetuneConfig",
    "HybridConfig",
    "IctConfig",
    "IndexConfig",
    "PretrainConfig",
    "ReaderConfig",
    "RetrieverConfig",
    "TrainingConfig",
    "load_config",
    "save_config",
]

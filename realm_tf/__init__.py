"""realm-tf: REALM (Guu et al. 2020) in TensorFlow 2 on TF Model Garden BERT.

Importing this package selects the legacy Keras (tf_keras) before TensorFlow is
imported: Model Garden and tensorflow-recommenders build tf_keras objects, and
mixing them with Keras 3 silently drops weights.
"""

import logging
import os
import sys
import warnings

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    warnings.warn(
        "TensorFlow was imported before realm_tf without TF_USE_LEGACY_KERAS=1; "
        "tf.keras may be Keras 3, which Model Garden models do not support. "
        "Set TF_USE_LEGACY_KERAS=1 before importing TensorFlow.",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"


def _has_gpu_device_node() -> bool:
    """Whether the machine exposes an NVIDIA (or WSL) GPU device to this process."""
    return any(os.path.exists(path) for path in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"))


# TensorFlow's C++ log lines (oneDNN and CPU-feature INFO; on a machine with no GPU, the
# ERROR that cuInit failed) say nothing a user can act on: hide them unless asked for.
# On a CPU-only machine the level hides C++ errors too; those that matter reach Python
# as exceptions. TF_CPP_MIN_LOG_LEVEL=0 shows everything again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if _has_gpu_device_node() else "3")


class _DropNoise(logging.Filter):
    """Drops warnings a user cannot act on: Beam's import-time ones about optional Google Cloud
    clients this project does not use locally (GCS, BigQuery; `pip install -e '.[gcp]'`
    installs them for Dataflow), and tf_keras' note, at every SavedModel export, that the
    project's subclassed models keep no Keras config (the exports are tf.Modules with
    signatures, never rebuilt from a Keras config)."""

    _MESSAGES = ("Failed to import GCSFileSystem", "apitools not found",
                 "Model's `__init__()` arguments contain non-serializable objects")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.getMessage().startswith(message) for message in self._MESSAGES)


# "": the root logger Beam's BigQuery stub logs to; "tensorflow": tf.get_logger().
for _logger_name in ("", "apache_beam.io.filesystems", "tensorflow"):
    logging.getLogger(_logger_name).addFilter(_DropNoise())

__version__ = "0.1.0"

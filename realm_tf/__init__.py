"""realm-tf: REALM (Guu et al. 2020) in TensorFlow 2 on TF Model Garden BERT.

Importing this package selects the legacy Keras (tf_keras) before TensorFlow is
imported: Model Garden and tensorflow-recommenders build tf_keras objects, and
mixing them with Keras 3 silently drops weights (DESIGN.md §2).
"""

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
# Hide TensorFlow C++ INFO lines (oneDNN, CPU features) unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"

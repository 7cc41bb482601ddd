"""A TF Serving model root, as `python -m realm_tf.export` writes it by default.

    <root>/
      <model_name>/<version>/     QA exports (artifacts.qa_export); TF Serving serves the
                                  highest integer version of each base path
      models.config               every model whose newest version is an exact or hybrid
                                  export or retriever, or a reader (stock TF Serving
                                  cannot load ScaNN ones)
      batching_parameters.txt     server-side batching up to the exports' reader_batch_size

for `tensorflow_model_server --model_config_file=<root>/models.config --enable_batching
--batching_parameters_file=<root>/batching_parameters.txt`.
"""

import json
import os

from realm_tf.artifacts.qa_export import QaExportError, QaExportInfo

MODELS_CONFIG = "models.config"
# The retrieval kinds whose exports need only TF core and TF Text ops.
STOCK_RETRIEVALS = ("exact", "hybrid")
BATCHING_PARAMETERS = "batching_parameters.txt"
# Server-side batching: how long a request may wait for others to share its batch, and
# how many batches may queue (then requests are refused rather than left waiting).
BATCH_TIMEOUT_MICROS = 5000
MAX_ENQUEUED_BATCHES = 100


def next_version_dir(base_path: str) -> str:
    """`base_path/<n>` with n one more than the largest integer version there (1 if none)."""
    versions = [int(name) for name in os.listdir(base_path) if name.isdigit()] if os.path.isdir(base_path) else []
    return os.path.join(base_path, str(max(versions, default=0) + 1))


def _stock_ops_only(base_path: str) -> bool:
    """Whether the newest QA export under a model's base path needs only TF core and TF Text
    ops: an exact or hybrid export or retriever, or any reader part."""
    versions = sorted((int(name) for name in os.listdir(base_path) if name.isdigit()), reverse=True)
    try:
        info = QaExportInfo.read(os.path.join(base_path, str(versions[0])))
    except (IndexError, QaExportError):
        return False
    return info.retrieval in STOCK_RETRIEVALS or info.part == "reader"


def _write_atomically(path: str, text: str) -> None:
    # A server polling the file must never read half of it.
    staging = f"{path}.tmp-{os.getpid()}"
    with open(staging, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(staging, path)


def write_serving_files(root: str, reader_batch_size: int) -> None:
    """(Re)writes `root/models.config` and `root/batching_parameters.txt` (protobuf text format)."""
    lines = ["# Written by python -m realm_tf.export: the exact and hybrid exports and retrievers, and the readers,",
             "# under this root. ScaNN ones need a TF Serving built with the ScaNN ops and are left out.",
             "model_config_list {"]
    for name in sorted(os.listdir(root)):
        base_path = os.path.abspath(os.path.join(root, name))
        if os.path.isdir(base_path) and _stock_ops_only(base_path):
            lines += ["  config {", f"    name: {json.dumps(name)}", f"    base_path: {json.dumps(base_path)}",
                      '    model_platform: "tensorflow"', "  }"]
    _write_atomically(os.path.join(root, MODELS_CONFIG), "\n".join(lines + ["}", ""]))
    _write_atomically(os.path.join(root, BATCHING_PARAMETERS), "\n".join([
        "# Written by python -m realm_tf.export: the export reads reader_batch_size questions at a time.",
        f"max_batch_size {{ value: {reader_batch_size} }}",
        f"batch_timeout_micros {{ value: {BATCH_TIMEOUT_MICROS} }}",
        f"max_enqueued_batches {{ value: {MAX_ENQUEUED_BATCHES} }}",
        f"num_batch_threads {{ value: {os.cpu_count() or 1} }}",
        ""]))

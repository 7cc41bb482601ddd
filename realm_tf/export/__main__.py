"""Exports a fine-tuned open-QA model as a SavedModel that answers questions: `python -m realm_tf.export`.

    python -m realm_tf.export --model_dir runs/quickstart/finetune --retrieval exact
    python -m realm_tf.export --model_dir runs/quickstart/finetune --retrieval scann \\
        --blocks_dir runs/more_blocks --index runs/more_index      # re-indexed, not retrained

The export takes `questions` (string [B]) and returns the answer, its score and block,
and the top-k blocks with titles, texts and retrieval probabilities; `answer_with_options`
also takes `k` and `max_answer_length` (see realm_tf/export/qa_export.py).

--retrieval exact (matmul + top_k) uses only TF core and TF Text ops: stock TF Serving
serves it. --retrieval scann needs the ScaNN ops: the Python predictor (`import scann`
before loading) or a TF Serving built with them.

The output defaults to TF Serving's layout, the next integer version under
<output_root>/<model_name>/, with model_name realm_qa (exact) or realm_qa_scann (scann):
kept apart because TF Serving serves the newest version of a base path, which must not
be one whose ops it lacks. Beside the models the command then (re)writes, for
`tensorflow_model_server --model_config_file=saved_models/models.config --enable_batching
--batching_parameters_file=saved_models/batching_parameters.txt`:

  models.config             every model under output_root whose newest version is an
                            exact export (stock TF Serving cannot load ScaNN ones)
  batching_parameters.txt   server-side batching up to --reader_batch_size questions

--output writes the export there instead, and no serving files. --blocks_dir and --index
default to those the model was fine-tuned with; others (a grown corpus, embedded with the
same document tower) re-index without retraining.
"""

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, run_command

MODEL_NAMES = {"exact": "realm_qa", "scann": "realm_qa_scann"}
MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
# Server-side batching: how long a request may wait for others to share its batch, and
# how many batches may queue (then requests are refused rather than left waiting).
BATCH_TIMEOUT_MICROS = 5000
MAX_ENQUEUED_BATCHES = 100


def build_arg_parser() -> argparse.ArgumentParser:
    from realm_tf.export.qa_export import DEFAULT_MAX_K

    parser = argparse.ArgumentParser(prog="python -m realm_tf.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="a --task=finetune model_dir")
    parser.add_argument("--output", help="export directory, must not exist (default: the next version under "
                                         "<output_root>/<model_name>/, with the serving files)")
    parser.add_argument("--output_root", default="saved_models", help="TF Serving model root (default: %(default)s)")
    parser.add_argument("--model_name", help="model (base path) under --output_root "
                                             "(default: realm_qa for exact, realm_qa_scann for scann)")
    parser.add_argument("--retrieval", choices=("scann", "exact"), default="scann",
                        help="retrieval in the graph (default: %(default)s)")
    parser.add_argument("--blocks_dir", help="chunked corpus (default: the one fine-tuning used)")
    parser.add_argument("--index", help="index version or root (default: the version fine-tuning used)")
    parser.add_argument("--top_k", type=int, help="blocks read per question (default: finetune.top_k)")
    parser.add_argument("--max_answer_length", type=int,
                        help="longest answer in wordpieces (default: reader.max_span_length)")
    parser.add_argument("--max_k", type=int, default=DEFAULT_MAX_K,
                        help="the most blocks a request may have read per question (answer_with_options' k), "
                             "bounding a request's memory; at most the index's blocks (default: %(default)s)")
    parser.add_argument("--reader_batch_size", type=int, default=16,
                        help="questions read at once at top_k blocks each (fewer at a larger k), bounding the "
                             "memory of large batches (default: %(default)s)")
    return add_verbose_flag(parser)


def next_version_dir(base_path: str) -> str:
    """`base_path/<n>` with n one more than the largest integer version there (1 if none)."""
    versions = [int(name) for name in os.listdir(base_path) if name.isdigit()] if os.path.isdir(base_path) else []
    return os.path.join(base_path, str(max(versions, default=0) + 1))


def _newest_retrieval(base_path: str) -> Optional[str]:
    """The retrieval kind of the newest QA export under a model's base path, or None."""
    from realm_tf.export.qa_export import QaExportError, read_qa_metadata

    versions = sorted((int(name) for name in os.listdir(base_path) if name.isdigit()), reverse=True)
    try:
        return read_qa_metadata(os.path.join(base_path, str(versions[0]))).get("retrieval")
    except (IndexError, QaExportError):
        return None


def _write_atomically(path: str, text: str) -> None:
    # A server polling the file must never read half of it.
    staging = f"{path}.tmp-{os.getpid()}"
    with open(staging, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(staging, path)


def write_serving_files(root: str, reader_batch_size: int) -> None:
    """(Re)writes `root/models.config` and `root/batching_parameters.txt` (protobuf text format)."""
    lines = ["# Written by python -m realm_tf.export: the exact exports under this root. ScaNN exports",
             "# need a TF Serving built with the ScaNN ops and are left out.",
             "model_config_list {"]
    for name in sorted(os.listdir(root)):
        base_path = os.path.abspath(os.path.join(root, name))
        if os.path.isdir(base_path) and _newest_retrieval(base_path) == "exact":
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


def run(argv: Optional[Sequence[str]] = None) -> str:
    """Exports; returns the export directory."""
    from realm_tf.export.qa_export import export_qa_model

    args = build_arg_parser().parse_args(argv)
    base_path = os.path.join(args.output_root, args.model_name or MODEL_NAMES[args.retrieval])
    output = args.output or next_version_dir(base_path)
    export_qa_model(args.model_dir, output, retrieval=args.retrieval, blocks_dir=args.blocks_dir, index=args.index,
                    top_k=args.top_k, max_answer_length=args.max_answer_length, max_k=args.max_k,
                    reader_batch_size=args.reader_batch_size)
    if not args.output:
        write_serving_files(args.output_root, args.reader_batch_size)
    return output


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, lambda path: f"exported to {path}", argv)


if __name__ == "__main__":
    sys.exit(main())

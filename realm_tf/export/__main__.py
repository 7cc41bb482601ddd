"""Exports a fine-tuned open-QA model as a SavedModel that answers questions: `python -m realm_tf.export`.

    python -m realm_tf.export --model_dir runs/quickstart/finetune --retrieval exact
    python -m realm_tf.export --model_dir runs/quickstart/finetune --retrieval scann \\
        --blocks_dir runs/more_blocks --index runs/more_index      # re-indexed, not retrained

The export takes `questions` (string [B]) and returns the answer, its score and block,
and the top-k blocks with titles, texts and retrieval probabilities; `answer_with_options`
also takes `k` and `max_answer_length` (see realm_tf/export/qa_export.py).

--retrieval exact (matmul + top_k) uses only TF core and TF Text ops: stock TF Serving
serves it. --retrieval scann needs the ScaNN ops: the Python predictor (`import scann`
before loading) or a TF Serving built with them. --retrieval hybrid (exact) and
scann_hybrid add BM25 over WordPiece ids (the index version's lexical index, or one
built from the blocks) and fuse the two rankings as the run config's index.hybrid says;
each evidence block says which retriever found it (retrieved_by) with both scores.

The output defaults to TF Serving's layout, the next integer version under
<output_root>/<model_name>/, with model_name realm_qa (exact), realm_qa_scann (scann),
realm_qa_hybrid (hybrid) or realm_qa_scann_hybrid (scann_hybrid):
kept apart because TF Serving serves the newest version of a base path, which must not
be one whose ops it lacks. Beside the models the command then (re)writes, for
`tensorflow_model_server --model_config_file=saved_models/models.config --enable_batching
--batching_parameters_file=saved_models/batching_parameters.txt`:

  models.config             every model under output_root whose newest version is an
                            exact or hybrid export (stock TF Serving cannot load ScaNN ones)
  batching_parameters.txt   server-side batching up to --reader_batch_size questions

--parts two writes a two-part deployment instead, for corpora whose texts are too many to
hold in a server's memory: a retriever (the query tower and the index, no text) under
realm_retriever[_scann|_hybrid|_scann_hybrid] and a reader (the model alone) under
realm_reader; the blocks' texts are looked up between them from the block store
(realm_tf.serving.two_part.TwoPartPredictor).

--output writes the export there instead (a two-part one to <output>/retriever and
<output>/reader), and no serving files. --blocks_dir and --index
default to those the model was fine-tuned with; others (a grown corpus, embedded with the
same document tower) re-index without retraining.
"""

import argparse
import sys
from typing import Optional, Sequence

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from realm_tf.cli import add_verbose_flag, run_command



def build_arg_parser() -> argparse.ArgumentParser:
    from realm_tf.export.qa_export import DEFAULT_MAX_K, DEFAULT_READER_BATCH_SIZE, PARTS, RETRIEVAL_KINDS

    parser = argparse.ArgumentParser(prog="python -m realm_tf.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="a --task=finetune model_dir")
    parser.add_argument("--output", help="export directory, must not exist (default: the next version under "
                                         "<output_root>/<model_name>/, with the serving files)")
    parser.add_argument("--output_root", default="saved_models", help="TF Serving model root (default: %(default)s)")
    parser.add_argument("--model_name", help="model (base path) under --output_root (default: realm_qa for "
                                             "exact, realm_qa_scann for scann, realm_qa_hybrid for hybrid, "
                                             "realm_qa_scann_hybrid for scann_hybrid)")
    parser.add_argument("--retrieval", choices=RETRIEVAL_KINDS, default="scann",
                        help="retrieval in the graph: dense by ScaNN or exactly, or either with lexical retrieval "
                        "fused (hybrid: exact) (default: %(default)s)")
    parser.add_argument("--parts", choices=PARTS, default="one",
                        help="one SavedModel holding the blocks, or two: a retriever and a reader, the blocks' texts "
                             "looked up from the block store between them (default: %(default)s)")
    parser.add_argument("--blocks_dir", help="chunked corpus (default: the one fine-tuning used)")
    parser.add_argument("--index", help="index version or root (default: the version fine-tuning used)")
    parser.add_argument("--top_k", type=int, help="blocks read per question (default: finetune.top_k)")
    parser.add_argument("--max_answer_length", type=int,
                        help="longest answer in wordpieces (default: reader.max_span_length)")
    parser.add_argument("--max_k", type=int, default=DEFAULT_MAX_K,
                        help="the most blocks a request may have read per question (answer_with_options' k), "
                             "bounding a request's memory; at most the index's blocks (default: %(default)s)")
    parser.add_argument("--reader_batch_size", type=int, default=DEFAULT_READER_BATCH_SIZE,
                        help="questions read at once at top_k blocks each (fewer at a larger k), bounding the "
                             "memory of large batches (default: %(default)s)")
    return add_verbose_flag(parser)


def run(argv: Optional[Sequence[str]] = None):
    """Exports; returns the export directory (the two parts' directories with --parts two)."""
    from realm_tf.export.qa_export import export_for_serving

    args = build_arg_parser().parse_args(argv)
    return export_for_serving(args.model_dir, output=args.output, output_root=args.output_root,
                              model_name=args.model_name, retrieval=args.retrieval, blocks_dir=args.blocks_dir,
                              index=args.index, top_k=args.top_k, max_answer_length=args.max_answer_length,
                              max_k=args.max_k, reader_batch_size=args.reader_batch_size, parts=args.parts)


def _exported(paths) -> str:
    if isinstance(paths, str):
        return f"exported to {paths}"
    return "exported the retriever to {} and the reader to {}".format(*paths)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, _exported, argv)


if __name__ == "__main__":
    sys.exit(main())

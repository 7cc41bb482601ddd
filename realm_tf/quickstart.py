"""The end-to-end job on the embedded corpus: `python -m realm_tf.quickstart`.

Runs each stage of the REALM data flow (DESIGN.md §2) with the tiny config and prints
where its outputs are. Stages so far:

  chunk   the embedded SQuAD-open corpus -> blocks (beam_pipelines.chunk_corpus, DirectRunner)

Later stages (ICT warm start, indexing, pre-training, fine-tuning, evaluation, export)
join this list as they are built.
"""

import argparse
import pathlib
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

ASSETS_DIR = pathlib.Path(__file__).resolve().parent / "assets"
DEFAULT_CORPUS = ASSETS_DIR / "squad_open" / "corpus.jsonl"


def _chunk_stage(args) -> List[str]:
    from beam_pipelines import chunk_corpus

    blocks_dir = args.workdir / "blocks"
    manifest = chunk_corpus.run(
        [
            f"--input={args.corpus}",
            f"--output_dir={blocks_dir}",
            f"--config={args.config}",
            "--overwrite",
            "--runner=DirectRunner",
        ]
    )
    return chunk_corpus.summarize(manifest, str(blocks_dir)).splitlines()


STAGES: List[Tuple[str, str, Callable]] = [
    ("chunk", "chunk the corpus into blocks (Beam, DirectRunner)", _chunk_stage),
]


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m realm_tf.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/quickstart"),
                        help="where every stage writes its outputs (default: %(default)s)")
    parser.add_argument("--config", default="tiny", help="config name or YAML path (default: %(default)s)")
    parser.add_argument("--corpus", type=pathlib.Path, default=DEFAULT_CORPUS,
                        help="documents as JSONL with id, title, text (default: the embedded SQuAD-open corpus)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_arg_parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = []
    for number, (name, title, stage) in enumerate(STAGES, start=1):
        print(f"[{number}/{len(STAGES)}] {name}: {title} ...", flush=True)
        stage_started = time.monotonic()
        lines = stage(args)
        seconds = time.monotonic() - stage_started
        print(f"[{number}/{len(STAGES)}] {name}: done in {seconds:.1f}s", flush=True)
        report.append((name, seconds, lines))
    print("\nSummary")
    for name, seconds, lines in report:
        print(f"- {name} ({seconds:.1f}s)")
        for line in lines:
            print(f"    {line}")
    print(f"Total {time.monotonic() - started:.1f}s; outputs under {args.workdir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lexical retriever at scale: `python -m benchmarks.lexical_scale [--num_blocks 1000000]`.

Writes N synthetic blocks straight into a compact block store (uint16 token arrays, no
texts: the lexical index reads only the ids), then, each stage in its own process so
that its peak RSS is its own:

  build  `LexicalIndex.from_block_arrays` over every block, then saved: seconds, peak RSS,
         postings and bytes a block;
  serve  the saved index loaded into a `LexicalScorer` (its arrays become TF variables, as
         in a hybrid export): RSS after the load, and one question at a time (qa_dev
         questions, tokenized by the Featurizer) scored over all N and its top 100 taken,
         p50/p99, against the dense exact search of the exact export (a matmul of the query
         with N x 128 float32 embeddings and top_k) timed in turns in the same process:
         what the lexical part adds to a hybrid export's retrieval.

What is synthetic: the tokens. Each block is a 10-token title and a 270-token body of
whole-word ids drawn from a Zipf law (exponent 1.1) over the vocabulary's words in id
order, so a block holds about as many distinct terms as English text does; real text's
terms are not independent of each other, which these are.
"""

import argparse
import pathlib
import shutil
import time
from typing import Dict, Optional, Sequence

import numpy as np

from benchmarks import common

RESULTS = common.RESULTS_DIR / "lexical_scale.json"
TITLE_TOKENS, BODY_TOKENS = 10, 270
ZIPF_EXPONENT = 1.1
DIM = 128
CANDIDATES = 100
_BATCH = 1 << 15


def write_synthetic_store(directory: pathlib.Path, num_blocks: int, seed: int = 0) -> Dict:
    """N synthetic blocks as a compact block store in `directory`; returns {"distinct_terms_per_block"}."""
    from realm_tf.artifacts.block_arrays import BlockBatch, write_block_arrays
    from realm_tf.features import BUNDLED_VOCAB_PATH, Vocabulary

    vocabulary = Vocabulary.from_file(BUNDLED_VOCAB_PATH)
    words = np.array([i for i, w in enumerate(vocabulary.tokens()) if w.isalpha() and w.isascii() and len(w) > 1])
    weights = 1.0 / np.arange(1, len(words) + 1) ** ZIPF_EXPONENT
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    distinct = []

    def batches():
        for start in range(0, num_blocks, _BATCH):
            n = min(_BATCH, num_blocks - start)
            titles = rng.choice(words, size=n * TITLE_TOKENS, p=weights)
            bodies = rng.choice(words, size=(n, BODY_TOKENS), p=weights)
            distinct.append(np.mean([len(np.unique(row)) for row in bodies[:64]]))
            empty = [b""] * n
            yield BlockBatch(block_ids=np.arange(start, start + n, dtype=np.int64), doc_ids=empty, titles=empty,
                             texts=empty, title_ids=titles, title_lengths=np.full(n, TITLE_TOKENS),
                             body_ids=bodies.reshape(-1), body_lengths=np.full(n, BODY_TOKENS),
                             begins=np.zeros(n * BODY_TOKENS, np.int64), ends=np.zeros(n * BODY_TOKENS, np.int64),
                             located=np.zeros(n, bool))

    write_block_arrays(str(directory), batches(), "synthetic", vocabulary.sha256)
    return {"distinct_body_terms_per_block": round(float(np.mean(distinct)), 1)}


def run_stage(stage: str, workdir: str, num_queries: str) -> None:
    """One stage in this process; prints its figures as one JSON line."""
    import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from realm_tf.artifacts.block_arrays import BlockArrays
    from realm_tf.features import BUNDLED_VOCAB_PATH, Vocabulary
    from realm_tf.retrieval.lexical_index import LexicalIndex

    work = pathlib.Path(workdir)
    figures: Dict = {"rss_after_imports_bytes": common.rss_bytes()}
    started = time.perf_counter()
    if stage == "build":
        index = LexicalIndex.from_block_arrays(BlockArrays(str(work / "store")), Vocabulary.from_file(BUNDLED_VOCAB_PATH))
        figures["build_seconds"] = round(time.perf_counter() - started, 2)
        index.save(str(work / "lexical"))
        figures.update(postings=index.num_postings, bytes=index.nbytes,
                       bytes_per_block=round(index.nbytes / index.num_blocks, 1),
                       postings_per_block=round(index.num_postings / index.num_blocks, 1))
    elif stage == "serve":
        import tensorflow as tf

        from realm_tf.configs import FeaturesConfig
        from realm_tf.evaluation.qa_data import read_qa
        from realm_tf.features import Featurizer
        from realm_tf.retrieval.lexical_index import LexicalScorer

        scorer = LexicalScorer(LexicalIndex.load(str(work / "lexical"), verify=False))
        figures["load_seconds"] = round(time.perf_counter() - started, 2)
        figures["rss_after_load_bytes"] = common.rss_bytes()
        embeddings = tf.constant(np.random.default_rng(1).normal(size=(scorer.num_blocks, DIM)).astype(np.float32))
        featurizer = Featurizer(FeaturesConfig())
        questions = [e.question for e in read_qa(str(common.QA_DIR / "qa_dev.jsonl"))][:int(num_queries) + 1]
        lexical = tf.function(lambda tokens: scorer.search_rows(tokens, CANDIDATES)[0])
        dense = tf.function(lambda query: tf.math.top_k(tf.matmul(query, embeddings, transpose_b=True),
                                                        CANDIDATES).indices)
        inputs = [(featurizer.tokenize(tf.constant([q])), tf.random.normal([1, DIM])) for q in questions]
        seconds, _ = common.timed_in_turns({"lexical": lambda x: lexical(x[0]).numpy(),
                                            "dense_exact": lambda x: dense(x[1]).numpy()}, inputs, warmup=1)
        figures["one_question"] = {name: common.latency_ms(s) for name, s in seconds.items()}
        figures["rss_at_end_bytes"] = common.rss_bytes()
    else:
        raise ValueError(f"unknown stage {stage!r}")
    common.report_stage(figures, started)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lexical_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_blocks", type=int, default=1_000_000, help="synthetic blocks (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=50, help="questions timed one at a time (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/lexical_scale"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"num_blocks": 1, "queries": 1})
    machine = common.machine_info()
    shutil.rmtree(args.workdir, ignore_errors=True)
    started = time.perf_counter()
    synthetic = write_synthetic_store(args.workdir / "store", args.num_blocks)
    print(f"wrote {args.num_blocks:,} synthetic blocks in {time.perf_counter() - started:.0f}s", flush=True)
    build = common.stage_in_child("benchmarks.lexical_scale", "build", args.workdir, args.queries)
    print(f"built the lexical index in {build['build_seconds']}s: {build['bytes_per_block']} bytes a block, "
          f"peak RSS {build['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    serve = common.stage_in_child("benchmarks.lexical_scale", "serve", args.workdir, args.queries)
    lexical, dense = serve["one_question"]["lexical"], serve["one_question"]["dense_exact"]
    results = {
        "command": common.command_line("benchmarks.lexical_scale", argv),
        "machine": machine,
        "num_blocks": args.num_blocks,
        "synthetic": (f"tokens only: a {TITLE_TOKENS}-token title and a {BODY_TOKENS}-token body of whole-word ids "
                      f"drawn from a Zipf law (exponent {ZIPF_EXPONENT}) over the vocabulary's words"),
        **synthetic,
        "candidates": CANDIDATES,
        "build": build,
        "serve": serve,
        "ratios": {"lexical_p50_over_dense_exact_p50": common.ratio(lexical["p50_ms"], dense["p50_ms"])},
    }
    common.write_results(args.output, results)
    print(f"one question, top {CANDIDATES} of {args.num_blocks:,}: lexical p50 {lexical['p50_ms']} ms, dense exact "
          f"p50 {dense['p50_ms']} ms; RSS after loading the lexical index "
          f"{serve['rss_after_load_bytes'] / 2**30:.2f} GiB", flush=True)
    return results


if __name__ == "__main__":
    main()

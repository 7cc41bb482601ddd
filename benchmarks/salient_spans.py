"""Salient span detectors compared: the rules against spaCy's NER tagger.

    python -m benchmarks.salient_spans [--detectors dates_and_entities,spacy] [--config minilm]
        [--labels benchmarks/data/salient_span_labels.jsonl] [--repeats 2]
        [--workdir runs/bench/spans] [--output FILE] [Beam options, e.g. --direct_num_workers 2
        --direct_running_mode multi_processing]

For each detector (`pretrain.salient_span_detector`; "spacy" needs the ner extra):

  pipeline   beam_pipelines.make_pretraining_examples over the embedded corpus's blocks
             (chunked once with the config, 128 wordpieces in minilm), on the DirectRunner:
             the share of sentences with a detected span, the share masked as a salient span
             (a span of 1 to pretrain.max_masked_tokens wordpieces; the rest fall back to
             random masking), and sentences/s: the detectors take turns, `--repeats` runs
             each, the fastest run counted (each run pays Beam's start and the detector's
             load, as a real run does).
  labelled   the 100 sentences of benchmarks/data/salient_span_labels.jsonl, from the
             paragraphs of the five qa_dev articles, whose named entities and dates were
             labelled by hand (benchmarks/data/README.md gives the rules): of the spans the
             detector finds, the share that are a named entity or a date (inside a labelled
             span: "Tesla" of "Nikola Tesla" is one) and the share that are exactly one; of
             the spans the pipeline may mask (those it can use, drawn uniformly per
             sentence), the expected share that are; and the labelled spans found exactly.

Writes benchmarks/results/salient_spans.json.
"""

import argparse
import json
import pathlib
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "salient_spans.json"
LABELS = pathlib.Path(__file__).resolve().parent / "data" / "salient_span_labels.jsonl"
Span = Tuple[int, int]


def read_labels(path: pathlib.Path) -> List[Dict[str, Any]]:
    """The labelled sentences: {"source", "sentence", "text", "spans": [(start, end), ...]}.

    Each labelled string marks every occurrence of it in the text that is not part of a
    longer word. A string that does not occur is a ValueError naming the file and line.
    """
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        spans = set()
        for name in row["salient"]:
            found = [m.span() for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", row["text"])]
            if not found:
                raise ValueError(f"{path}:{number}: labelled span {name!r} is not in the sentence")
            spans.update(found)
        rows.append({**row, "spans": sorted(spans)})
    return rows


def judge(detected: Sequence[Span], labelled: Sequence[Span]) -> Dict[str, List[bool]]:
    """Per detected span: whether it lies inside a labelled one, and whether it is one."""
    return {"inside": [any(c <= a and b <= d for c, d in labelled) for a, b in detected],
            "exact": [(a, b) in labelled for a, b in detected]}


def usable_spans(text: str, spans: Sequence[Span], tokenize, masking: Dict[str, Any]) -> List[Span]:
    """The spans `mask_sentence` can mask in `text` (each tried alone: it masks it or falls back)."""
    import random

    from realm_tf.features.salient_spans import SALIENT, mask_sentence

    return [span for span in spans
            if (query := mask_sentence(text, tokenize, [span], rng=random.Random(0), **masking)) is not None
            and query.kind == SALIENT]


def score_labelled(detector, rows: List[Dict[str, Any]], tokenize, masking: Dict[str, Any]) -> Dict[str, Any]:
    """The labelled-sentence figures of one detector (see the module docstring)."""
    from realm_tf.features.salient_spans import detect_spans

    found = detect_spans(detector, [row["text"] for row in rows])
    inside, exact, masked_shares, wrong = [], [], [], []
    labelled_found = labelled_total = 0
    for row, spans in zip(rows, found):
        verdict = judge(spans, row["spans"])
        inside += verdict["inside"]
        exact += verdict["exact"]
        wrong += [row["text"][a:b] for (a, b), ok in zip(spans, verdict["inside"]) if not ok]
        usable = usable_spans(row["text"], spans, tokenize, masking)
        if usable:
            masked_shares.append(sum(judge(usable, row["spans"])["inside"]) / len(usable))
        labelled_total += len(row["spans"])
        labelled_found += sum(span in spans for span in row["spans"])
    share = lambda flags: round(sum(flags) / len(flags), 3) if flags else 0.0  # noqa: E731
    return {
        "sentences": len(rows),
        "sentences_with_a_span": sum(bool(spans) for spans in found),
        "spans_found": len(inside),
        "entity_or_date": share(inside),
        "exactly_a_labelled_span": share(exact),
        "sentences_with_a_usable_span": len(masked_shares),
        "masked_span_entity_or_date_expected": round(sum(masked_shares) / len(masked_shares), 3)
        if masked_shares else 0.0,
        "labelled_spans": labelled_total,
        "labelled_spans_found_exactly": round(labelled_found / labelled_total, 3),
        "not_entities_or_dates": wrong,
    }


def run_pipeline(blocks_dir: str, output_dir: pathlib.Path, config, beam_args: Sequence[str]) -> Dict[str, Any]:
    """make_pretraining_examples once: its manifest's counts and the wall seconds."""
    from beam_pipelines import make_pretraining_examples

    started = time.perf_counter()
    manifest = make_pretraining_examples.make_pretraining_examples(blocks_dir, str(output_dir), config,
                                                                   overwrite=True, beam_args=beam_args)
    seconds = time.perf_counter() - started
    sentences = manifest.num_sentences
    return {"seconds": round(seconds, 2), "sentences": sentences,
            "sentences_per_second": round(sentences / seconds, 1),
            "with_a_span": round(1 - manifest.stats["sentences_without_spans"] / sentences, 3),
            "masked_salient": round(manifest.examples_by_kind["salient"] / manifest.num_examples, 3),
            "examples": manifest.num_examples}


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.salient_spans", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="dates_and_entities,spacy",
                        help="comma-separated registered detectors (default: %(default)s)")
    parser.add_argument("--config", default="minilm", help="config name or YAML path (default: %(default)s)")
    parser.add_argument("--labels", type=pathlib.Path, default=LABELS)
    parser.add_argument("--num_docs", type=int, default=0,
                        help="the first this many documents of the embedded corpus (default: all)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="pipeline runs per detector, taking turns (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/spans"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args, beam_args = parser.parse_known_args(argv)
    common.check_at_least(parser, args, {"repeats": 1, "num_docs": 0})
    machine = common.machine_info()
    from beam_pipelines import chunk_corpus
    from realm_tf.configs import load_config
    from realm_tf.features import Featurizer
    from realm_tf.features.salient_spans import get_span_detector, masking_options

    config = load_config(args.config)
    names = [name.strip() for name in args.detectors.split(",") if name.strip()]
    detectors = {name: get_span_detector(name, config.pretrain.salient_entity_types) for name in names}
    rows = read_labels(args.labels)
    featurizer = Featurizer(config.features)
    tokenize = lambda texts: featurizer.tokenize(list(texts)).to_list()  # noqa: E731
    masking = masking_options(config, featurizer.vocabulary)
    labelled = {name: score_labelled(detector, rows, tokenize, masking) for name, detector in detectors.items()}

    docs, num_docs = common.write_docs(args.workdir, args.num_docs)
    blocks_dir = str(args.workdir / "blocks")
    blocks = chunk_corpus.chunk_corpus([str(docs)], blocks_dir, config, overwrite=True)
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            detector_config = load_config(args.config, [f"pretrain.salient_span_detector={name}"])
            run = run_pipeline(blocks_dir, args.workdir / f"examples_{name}", detector_config, beam_args)
            print(f"{name} (run {repeat + 1}): {run['sentences']} sentences in {run['seconds']} s "
                  f"({run['sentences_per_second']}/s), {run['with_a_span']} with a span", flush=True)
            runs[name].append(run)
    pipeline = {name: {**min(made, key=lambda r: r["seconds"]), "runs_seconds": [r["seconds"] for r in made]}
                for name, made in runs.items()}
    baseline = pipeline[names[0]]["sentences_per_second"]
    results = {
        "benchmark": "salient_spans",
        "command": common.command_line("benchmarks.salient_spans", argv),
        "config": args.config,
        "entity_types": list(config.pretrain.salient_entity_types),
        "corpus": {"documents": num_docs, "blocks": blocks.num_blocks,
                   "block_length": config.features.block_length},
        "beam_args": list(beam_args),
        "labels": {"file": str(args.labels.name), "sentences": len(rows),
                   "labelled_spans": sum(len(row["spans"]) for row in rows),
                   "articles": sorted({row["source"].split("#")[0] for row in rows})},
        "detectors": {name: {"pipeline": {**pipeline[name], "speed_vs_first": common.ratio(
                                 pipeline[name]["sentences_per_second"], baseline)},
                             "labelled": labelled[name]} for name in names},
        "machine": machine,
    }
    common.write_results(args.output, results)
    for name in names:
        found = labelled[name]
        print(f"{name}: {pipeline[name]['with_a_span']} of sentences with a span, "
              f"{pipeline[name]['sentences_per_second']} sentences/s; on the labelled sentences "
              f"{found['entity_or_date']} of its spans are entities or dates ({found['exactly_a_labelled_span']} "
              f"exactly), masked spans {found['masked_span_entity_or_date_expected']}", flush=True)
    return results


if __name__ == "__main__":
    main()

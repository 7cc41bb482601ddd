"""Open-QA quality of four systems on squad_open qa_dev: the REALM paper's ablation, at small scale.

    python -m benchmarks.quality [--size small|full] [--config minilm] [--workdir runs/bench/quality]
        [--limit N | --sample N] [--ict_steps N] [--pretrain_steps N] [--finetune_steps N]
        [--finetune_retrieval index|hybrid] [--override KEY=VALUE ...] [--resume]

Runs the REALM data flow on the embedded corpus with the project's own commands (the
quickstart's stages: fetch the pretrained weights, chunk, ICT, index, examples, REALM
pre-training with background index refresh), fine-tunes for open QA twice, then evaluates with
`python -m realm_tf.evaluate` (recall@k counted over 20 retrieved blocks, the reader
reading the first `finetune.top_k`):

  realm_pretrained  fine-tuned from the REALM pre-trained model_dir (query tower and
                    reader) over the index of the pre-trained document tower
  ict_only          fine-tuned from the ICT model_dir (query tower only; the reader starts
                    from the config's reader.init_checkpoint, MiniLM by default) over the
                    index of the ICT document tower: ORQA's recipe, the paper's main
                    retrieval baseline
  bm25_reader       BM25 over the blocks' words (`--retrieval=bm25`) feeding the reader of
                    realm_pretrained

Both fine-tunings, and the evaluations of the two systems they make, retrieve as
--finetune_retrieval says: "index", each system's dense index alone (the paper's
comparison of dense retrievers; the small size's default), or "hybrid", that index's
dense ranking fused with the version's lexical one (`index.hybrid`; the full size's
default, the best figures this budget reaches). Over hybrid, each system's dense
retriever alone is measured too (`dense_recall@k`: its query tower over its index, no
reader), beside BM25's recall on the same blocks; and again with sentence vectors
(`sentence_recall@k`): each system's index rebuilt from the same document tower with
`index.sentence_vectors` on (its block vectors plus those of the blocks' sentences,
`realm_tf.retrieval.sentence_vectors`), searched by the same query tower. Only the dense
measurement uses those versions; the fine-tunings and evaluations search the run's own.
  no_retrieval      the reader of realm_pretrained with the null document only
                    (`--retrieval=null`): nothing to extract, so EM and F1 are 0 and
                    recall@k is 0 by definition (the null document belongs to no passage)

Each system's training budget (steps, batch size, examples seen, wall seconds of every
stage it depends on), pre-training's masked-LM accuracy and retrieval utility per step
(from its TensorBoard events) and the wall time of each evaluation go to the JSON
(benchmarks/results/quality.json; quality_full.json at --size full), beside the paper's
ordering and whether the measured one agrees. With the default minilm config every system starts from
all-MiniLM-L6-v2 (both towers and the reader) and gets the same fine-tuning budget;
`--config tiny` trains a small model from random weights (the tests' path). Figures
are reported as measured; nothing is tuned towards an ordering.

Sizes (steps of ICT / pre-training / each fine-tuning; batch sizes are the config's):
small 0 / 4 / 250 over the dense index (the quickstart's minilm budget), full 100 / 100 / 500
over hybrid retrieval (meant to stay within about 3 hours on 2 CPU cores; evaluate it with
--sample 0 for all of qa_dev).

A run cut short (a machine that goes down mid-run) resumes with the same arguments plus
--resume: the workdir's stage ledger (stages.json, see benchmarks.stage_ledger) skips the
stages that finished, the unfinished one resumes from its newest checkpoint, and every
budget's wall seconds add up all attempts (each stage's attempts are in the report).
"""

import argparse
import dataclasses
import os
import pathlib
import shutil
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common
from benchmarks.stage_ledger import LedgerError, StageLedger
from realm_tf.artifacts.staging import process_alive
from realm_tf.inference.open_qa_evaluation import RECALL_KS

# One results file per size: the suite's small run does not overwrite the full one.
RESULTS = {"small": common.RESULTS_DIR / "quality.json", "full": common.RESULTS_DIR / "quality_full.json"}
SIZES = {
    "small": {"ict": 0, "pretrain": 4, "finetune": 250},
    "full": {"ict": 100, "pretrain": 100, "finetune": 500},
}
# Where each size's fine-tuning beam (and its systems' evaluation) comes from, unless
# --finetune_retrieval says otherwise. The full size fuses in the lexical ranking: 500
# steps over hybrid from the quickstart's start reached EM 42.6 on qa_dev, against 36.5 over
# dense at this size (benchmarks/results/finetune_steps.json, quality_full.json of commit a104ea1).
FINETUNE_RETRIEVAL = {"small": "index", "full": "hybrid"}


@dataclasses.dataclass(frozen=True)
class System:
    """One system of the ablation: which fine-tuned model_dir answers, with which retrieval."""

    model_dir: str  # Under the workdir.
    retrieval: Optional[str]  # `python -m realm_tf.evaluate --retrieval`; None: the fine-tuning's.
    depends_on: Tuple[str, ...]  # The training stages behind it: its budget.
    retriever: str
    reader: str


SYSTEMS: Dict[str, System] = {
    "realm_pretrained": System(
        "finetune_realm", None, ("ict", "pretrain", "finetune_realm"),
        retriever="{retrieval}: the REALM pre-trained query tower, fine-tuned, over the index of the pre-trained "
                  "document tower",
        reader="the REALM pre-trained knowledge-augmented encoder, fine-tuned (finetune_realm)"),
    "ict_only": System(
        "finetune_ict", None, ("ict", "finetune_ict"),
        retriever="{retrieval}: the ICT query tower, fine-tuned, over the index of the ICT document tower (ORQA's "
                  "recipe)",
        reader="the config's reader.init_checkpoint (MiniLM by default; random weights if none), fine-tuned: "
               "ICT trains no reader (finetune_ict)"),
    "bm25_reader": System(
        "finetune_realm", "bm25", ("ict", "pretrain", "finetune_realm"),
        retriever="BM25 (bm25s, English stop words) over title + text of every block; every block read weighs the "
                  "same (retrieval logits 0)",
        reader="realm_pretrained's (finetune_realm), fine-tuned on the {retrieval} retriever's candidates"),
    "no_retrieval": System(
        "finetune_realm", "null", ("ict", "pretrain", "finetune_realm"),
        retriever="none: the null document only; recall@k is 0 by definition (it belongs to no passage)",
        reader="realm_pretrained's (finetune_realm); with no block there is no span, so EM and F1 are 0 by "
               "construction"),
}
# Marks a workdir this benchmark made, so that a rerun may clear it (and nothing else).
MARKER = ".quality_benchmark"
# Pre-training's refresher publishes a version every refresh and prunes to
# index.keep_versions (3); ict_only is fine-tuned and evaluated over the first version,
# the ICT one, so the benchmark keeps them all (a few MB each at this size).
KEEP_INDEX_VERSIONS = 1000
# How each --finetune_retrieval is named in the systems' descriptions.
RETRIEVAL_NAMES = {"index": "dense", "hybrid": "hybrid (dense and lexical fused, index.hybrid)"}
# Pre-training's scalars that say whether it taught anything: the curves on the docs page.
CURVE_TAGS = ("loss", "mlm_accuracy", "retrieval_utility")

PAPER = {
    "source": "Guu et al. 2020 (REALM), Table 1: open-QA exact match on NaturalQuestions-Open, WebQuestions "
              "and CuratedTrec",
    "ordering": ["realm_pretrained", "ict_only", "bm25_reader", "no_retrieval"],
    "ordering_text": "REALM > ORQA (ICT-pretrained retriever, fine-tuned) > BM25 + BERT reader > no retrieval",
    "exact_match": {"REALM": {"NaturalQuestions-Open": 40.4, "WebQuestions": 40.7, "CuratedTrec": 46.8}},
    "figures_note": "only REALM's own figures of Table 1; the other rows of Table 1 are not "
                    "quoted here",
    "no_retrieval_note": "Table 1's systems without retrieval are generative models (T5) answering from their "
                         "parameters; this benchmark's no_retrieval is the extractive reader given the null "
                         "document only, which has no span to extract, so its EM is 0 by construction",
}


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="small",
                        help="training budget preset (default: %(default)s)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/quality"),
                        help="where the runs go; cleared first if an earlier run of this benchmark made it "
                        "(default: %(default)s)")
    parser.add_argument("--limit", type=int, help="evaluate the first N questions only (default: all)")
    parser.add_argument("--sample", type=int, default=300,
                        help="evaluate N questions drawn at random, as the quickstart does; 0: all "
                        "(default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path,
                        help="the JSON report (default: benchmarks/results/quality.json, quality_full.json at "
                        "--size full)")
    for stage in ("ict", "pretrain", "finetune"):
        parser.add_argument(f"--{stage}_steps", type=int,
                            help=f"{stage} training steps (default: the --size preset's)")
    parser.add_argument("--finetune_retrieval", choices=tuple(RETRIEVAL_NAMES),
                        help="where both fine-tunings' beams come from, and what their systems retrieve with when "
                        "evaluated: the dense index, or hybrid (default: index at --size small, hybrid at full)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every stage, e.g. ict.training.batch_size=16 (repeatable)")
    parser.add_argument("--config", default="minilm", help="config name or YAML path (default: %(default)s)")
    parser.add_argument("--corpus", type=pathlib.Path, help="documents as JSONL (default: the embedded corpus)")
    parser.add_argument("--qa", type=pathlib.Path, help="evaluation questions, squad_open JSONL with gold passages "
                        "(default: the embedded qa_dev)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run cut short in --workdir (same arguments otherwise): finished stages "
                        "are skipped, the unfinished one resumes from its newest checkpoint")
    return parser


class BenchmarkError(Exception):
    """Bad input to the benchmark (a workdir it may not clear, a missing file, questions without gold passages)."""


def _prepare_workdir(workdir: pathlib.Path, resume: bool = False) -> None:
    """A fresh workdir, or with `resume` the one an earlier run of this benchmark left.

    The marker holds the id of the process using the workdir: a second run on the same
    workdir while the first is alive would delete (or train over) the first's checkpoints
    under it, so it is refused instead.
    """
    marker = workdir / MARKER
    if workdir.exists():
        if not workdir.is_dir():
            raise BenchmarkError(f"--workdir {workdir} is not a directory")
        if any(workdir.iterdir()):
            if not marker.is_file():
                raise BenchmarkError(f"--workdir {workdir} is not empty and was not made by this benchmark; "
                                     "remove it or choose another")
            owner = _marker_pid(marker)
            if owner is not None and owner != os.getpid() and process_alive(owner):
                raise BenchmarkError(f"--workdir {workdir} is in use by another run of this benchmark (process "
                                     f"{owner}); wait for it or choose another workdir")
            if not resume:
                shutil.rmtree(workdir)
    if resume and not marker.is_file():
        raise BenchmarkError(f"--resume: {workdir} holds no run of this benchmark to resume")
    workdir.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{os.getpid()}\nmade by python -m benchmarks.quality (the process above); cleared by its "
                      "next run unless it is --resume'd\n")


def _marker_pid(marker: pathlib.Path) -> Optional[int]:
    first = marker.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _checkpoint_step(model_dir: pathlib.Path) -> int:
    """The step of the newest checkpoint: what the stage really trained, not what was asked."""
    from realm_tf.artifacts.model_dir import ModelDir

    path = ModelDir(str(model_dir)).latest_checkpoint()
    if path is None:
        raise RuntimeError(f"{model_dir}: no checkpoint after training")
    return int(path.rsplit("-", 1)[1])


def _training_budget(training, model_dir: pathlib.Path, seconds: float, **extra) -> Dict:
    steps = _checkpoint_step(model_dir)
    return {"steps": steps, "batch_size": training.batch_size, "examples_seen": steps * training.batch_size,
            "learning_rate": training.learning_rate, "wall_seconds": round(seconds, 1), **extra}


def training_curves(model_dir: pathlib.Path, tags: Sequence[str] = CURVE_TAGS) -> Dict[str, Dict[str, list]]:
    """The TensorBoard scalars a training run wrote under model_dir/train, by tag.

    Returns {tag: {"steps": [int], "values": [float]}}, in step order; a step written twice
    (a resumed run) keeps its last value. Tags the run did not write are left out.
    """
    import tensorflow as tf

    from realm_tf.artifacts.model_dir import ModelDir

    points: Dict[str, Dict[int, float]] = {}
    events = os.path.join(ModelDir(str(model_dir)).summaries_dir("train"), "events.out.tfevents.*")
    for path in sorted(tf.io.gfile.glob(events)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag in tags:
                    points.setdefault(value.tag, {})[int(event.step)] = float(tf.make_ndarray(value.tensor))
    return {tag: {"steps": sorted(by_step), "values": [by_step[s] for s in sorted(by_step)]}
            for tag, by_step in points.items()}


def measured_ordering(systems: Dict[str, Dict]) -> Dict:
    """Ranks the systems by exact match (F1 breaking ties) and compares with the paper's order.

    Agreement means the paper's strict order holds: each system's EM above the next one's.
    """
    by_em = sorted(systems, key=lambda name: (-systems[name]["exact_match"], -systems[name]["f1"]))
    em = [systems[name]["exact_match"] for name in PAPER["ordering"]]
    agrees = all(a > b for a, b in zip(em, em[1:]))
    retrieving = [name for name in PAPER["ordering"] if name != "no_retrieval"]
    by_recall = sorted(retrieving, key=lambda name: -systems[name]["recall@5"])
    recall = [systems[name]["recall@5"] for name in retrieving]
    chain = "".join(f"{name} {systems[name]['exact_match']:.3f}" + (
        "" if i == len(by_em) - 1 else (" = " if systems[name]["exact_match"] == systems[by_em[i + 1]]["exact_match"]
                                        else " > ")) for i, name in enumerate(by_em))
    statement = (f"{'Yes' if agrees else 'No'}: measured exact match {chain}; the paper's order is "
                 f"{' > '.join(PAPER['ordering'])}.")
    sizes = {systems[name].get("num_questions") for name in systems}
    if len(sizes) == 1 and sizes != {None}:
        size = sizes.pop()
        statement += f" One question of the {size} moves exact match by {1 / max(size, 1):.4f}."
    if not agrees:
        statement += (" At this scale (the budgets stated, on CPU, far below the paper's 200k steps at batch 512 on"
                      " BERT-base) the ablation's ordering is not reproduced; the figures are what this budget buys,"
                      " not a test of REALM's claim.")
    em_of = {name: systems[name]["exact_match"] for name in systems}
    # The ablation as the pre-training question asks it: does REALM pre-training add to ICT, and
    # does retrieval add to nothing?
    ablation = em_of["realm_pretrained"] >= em_of["ict_only"] > em_of["no_retrieval"]
    return {
        "by_exact_match": by_em,
        "by_recall@5": by_recall,
        "agrees_with_paper": agrees,
        "realm_at_least_ict_above_no_retrieval": ablation,
        "retrieval_agrees_with_paper": all(a > b for a, b in zip(recall, recall[1:])),
        "statement": statement,
    }


def dense_against_bm25(systems: Dict[str, Dict], k: int = 5) -> Dict:
    """Each trained system's dense retriever alone (its `dense_recall@k`, or its `recall@k`
    where it retrieved densely; and its `sentence_recall@k` where measured) against BM25's
    recall@k over the same blocks."""
    bm25 = systems["bm25_reader"][f"recall@{k}"]
    trained = ("realm_pretrained", "ict_only")
    dense = {name: systems[name].get(f"dense_recall@{k}", systems[name][f"recall@{k}"]) for name in trained}
    against = {"k": k, "bm25": bm25, "dense": dense}
    with_sentences = {name: systems[name][f"sentence_recall@{k}"] for name in trained
                      if f"sentence_recall@{k}" in systems[name]}
    if with_sentences:
        against["dense_with_sentence_vectors"] = with_sentences
    against["best_dense_at_least_bm25"] = max([*dense.values(), *with_sentences.values()]) >= bm25
    return against


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the report it writes to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"limit": 1, "sample": 0, "ict_steps": 0, "pretrain_steps": 1,
                                         "finetune_steps": 1})
    from realm_tf import quickstart
    from realm_tf.inference.open_qa_evaluation import (evaluate_model_dir, format_metrics, read_questions,
                                                       retrieval_recall_of_model_dir)
    from realm_tf.configs import load_config
    from realm_tf.artifacts.manifests import BlocksManifest
    from realm_tf.evaluation.qa_data import read_qa
    from realm_tf.artifacts.index_version import latest_version

    steps = {stage: SIZES[args.size][stage] if getattr(args, f"{stage}_steps") is None
             else getattr(args, f"{stage}_steps") for stage in SIZES[args.size]}
    beam = args.finetune_retrieval or FINETUNE_RETRIEVAL[args.size]
    overrides = [f"ict.training.train_steps={steps['ict']}", f"pretrain.training.train_steps={steps['pretrain']}",
                 f"finetune.training.train_steps={steps['finetune']}", f"index.keep_versions={KEEP_INDEX_VERSIONS}",
                 # Each fine-tuning's beam comes from its own index, as the size (or
                 # --finetune_retrieval) says, whatever the config fine-tunes over by default.
                 f"finetune.retrieval={beam}", *args.override]
    config = load_config(args.config, overrides)  # Bad overrides fail here, before any work.
    qa = args.qa or quickstart.QA_DIR / "qa_dev.jsonl"
    corpus = args.corpus or quickstart.DEFAULT_CORPUS
    if not corpus.is_file():
        raise BenchmarkError(f"--corpus {corpus}: no such file")
    for example in read_qa(str(qa), "squad_open"):  # A missing file or a bad line is a QaDataError naming it.
        if example.gold_passage_id is None:
            raise BenchmarkError(f"{qa}:{example.line}: no gold_passage_id; recall@k here needs every question's "
                                 "gold paragraph")
    workdir = args.workdir
    _prepare_workdir(workdir, resume=args.resume)
    # What a resumed run must ask again for its stages' figures to belong to one run.
    settings = {"size": args.size, "config": args.config, "steps": steps, "overrides": overrides,
                "corpus": str(corpus), "qa": str(qa), "limit": args.limit, "sample": args.sample}
    try:
        ledger = (StageLedger.resume if args.resume else StageLedger.start)(workdir, settings)
    except LedgerError as e:
        raise BenchmarkError(f"--resume: {e}") from None
    machine = common.machine_info()  # Its load average is the one this attempt starts with.
    # The quickstart's own workspace: its stages read workdir, config, overrides and corpus.
    stage_args = quickstart.Workspace(workdir, args.config, overrides, corpus)
    stage_fns = {name: fn for name, _, fn in quickstart.STAGES}
    index_root = workdir / "index"
    # Systems evaluated over hybrid also get their dense retriever's recall alone.
    dense_recall_of = [name for name, system in SYSTEMS.items() if system.retrieval is None and beam != "index"]
    # The training pipeline's stages, then one evaluation per system, the dense recalls, and
    # per dense system a version with sentence vectors and the recall through it.
    total = 8 + len(SYSTEMS) + 3 * len(dense_recall_of)
    seconds: Dict[str, float] = {}
    started = time.monotonic()

    def stage(number: int, name: str, label: str, work, describe=lambda lines: lines or ()):
        """Runs work() once over all attempts (the ledger's), with a progress line before and after."""
        heading = f"[{number}/{total}] {name}: {label}"
        print(f"{heading} ...", flush=True)
        result, seconds[name], ran = ledger.run(name, work)
        earlier = "" if ran else f", all in earlier attempts ({ledger.attempts(name)})"
        print(f"{heading}: done in {seconds[name]:.1f}s{earlier}", flush=True)
        for line in describe(result):
            print(f"    {line}", flush=True)
        return result

    def publishing(name):
        """The stage's work, returning its lines and the newest index version after it: the
        ledger keeps which version each fine-tuning searches for a resumed run."""
        return lambda: {"lines": stage_fns[name](stage_args), "index_version": latest_version(str(index_root))}

    def published(result):
        return [*(result["lines"] or ()), f"newest index version: {result['index_version']}"]

    stage(0, "fetch", "the pretrained weights the config names", lambda: stage_fns["fetch"](stage_args))
    stage(1, "chunk", "chunk the corpus into blocks (Beam)", lambda: stage_fns["chunk"](stage_args))
    stage(2, "ict", "Inverse Cloze Task warm start of the retriever", lambda: stage_fns["ict"](stage_args))
    ict_index = stage(3, "index", "embed the blocks with the ICT embedder, publish an index version (Beam)",
                      publishing("index"), describe=published)["index_version"]
    stage(4, "examples", "mask a salient span in every sentence (Beam)", lambda: stage_fns["examples"](stage_args))
    realm_index = stage(5, "pretrain", "REALM pre-training from the ICT retriever, index refreshed in the background",
                        publishing("pretrain"), describe=published)["index_version"]
    if not os.path.isdir(ict_index) or realm_index == ict_index:
        raise RuntimeError(f"{index_root}: expected the ICT index version {ict_index} kept and a newer one from "
                           f"pre-training, found newest {realm_index}")
    stage(6, "finetune_ict", "open-QA fine-tuning from the ICT retriever over the ICT index",
          lambda: quickstart.finetune(stage_args, init_from=str(workdir / "ict"), index=ict_index,
                                      model_dir=str(workdir / "finetune_ict")))
    stage(7, "finetune_realm", "open-QA fine-tuning from REALM pre-training over the pre-trained index",
          lambda: quickstart.finetune(stage_args, init_from=str(workdir / "pretrain"), index=realm_index,
                                      model_dir=str(workdir / "finetune_realm")))

    metrics: Dict[str, Dict] = {}
    questions = read_questions(str(qa), limit=args.limit or None, sample=args.sample or None)
    retrieval_of = {name: system.retrieval or beam for name, system in SYSTEMS.items()}
    for number, (name, system) in enumerate(SYSTEMS.items(), start=8):

        def work(system=system, name=name):
            evaluation = evaluate_model_dir(str(workdir / system.model_dir), questions, retrieval=retrieval_of[name],
                                            evidence_depth=max(RECALL_KS))
            evaluation.write_predictions(str(workdir / f"predictions_{name}.jsonl"))
            return evaluation.metrics

        metrics[name] = stage(number, f"evaluate_{name}",
                              f"{name} on {qa.name} (python -m realm_tf.evaluate --retrieval={retrieval_of[name]})",
                              work, describe=lambda m, name=name: [f"{name}: {format_metrics(m)}"])
    dense_recall: Dict[str, Dict] = {}
    for number, name in enumerate(dense_recall_of, start=8 + len(SYSTEMS)):
        dense_recall[name] = stage(
            number, f"dense_recall_{name}", f"{name}'s dense retriever alone on {qa.name} (its query tower, no reader)",
            lambda name=name: retrieval_recall_of_model_dir(str(workdir / SYSTEMS[name].model_dir), questions),
            describe=_recall_line)
    # The same document towers' versions with sentence vectors (the lexical index is not
    # needed here), and the same query towers' recall through them.
    sentence_config = load_config(args.config, overrides + ["index.sentence_vectors.enabled=true",
                                                            "index.hybrid.lexical_index=false"])
    version_of = {"realm_pretrained": realm_index, "ict_only": ict_index}
    sentence_version: Dict[str, str] = {}
    for number, name in enumerate(dense_recall_of, start=8 + len(SYSTEMS) + len(dense_recall_of)):
        sentence_version[name] = stage(
            number, f"sentence_index_{name}",
            f"{name}'s index again, with sentence vectors, from the same document tower (Beam)",
            lambda name=name: _sentence_version(workdir, version_of[name], sentence_config),
            describe=published)["index_version"]
    sentence_recall: Dict[str, Dict] = {}
    for number, name in enumerate(dense_recall_of, start=8 + len(SYSTEMS) + 2 * len(dense_recall_of)):
        sentence_recall[name] = stage(
            number, f"sentence_recall_{name}",
            f"{name}'s dense retriever alone over its version with sentence vectors on {qa.name} (no reader)",
            lambda name=name: retrieval_recall_of_model_dir(str(workdir / SYSTEMS[name].model_dir), questions,
                                                            index=sentence_version[name]),
            describe=_recall_line)

    training = {
        "ict": _training_budget(config.ict.training, workdir / "ict", seconds["ict"]),
        "pretrain": _training_budget(
            config.pretrain.training, workdir / "pretrain", seconds["pretrain"], candidates=config.pretrain.top_k,
            refresh_every_steps=config.pretrain.refresh_every_steps,
            curves=training_curves(workdir / "pretrain")),
        "finetune_ict": _training_budget(config.finetune.training, workdir / "finetune_ict", seconds["finetune_ict"],
                                         index_version=ict_index),
        "finetune_realm": _training_budget(config.finetune.training, workdir / "finetune_realm",
                                           seconds["finetune_realm"], index_version=realm_index),
    }
    data = {name: {"wall_seconds": round(seconds[name], 1)} for name in ("chunk", "index", "examples")}
    systems = {}
    for name, system in SYSTEMS.items():
        m = metrics[name]
        stages = {stage_name: training[stage_name] for stage_name in system.depends_on}
        systems[name] = {
            "retriever": system.retriever.format(retrieval=RETRIEVAL_NAMES[beam]),
            "reader": system.reader.format(retrieval=RETRIEVAL_NAMES[beam]),
            "exact_match": m["exact_match"], "f1": m["f1"], **{f"recall@{k}": m[f"recall@{k}"] for k in RECALL_KS},
            **{f"dense_recall@{k}": dense_recall[name][f"recall@{k}"] for k in RECALL_KS if name in dense_recall},
            **{f"sentence_recall@{k}": sentence_recall[name][f"recall@{k}"] for k in RECALL_KS
               if name in sentence_recall},
            "num_questions": m["num_questions"], "top_k_read": m["top_k"], "checkpoint": m["checkpoint"],
            "retrieval": m["retrieval"],
            "evaluation_wall_seconds": round(seconds[f"evaluate_{name}"], 1),
            "budget": {"stages": stages, "train_steps": sum(s["steps"] for s in stages.values()),
                       "examples_seen": sum(s["examples_seen"] for s in stages.values()),
                       "training_wall_seconds": round(sum(s["wall_seconds"] for s in stages.values()), 1)},
        }
    manifest = BlocksManifest.read(str(workdir / "blocks"))
    report = {
        "benchmark": "quality",
        "description": "Open-QA recall@k, exact match and F1 on squad_open qa_dev of the REALM paper's ablation "
                       f"(REALM pre-trained, ICT only, BM25 + reader, no retrieval), with the {args.config} config, "
                       f"started from {config.retriever.init_checkpoint or 'random weights'}",
        "command": common.command_line("benchmarks.quality", argv),
        "size": args.size,
        "config": args.config,
        "overrides": overrides,
        "finetune_retrieval": beam,
        "qa": str(qa),
        "num_questions": metrics["realm_pretrained"]["num_questions"],
        "corpus": {"path": str(stage_args.corpus), "documents": manifest.num_documents, "blocks": manifest.num_blocks},
        "recall_note": "recall@k: one of the first k retrieved blocks comes from the question's gold paragraph; "
                       f"{max(RECALL_KS)} blocks are retrieved per question, the reader reads the first top_k_read",
        "systems": systems,
        "stages": {"data": data, "training": training},
        "paper": PAPER,
        "measured": measured_ordering(systems),
        "dense_against_bm25": dense_against_bm25(systems),
        **({"sentence_vectors": {"block_weight": sentence_config.index.sentence_vectors.block_weight,
                                 "rescore_depth": sentence_config.index.sentence_vectors.rescore_depth,
                                 "index_versions": sentence_version}} if sentence_version else {}),
        # Every stage over every attempt; a resumed run's own time is this_attempt_wall_seconds.
        "total_wall_seconds": round(sum(seconds.values()), 1),
        "this_attempt_wall_seconds": round(time.monotonic() - started, 1),
        "stage_attempts": ledger.summary(),
        "machine": machine,
    }
    print(format_table(report), flush=True)
    return common.write_results(args.output or RESULTS[args.size], report)


def _recall_line(recall: Dict) -> List[str]:
    return [", ".join(f"{k} {v:.3f}" for k, v in recall.items() if k.startswith("recall@"))]


def _sentence_version(workdir: pathlib.Path, version: str, config) -> Dict:
    """Publishes, under workdir/sentence_index, a version of `version`'s blocks embedded by
    the same embedder export, with sentence vectors as `config.index` says; the stage's
    lines and the version's path."""
    from beam_pipelines import embed_and_index
    from realm_tf.artifacts.index_version import embedder_export_of

    export = embedder_export_of(version)
    if not export:
        raise RuntimeError(f"{version}: the manifest names no embedder export to embed the sentences with")
    built = embed_and_index.embed_and_index(str(workdir / "blocks"), export, str(workdir / "sentence_index"), config)
    return {"lines": embed_and_index.summarize(built).splitlines(), "index_version": built}


def format_table(report: Dict) -> str:
    header = f"{'system':<18}" + "".join(f"{f'recall@{k}':>10}" for k in RECALL_KS) + f"{'EM':>8}{'F1':>8}" \
        + f"{'train steps':>13}{'train s':>9}{'eval s':>8}"
    lines = [header]
    for name, s in report["systems"].items():
        lines.append(f"{name:<18}" + "".join(f"{s[f'recall@{k}']:>10.3f}" for k in RECALL_KS)
                     + f"{s['exact_match']:>8.3f}{s['f1']:>8.3f}{s['budget']['train_steps']:>13}"
                     + f"{s['budget']['training_wall_seconds']:>9.0f}{s['evaluation_wall_seconds']:>8.0f}")
    lines.append(f"({report['num_questions']} questions; total {report['total_wall_seconds']:.0f}s)")
    lines.append(report["measured"]["statement"])
    return "\n".join(lines)


def _command_line() -> int:
    from realm_tf.configs import ConfigError
    from realm_tf.evaluation.qa_data import QaDataError

    try:
        main()
    except (BenchmarkError, ConfigError, QaDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_command_line())

"""Regenerates the benchmarks docs page from the results JSON, without re-running anything.

    python -m benchmarks.report [--results_dir benchmarks/results] [--output docs/benchmarks.md]

Writes `--output` (docs/benchmarks.md): a table of every figure, each ratio to its baseline
next to the absolute figures, the command that made it and the machine's load; and the
plots (matplotlib, Agg backend) into a folder named after the page (docs/benchmarks/):

  retrieval_recall_qps.png   ScaNN recall@k against batched queries/s, one curve per number
                             of leaves searched, exact as a point
  indexing_throughput.png    blocks/s of the plain loop and the Beam pipeline
  training_throughput.png    examples/s and MFU per step and model size, with and without
                             the refresher (and the GPU run's, when there is one)
  serving_latency.png        p50/p99 of one question and questions/s per system
  quality.png                recall@k, exact match and F1 per system (with quality.json)
  quality_full.png           the same at --size full (with quality_full.json)
  quality*_pretraining.png   REALM pre-training's masked-LM accuracy and retrieval utility
                             per step, from its TensorBoard events (when the run has them)

A results file that is missing leaves its section saying how to make it. Needs the
`bench` extra (matplotlib): pip install -e '.[bench]'.
"""

import argparse
import functools
import json
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
FILES = {
    "summary": "summary.json",
    "retrieval": "retrieval_latency.json",
    "indexing": "indexing_throughput.json",
    "training": "training_throughput.json",
    "training_gpu": "training_throughput_gpu.json",
    "serving": "serving_latency.json",
    "demo": "demo_page.json",
    "load": "serving_load.json",
    "quality": "quality.json",
    "quality_full": "quality_full.json",
    "store": "block_store.json",
    "inputs": "pretraining_inputs.json",
    "scale": "scale.json",
    "scale_blocks": "scale_blocks.json",
    "scale_store": "scale_store.json",
    "scale_two_part": "scale_two_part.json",
    "hybrid": "hybrid_retrieval.json",
    "sentences": "sentence_vectors.json",
    "lexical_scale": "lexical_scale.json",
    "spans": "salient_spans.json",
    "finetune_steps": "finetune_steps.json",
}


def _figure_module():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("benchmarks.report needs matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")  # Files only: no display here.
    import matplotlib.pyplot as plt

    return plt


def _number(value: Any, digits: int = 3) -> str:
    """A figure for a table: thousands separated, `digits` significant-ish decimals, "-" if missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}g}" if value else "0"
    return str(value)


def _times(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell if isinstance(cell, str) else _number(cell) for cell in row) + " |"
              for row in rows]
    return lines + [""]


def _provenance(results: Dict) -> List[str]:
    machine = results.get("machine", {})
    load = machine.get("load_average_1_5_15_min_at_start")
    end = machine.get("load_average_1_5_15_min_at_end")
    parts = [f"Command: `{results['command']}`" if results.get("command") else "Command: not recorded"]
    where = ", ".join(str(x) for x in (f"{machine.get('cpus')} CPUs" if machine.get("cpus") else None,
                                       ", ".join(machine.get("gpus") or []) or None, machine.get("date")) if x)
    if where:
        parts.append(where)
    if load:
        parts.append(f"load average (1/5/15 min) {load[0]}/{load[1]}/{load[2]} at the start"
                     + (f", {end[0]}/{end[1]}/{end[2]} at the end" if end else ""))
    return ["; ".join(parts) + ".", ""]


def _gib(num_bytes: float) -> float:
    return round(num_bytes / 2**30, 2)


def _save(plt, fig, path: pathlib.Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- sections ----------------------------------------------------------------------------

def retrieval_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    k = results["k"]
    recall_key = f"recall_at_{k}"
    lines = [f"Top-{k} retrieval over {results['num_blocks']:,} synthetic clustered {results['dim']}-d blocks: "
             "exact matmul + top_k (the exact export's retrieval, the baseline) against the ScaNN layer the ScaNN "
             "export builds. One query per call (p50/p99), batches of "
             f"{results['batched']['batch_size']} (queries/s); speed-ups are over exact in the same run.", ""]
    rows = []
    for name, s in results["searchers"].items():
        speedup = s.get("speedup_over_exact", {})
        rows.append([name, s["one_query"]["p50_ms"], _times(speedup.get("one_query_p50")), s["one_query"]["p99_ms"],
                     _times(speedup.get("one_query_p99")), s["batched"]["queries_per_second"],
                     _times(speedup.get("batched")), s.get(recall_key, 1.0 if name == "exact" else None),
                     s.get("build_seconds")])
    lines += _table(["searcher", "one query p50 ms", "vs exact", "p99 ms", "vs exact", "batched queries/s",
                     "vs exact", f"recall@{k}", "build s"], rows)
    sweep = results.get("sweep")
    if sweep:
        lines += [f"The recall/throughput curve: the `scann` searcher (built once, {sweep['num_leaves']} leaves) "
                  "searched with other settings, every point and exact taking turns "
                  f"({sweep['one_query_calls']} one-query calls, {sweep['batches']} batches each).", ""]
        exact = sweep["exact"]
        rows = [["exact", "-", 1.0, exact["queries_per_second"], "1.00x", exact["one_query"]["p50_ms"], "1.00x"]]
        for p in sweep["points"]:
            rows.append([str(p["reorder_num_neighbors"]) + (" (index config)" if p.get("index_config") else ""),
                         p["leaves_to_search"], p[recall_key], p["queries_per_second"],
                         _times(p["speedup_over_exact"]["batched"]), p["one_query"]["p50_ms"],
                         _times(p["speedup_over_exact"]["one_query_p50"])])
        lines += _table(["re-scored", "leaves searched", f"recall@{k}", "batched queries/s", "vs exact",
                         "one query p50 ms", "vs exact"], rows)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for leaves in sorted({p["leaves_to_search"] for p in sweep["points"]}):
            points = [p for p in sweep["points"] if p["leaves_to_search"] == leaves]
            ax.plot([p["queries_per_second"] for p in points], [p[recall_key] for p in points], "o-",
                    label=f"ScaNN, {leaves} leaves searched")
            for p in points:
                ax.annotate(str(p["reorder_num_neighbors"]), (p["queries_per_second"], p[recall_key]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.plot([exact["queries_per_second"]], [1.0], "k*", markersize=12, label="exact (matmul + top_k)")
        ax.set_xscale("log")
        ax.set_xlabel(f"queries/s, batches of {sweep['batch_size']} (log)")
        ax.set_ylabel(f"recall@{k} vs exact")
        ax.set_title(f"ScaNN over {results['num_blocks']:,} blocks (labels: candidates re-scored)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
        _save(plt, fig, images / "retrieval_recall_qps.png")
        lines += [f"![recall@{k} against queries/s]({images.name}/retrieval_recall_qps.png)", ""]
    return lines + _provenance(results)


def indexing_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    lines = [f"Embedding and indexing {results['num_blocks']:,} blocks ({results['config']} config, batches of "
             f"{results['batch_size']}): the Beam pipeline, whole run as a user sees it, against a plain in-process "
             "loop calling the same export (the baseline).", ""]
    runs = results["runs"]
    lines += _table(["run", "seconds", "blocks/s", "vs plain loop"],
                    [[name, r["seconds"], r["blocks_per_second"], _times(r["ratio_to_plain_loop"])]
                     for name, r in runs.items()])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(runs), [r["blocks_per_second"] for r in runs.values()], color=["0.4", "tab:blue", "tab:orange"])
    ax.set_ylabel("blocks/s")
    ax.set_title(f"Embed and index {results['num_blocks']:,} blocks")
    _save(plt, fig, images / "indexing_throughput.png")
    return lines + [f"![blocks/s]({images.name}/indexing_throughput.png)", ""] + _provenance(results)


def _training_rows(results: Dict) -> List[List[Any]]:
    rows = []
    for run in results["runs"]:
        without, with_ = run["without_refresher"], run.get("with_refresher")
        ratio = run.get("with_over_without_refresher", {})
        rows.append([run["task"], run["model_size"], run["batch_size"], without["examples_per_second"],
                     with_["examples_per_second"] if with_ else "-", _times(ratio.get("examples_per_second")),
                     without["step_seconds_p50"], without["mfu"], with_["mfu"] if with_ else "-",
                     run["flops_per_step"]["train"] / 1e9])
    return rows


def training_section(results: Dict, images: pathlib.Path, plt, name: str = "training_throughput") -> List[str]:
    peak = results["peak_matmul"]
    lines = [f"Device {results['device']}, precision {results['precision']}, strategy {results['strategy']}"
             f"{', XLA' if results.get('jit_compile') else ''}; peak dense matmul measured in the same run: "
             f"{peak['flops_per_second'] / 1e9:,.1f} GFLOP/s in {peak['dtype']} (n={peak['n']}). "
             "Examples/s of the training loop (input wait, step, after_step; warm-up excluded); MFU = model FLOPs "
             "per step / step time / peak. The ratio is with the refresher busy re-indexing beside the trainer / "
             "without it (pre-training only: fine-tuning's index is fixed).", ""]
    lines += _table(["step", "model", "batch", "examples/s without refresher", "with refresher", "with / without",
                     "step s (p50)", "MFU without", "MFU with", "GFLOP per step"], _training_rows(results))
    runs = results["runs"]
    labels = [f"{r['task']}\n{r['model_size']}" for r in runs]
    x = range(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "examples_per_second", "examples/s"), (axes[1], "mfu", "MFU")):
        ax.bar([i - 0.2 for i in x], [r["without_refresher"][key] for r in runs], 0.4, label="without refresher")
        ax.bar([i + 0.2 for i in x], [r["with_refresher"][key] if "with_refresher" in r else 0 for r in runs], 0.4,
               label="with refresher")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(f"{title} ({results['device']}, {results['precision']})", fontsize=9)
        ax.legend(fontsize=8)
    _save(plt, fig, images / f"{name}.png")
    return lines + [f"![examples/s and MFU]({images.name}/{name}.png)", ""] + _provenance(results)


def serving_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    systems = results["systems"]
    lines = [f"The QA exports of a tiny fine-tuned model over {results['num_blocks']:,} blocks, and the in-process "
             "`QaPredictor` as a reference; the exact export is the baseline. " + results["server"] + ".", ""]
    rows = []
    for name, s in systems.items():
        r = s["ratio_to_exact"]
        rows.append([name, s["one_question"]["p50_ms"], _times(r["one_question_p50_speedup"]),
                     s["one_question"]["p99_ms"], _times(r["one_question_p99_speedup"]),
                     s["batched"]["questions_per_second"], _times(r["questions_per_second"]),
                     s.get("export", {}).get("load_seconds"), s.get("same_answer_as_exact")])
    lines += _table(["system", "one question p50 ms", "speed-up vs exact", "p99 ms", "speed-up vs exact",
                     f"questions/s (batch {results['batched']['batch_size']})", "vs exact", "load s",
                     "same answer as exact"], rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(systems)
    x = range(len(names))
    axes[0].bar([i - 0.2 for i in x], [systems[n]["one_question"]["p50_ms"] for n in names], 0.4, label="p50")
    axes[0].bar([i + 0.2 for i in x], [systems[n]["one_question"]["p99_ms"] for n in names], 0.4, label="p99")
    axes[0].set_ylabel("ms per call, one question")
    axes[1].bar(list(x), [systems[n]["batched"]["questions_per_second"] for n in names], color="tab:green")
    axes[1].set_ylabel(f"questions/s, batches of {results['batched']['batch_size']}")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names)
    axes[0].legend()
    _save(plt, fig, images / "serving_latency.png")
    return lines + [f"![latency and throughput]({images.name}/serving_latency.png)", ""] + _provenance(results)


def demo_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    systems = results["systems"]
    lines = [f"One question a call through the demo page's JSON endpoint (`python -m realm_tf.serving.demo`) against "
             f"the same QA export called directly, the baseline; {results['calls']} calls each, in turns, after "
             f"{results['warmup']} untimed. Export: `{results['export']}` ({results['retrieval']} retrieval).", ""]
    rows = [[name, s["p50_ms"], s["p99_ms"], _times(s["p50_ms"] / systems["direct"]["p50_ms"]), s["what"]]
            for name, s in systems.items()]
    lines += _table(["system", "p50 ms", "p99 ms", "p50 vs direct", "what"], rows)
    lines += [f"The page adds {results['page_p50_overhead_ms']:.1f} ms at p50 "
              f"({results['page_p50_ratio_to_direct']:.3f}x the direct call); same answers: {results['same_answers']}.",
              ""]
    shot = results.get("screenshot")
    if shot:
        lines += [f"Screenshot (`{shot['path']}`): \"{shot['question']}\" answered \"{shot['answer']}\", highlighted "
                  f"in its passage: {shot['highlighted']!r}.", ""]
    return lines + _provenance(results)


def load_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    load = results["load"]
    lines = [f"{results['clients']} concurrent gRPC clients for {results['seconds']:g} s against the exact QA export "
             f"({results['export']['num_blocks']:,} blocks), {results['server_threads']} requests at a time in the "
             f"server, each client drawing from the mix below. {results['server']}.", ""]
    rows = [[name, "good" if k["good"] else "bad", k["requests"], k["failed"], k.get("p50_ms"), k.get("p99_ms")]
            for name, k in load["by_kind"].items()]
    lines += _table(["request", "kind", "requests", "failed", "p50 ms", "p99 ms"], rows)
    alone = results["one_question_alone_before"]
    lines += [f"{load['requests']} requests in {results['wall_seconds']:.1f} s ({load['requests_per_second']} "
              f"requests/s, {load['questions_answered_per_second']} questions answered/s): "
              f"{load['good']['failed']} of {load['good']['requests']} good requests failed, "
              f"{load['bad']['refused_clearly']} of {load['bad']['requests']} bad ones were refused with "
              f"INVALID_ARGUMENT and a message naming the fault. One question alone (the baseline) took "
              f"{alone['p50_ms']:.1f} ms p50; under load {_number(load['by_kind']['one question'].get('p50_ms'))} ms "
              f"({_times(results['one_question_under_load_p50_vs_alone'])}). Afterwards the server answered "
              f"{results['healthy_after']['questions']} questions as before the load: "
              f"{results['healthy_after']['same_answers_as_before']}.", ""]
    return lines + _provenance(results)


def store_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    base, compact, ratios = results["baseline"], results["compact"], results["ratios"]
    lines = [f"{results['num_blocks']:,} synthetic blocks ({results['body_tokens']:,} body tokens; "
             f"{results['synthetic']}), opened as the in-memory BlockStore of before (the baseline, re-implemented "
             "in the benchmark) and as the compact, memory-mapped one.", ""]
    lines += _table(["store", "first open s", "later opens s", "bytes a token held"], [
        ["baseline (dicts of lists)", base["open_seconds"], base["open_seconds"], base["bytes_per_token"]],
        ["compact (uint16, mmap)", compact["build_seconds"], compact["open_seconds"],
         f"{compact['token_bytes_per_token_resident']} ids (+{compact['offset_bytes_per_token_resident']} offsets)"]])
    lines += [f"Later opens {_times(ratios['open_speedup'])} faster; {_times(ratios['memory_reduction'])} less "
              f"memory with every id and offset read ({compact['on_disk_bytes']:,} bytes on disk). Both first opens "
              "re-tokenize every text; the baseline paid that on every open, the compact store pays it once, "
              f"when it is built. The baseline's bytes a token are its Python heap (tracemalloc) over its first "
              f"{base.get('traced_blocks', 'N')} blocks; the compact store's are the resident pages of its maps.", ""]
    return lines + _provenance(results)


def inputs_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    examples, batches, ratios = results["examples"], results["batches"], results["ratios"]
    lengths = results["lengths"]
    lines = [f"{results['num_examples']:,} synthetic pre-training examples over {results['num_blocks']:,} synthetic "
             f"blocks ({results['synthetic']}). Reading them for training: held in a list of objects (the baseline, "
             f"as PretrainTask did before) against streamed from their shards, {results['window']:,} held and "
             "shuffled at a time.", ""]
    lines += _table(["examples", "one pass s", "examples/s", "heap at peak MiB"], [
        [name, examples[key]["seconds"], examples[key]["examples_per_second"],
         round(examples[key]["peak_heap_bytes"] / 2**20, 1)]
        for key, name in (("baseline", "baseline (a list)"), ("stream", "streamed (ShardedExampleStream)"))])
    lines += [f"Streamed, the examples hold {_times(ratios['stream_heap_vs_list'])} the list's heap (Python and numpy "
              "objects by tracemalloc; that heap stays at one window whatever the number of examples), and one pass "
              f"runs at {_times(ratios['stream_speed_vs_list'])} the list's speed.", ""]
    lines += [f"Assembling a batch of {results['batch_size']} examples with {results['num_candidates']} candidates "
              f"each (query {lengths['query']}, block {lengths['block']}, reader {lengths['reader']} wordpieces; the "
              "retrieval left out):", ""]
    lines += _table(["batch assembly", "batches/s", "p50 ms", "p99 ms"], [
        [name, batches[key]["batches_per_second"], batches[key]["p50_ms"], batches[key]["p99_ms"]]
        for key, name in (("baseline", "baseline (per example and block)"), ("gathered", "gathered (numpy)"))])
    lines += [f"Gathered: {_times(ratios['gathered_batches_vs_baseline'])} the baseline's batches a second, on the "
              "same batches in turns, every output checked equal.", ""]
    return lines + _provenance(results)


def _rescoring(build: Dict) -> str:
    """How an index version re-scores its candidates: "-" (brute force), or the count and dtype."""
    if not build.get("reorder_num_neighbors"):
        return "-"
    # Versions built before index.reorder_dtype existed re-scored in float32.
    return f"{build['reorder_num_neighbors']:,} in {build.get('reorder_dtype') or 'float32'}"


def scale_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    sizes = results["sizes"]
    lines = [f"The index stages at each N ({results['synthetic']}; the {results['index_config']} config's index "
             "settings). Each stage runs in a process of its own; peak RSS counts the mapped file pages it touched and "
             f"the {_gib(sizes[0]['build']['rss_after_imports_bytes'])} GiB TensorFlow and ScaNN take once imported.",
             ""]
    rows = []
    for size in sizes:
        build, verify, serve = size["build"], size["verify"], size["serve"]
        rows.append([f"{size['num_blocks']:,}", _gib(size["embeddings_bytes"]), build["build"]["method"],
                     build["build"]["num_leaves"] or "-", _rescoring(build["build"]), build["seconds"],
                     _gib(build["peak_rss_bytes"]),
                     verify["seconds"], serve["load_seconds"], _gib(serve["peak_rss_after_load_bytes"]),
                     serve["one_query"]["p50_ms"], serve["one_query"]["p99_ms"], serve["recall_at_10"],
                     _gib(size["index_bytes_on_disk"])])
    lines += _table(["N", "embeddings GiB", "method", "leaves", "re-scoring", "build s", "build peak GiB", "verify s",
                     "load s", "loaded GiB", "one query p50 ms", "p99 ms", "recall@10 vs exact", "on disk GiB"], rows)
    largest = sizes[-1]
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    build_peak, serve = largest["build"]["peak_rss_bytes"], largest["serve"]
    lines += [f"Against the targets for {largest['num_blocks']:,} blocks on this machine: the build's peak "
              f"{_gib(build_peak)} GiB against at most 20 GiB ({met(build_peak <= 20 * 2**30)}; it counts the "
              f"pages of the {_gib(largest['embeddings_bytes'])} GiB of memory-mapped embeddings resident at the "
              "time), recall@10 "
              f"{serve['recall_at_10']} against at least 0.95 ({met(serve['recall_at_10'] >= 0.95)}), one query "
              f"{serve['one_query']['p50_ms']} ms p50 against at most 5 ms ({met(serve['one_query']['p50_ms'] <= 5)}); "
              f"{largest['build']['build']['num_leaves_to_search']} of {largest['build']['build']['num_leaves']} "
              "leaves searched.", ""]
    if serve.get("sweep"):
        lines += [f"Searching other numbers of leaves at {largest['num_blocks']:,} blocks (ScaNN's leaves_to_search at "
                  "search time, the same searcher):", ""]
        lines += _table(["leaves searched", "one query p50 ms", "p99 ms", "recall@10 vs exact"], [
            [p["leaves_to_search"], p["one_query"]["p50_ms"], p["one_query"]["p99_ms"], p["recall_at_10"]]
            for p in serve["sweep"]] + [[f"{largest['build']['build']['num_leaves_to_search']} (the build's)",
                                         serve["one_query"]["p50_ms"], serve["one_query"]["p99_ms"],
                                         serve["recall_at_10"]]])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    n = [size["num_blocks"] for size in sizes]
    for stage, key in (("build", "seconds"), ("verify", "seconds"), ("serve", "load_seconds")):
        left.plot(n, [size[stage][key] for size in sizes], "o-", label="load" if stage == "serve" else stage)
    for stage, key in (("build", "peak_rss_bytes"), ("serve", "peak_rss_after_load_bytes")):
        right.plot(n, [_gib(size[stage][key]) for size in sizes], "o-", label="load" if stage == "serve" else stage)
    for ax, label in ((left, "seconds"), (right, "peak RSS GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("blocks N (log)")
        ax.set_ylabel(f"{label} (log)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    _save(plt, fig, images / "scale.png")
    lines += [f"![index stages against N]({images.name}/scale.png)", ""]
    return lines + _provenance(results)


QA_TARGET_BLOCKS = 1_000_000  # Issue 15: a QA export of 1M blocks served in under 4 GB.


def scale_blocks_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    """The block store and QA export stages of benchmarks.scale, at the sizes that have them."""
    sizes = [size for size in results["sizes"] if "store" in size]
    if not sizes:
        return ["No size of this run has blocks (each N was above --blocks_max).", ""]
    kinds = [stage.split(":", 1)[1] for stage in sizes[0] if stage.startswith("qa_serve:")]
    lines = ["Synthetic blocks of 288 wordpieces (random whole words of the BERT vocabulary, so every text "
             "re-tokenizes to its ids; the texts are longer in bytes than English: "
             f"{sizes[-1]['store']['bytes_on_disk'] / sizes[-1]['num_blocks'] / 1024:.1f} KiB of store a block), the "
             "index over them as above, and QA exports of the tiny config's model with random weights (neither the "
             "size nor the speed of serving depends on them). Each stage runs in a process of its own; 'served' is "
             "the resident memory of a fresh process that loaded the export and answered one question at a time.",
             ""]
    rows = [[f"{size['num_blocks']:,}", f"{size['body_tokens']:,}", size["synthetic_blocks_write_seconds"],
             size["store"]["seconds"], _gib(size["store"]["peak_rss_bytes"]), _gib(size["store"]["bytes_on_disk"]),
             round(size["store"]["bytes_on_disk"] / size["body_tokens"], 1), size["batches"]["store_open_seconds"],
             size["batches"]["batches_per_second"], _gib(size["batches"]["peak_rss_bytes"])] for size in sizes]
    lines += _table(["N", "body tokens", "shards written s", "store build s", "build peak GiB", "store on disk GiB",
                     "store bytes a token", "store open s", "pre-training batches/s (32 x 8)", "batches peak GiB"],
                    rows)
    lines += _qa_export_table(sizes, kinds)
    largest = sizes[-1]
    peak = max(largest[f"qa_serve:{kind}"]["peak_rss_bytes"] for kind in kinds)
    if largest["num_blocks"] >= QA_TARGET_BLOCKS:
        # The target says 4 GB; each export is judged in decimal GB, GiB beside it.
        judged = [f"{kind} {_gib(largest[f'qa_serve:{kind}']['peak_rss_bytes'])} GiB = "
                  f"{largest[f'qa_serve:{kind}']['peak_rss_bytes'] / 1e9:.2f} GB "
                  f"({'met' if largest[f'qa_serve:{kind}']['peak_rss_bytes'] < 4e9 else 'not met'})" for kind in kinds]
        lines += [f"Against the target for {QA_TARGET_BLOCKS:,} blocks (served in under 4 GB): at "
                  f"{largest['num_blocks']:,} the QA exports' peaks are {'; '.join(judged)}.", ""]
    else:
        lines += [f"The target (a QA export of {QA_TARGET_BLOCKS:,} blocks served in under 4 GB) is not measured by "
                  f"this run: its largest size is {largest['num_blocks']:,} blocks, served in at most {_gib(peak)} GiB "
                  "at the peak.", ""]
    return lines + _provenance(results)


def _qa_export_table(sizes: List[Dict], kinds: List[str]) -> List[str]:
    """The qa_export and qa_serve stages of benchmarks.scale, a row per kind and size."""
    rows = []
    for kind in kinds:
        served = [size for size in sizes if f"qa_serve:{kind}" in size]
        for i, size in enumerate(served):
            export, serve = size[f"qa_export:{kind}"], size[f"qa_serve:{kind}"]
            # What a million more blocks cost the server: the slope from the size before
            # (the model and TensorFlow's own memory are in both).
            slope = "-" if i == 0 else _gib(
                (serve["rss_at_end_bytes"] - served[i - 1][f"qa_serve:{kind}"]["rss_at_end_bytes"])
                / (size["num_blocks"] - served[i - 1]["num_blocks"]) * 1e6)
            rows.append([f"{size['num_blocks']:,}", kind, export["seconds"], _gib(export["peak_rss_bytes"]),
                         _gib(export["bytes_on_disk"]), serve["load_seconds"], _gib(serve["rss_after_load_bytes"]),
                         _gib(serve["peak_rss_bytes"]), slope, serve["one_question"]["p50_ms"],
                         serve["one_question"]["p99_ms"]])
    return _table(["N", "retrieval", "export s", "export peak GiB", "export on disk GiB", "load s",
                   "served GiB after load", "served peak GiB", "GiB per million more blocks", "one question p50 ms",
                   "p99 ms"], rows)


STORE_TARGET_BYTES_PER_TOKEN = 3.0  # Issue 15: the block store at most 3 bytes a token resident.


def scale_store_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    """The streamed block store of benchmarks.scale (sizes above --blocks_max): build, disk,
    resident bytes a token and batch assembly, against the 3-bytes-a-token target."""
    sizes = [size for size in results["sizes"] if "store_streamed" in size]
    if not sizes:
        return ["No size of this run has a streamed store (--streamed_blocks_max).", ""]
    lines = ["Synthetic blocks as in the section above, streamed: each shard written, its piece of the store "
             "built, the shard deleted, by a process a CPU (the shards and the store of 13.35M blocks do not fit "
             "this machine's disk together). 'write s' and 'build s' add up every piece's seconds in its worker; "
             "the wall time is each attempt's, from its start to its last piece (a run cut short resumes at its "
             "next piece with --resume).", ""]
    rows = []
    for size in sizes:
        store = size["store_streamed"]
        read = size.get("store_read", {})
        batches = size.get("batches", {})
        rows.append([f"{size['num_blocks']:,}", f"{store['body_tokens']:,}", store["shards"], store["build_workers"],
                     "; ".join(f"{a['pieces']} pieces in {a['wall_seconds']:,.0f} s" for a in store["attempts"]),
                     f"{store['write_shard_seconds']:,.0f}", f"{store['build_piece_seconds']:,.0f}",
                     _gib(store["workers_peak_rss_bytes"]), _gib(store["bytes_on_disk"]),
                     round(store["bytes_on_disk"] / store["body_tokens"], 1),
                     read.get("resident_bytes_per_body_token", "-"), batches.get("batches_per_second", "-")])
    lines += _table(["N", "body tokens", "shards", "workers", "attempts (wall)", "write s", "build s",
                     "worker peak GiB", "store on disk GiB", "on disk bytes a token",
                     "resident bytes a body token, every id read", "pre-training batches/s (32 x 8)"], rows)
    largest = sizes[-1]
    resident = largest.get("store_read", {}).get("resident_bytes_per_body_token")
    if resident is not None:
        verdict = "met" if resident <= STORE_TARGET_BYTES_PER_TOKEN else "not met"
        lines += [f"Against the target at {largest['num_blocks']:,} blocks (the store at most "
                  f"{STORE_TARGET_BYTES_PER_TOKEN:g} bytes a token resident): {resident} bytes a body token once every "
                  f"title and body id is read ({verdict}); the character offsets (read only for the blocks an answer "
                  "comes from) are on disk beside them.", ""]
    return lines + _provenance(results)


def scale_two_part_section(results: Dict, images: pathlib.Path, plt, smaller: Optional[Dict] = None) -> List[str]:
    """Two-part deployments (`--parts two`) of benchmarks.scale over streamed stores: what the
    retriever, the reader and the lookup hold together, per N; with `smaller` (the
    scale_blocks results), a plot of every QA export's served memory against N."""
    sizes = [size for size in results["sizes"] if any(stage.startswith("qa_serve:") for stage in size)]
    if not sizes:
        return ["No size of this run served a QA export.", ""]
    kinds = sorted({stage.split(":", 1)[1] for size in sizes for stage in size if stage.startswith("qa_serve:")})
    bodies = sorted({size["body_tokens"] // size["num_blocks"] for size in sizes})
    lines = [f"Synthetic blocks with bodies of {', '.join(map(str, bodies))} wordpieces (random whole words; the "
             "store streamed as above; shorter than a real block's 270 so that the store, the index and the exports "
             "fit this machine's disk together: the retriever holds the index, the reader the model, and every "
             "block is packed to the reader's length, so neither depends on the texts' length), the index over "
             "128-d synthetic embeddings as above, and each two-part deployment exported from the tiny config's "
             "model with random weights. Its retriever, its reader and the store's lookup are loaded in one fresh "
             "process that answers one question at a time: 'served' is all that the two servers and the lookup "
             "hold together.", ""]
    lines += _table(["N", "store on disk GiB", "index build s", "index build peak GiB", "index on disk GiB"],
                    [[f"{size['num_blocks']:,}", _gib(size["store_streamed"]["bytes_on_disk"]),
                      size["build"]["seconds"], _gib(size["build"]["peak_rss_bytes"]),
                      _gib(size.get("index_bytes_on_disk", 0))] for size in sizes if "build" in size])
    lines += _qa_export_table(sizes, kinds)
    everything = (smaller or {}).get("sizes", []) + sizes
    served = sorted({stage.split(":", 1)[1] for size in everything for stage in size
                     if stage.startswith("qa_serve:")})
    if smaller:
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind in served:
            points = [(size["num_blocks"], size[f"qa_serve:{kind}"]["peak_rss_bytes"] / 2**30)
                      for size in everything if f"qa_serve:{kind}" in size]
            ax.plot(*zip(*points), "o-", label=kind)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("blocks N (log)")
        ax.set_ylabel("served peak RSS GiB (log)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        _save(plt, fig, images / "scale_qa_served.png")
        lines += ["Every QA export's served peak against N, this run's and the block store section's "
                  "(whose blocks have full 270-wordpiece bodies):", "",
                  f"![served memory against N]({images.name}/scale_qa_served.png)", ""]
    return lines + _provenance(results)


def sentence_vectors_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    """benchmarks.sentence_vectors: dense recall with each block's best sentence beside its own vector."""
    lines = [f"{results['num_questions']:,} questions (`{pathlib.Path(results['qa']).name}`) over "
             f"{results['num_blocks']:,} blocks, split into {results['num_sentences']:,} sentences "
             f"({results['sentence_splitter']} splitter), each embedded after its block's title by the block tower of "
             f"the index version's own embedder export ({results['sentences_per_second']} sentences/s); nothing "
             f"trained. A block scores {results['score']}; w = 1 is the index as it is. The weights were compared on "
             "these questions (the tuning set), so the best of them is a tuned figure.", ""]
    rows = [[w, *(f"{recall[f'recall@{k}']:.3f}" for k in (1, 5, 20))]
            for w, recall in results["recall_by_block_weight"].items()]
    rows.append(["BM25 (same blocks)", *(f"{results['bm25'][f'recall@{k}']:.3f}" for k in (1, 5, 20))])
    lines += _table(["block weight w", "recall@1", "recall@5", "recall@20"], rows)
    best = max(results["recall_by_block_weight"].items(), key=lambda item: item[1]["recall@5"])
    verdict = "at or above" if best[1]["recall@5"] >= results["bm25"]["recall@5"] else "below"
    alone = results["recall_by_block_weight"].get("1.0")
    lines += [f"Best recall@5: {best[1]['recall@5']:.3f} at w = {best[0]}, {verdict} BM25's "
              f"{results['bm25']['recall@5']:.3f}" + (f" (the block vectors alone: {alone['recall@5']:.3f})" if alone
                                                       else "") + f". Index version `{results['index_version']}`.", ""]
    return lines + _provenance(results)


def _stage_budgets(results: Dict) -> List[str]:
    training = results.get("stages", {}).get("training", {})
    rows = [[stage, b.get("steps"), b.get("batch_size"), b.get("examples_seen"), b.get("learning_rate"),
             b.get("wall_seconds")] for stage, b in training.items()]
    if not rows:
        return []
    return ["Training budget of each stage (a system's budget is the sum of the stages behind it):", ""] + _table(
        ["stage", "steps", "batch", "examples seen", "learning rate", "wall s"], rows)


def _resumed_stages(results: Dict) -> List[str]:
    """What a run resumed with --resume says of its stages' attempts (benchmarks.stage_ledger)."""
    stages = results.get("stage_attempts") or {}
    again = {name: e for name, e in stages.items() if e.get("attempts", 1) > 1}
    noted = {name: e["note"] for name, e in stages.items() if e.get("note")}
    if not again and not noted:
        return []
    lines = []
    if again:
        lines += ["The run was resumed (`--resume`) after it was cut short; each wall time above adds up every "
                  "attempt: " + "; ".join(f"{name} {e['attempts']} attempts, {e['seconds']:.0f} s in all"
                                          for name, e in again.items()) + ".", ""]
    lines += [f"- {name}: {note}" for name, note in noted.items()]
    return lines + ([""] if noted else [])


def _pretraining_curves(results: Dict, images: pathlib.Path, plt, name: str) -> List[str]:
    """REALM pre-training's masked-LM accuracy and retrieval utility per step, when the run recorded them."""
    curves = results.get("stages", {}).get("training", {}).get("pretrain", {}).get("curves") or {}
    shown = [tag for tag in ("mlm_accuracy", "retrieval_utility") if curves.get(tag, {}).get("steps")]
    if not shown:
        return []
    fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3.2), squeeze=False)
    summary = []
    for ax, tag in zip(axes[0], shown):
        steps, values = curves[tag]["steps"], curves[tag]["values"]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        ax.set_xlabel("pre-training step")
        ax.set_title(tag)
        head = values[:max(1, len(values) // 10)]
        tail = values[-max(1, len(values) // 10):]
        summary.append(f"{tag} {sum(head) / len(head):.3f} over the first {len(head)} logged steps and "
                       f"{sum(tail) / len(tail):.3f} over the last {len(tail)}")
    path = f"{name}_pretraining.png"
    _save(plt, fig, images / path)
    return [f"REALM pre-training, from its TensorBoard events ({len(curves[shown[0]]['steps'])} logged steps): "
            + "; ".join(summary) + ". Retrieval utility is the masked-LM log-likelihood with the retrieved blocks "
            "minus that with the null document: above 0 when retrieval helps the masked-LM head.", "",
            f"![pre-training curves]({images.name}/{path})", ""]


def quality_section(results: Dict, images: pathlib.Path, plt, name: str = "quality") -> List[str]:
    systems = results["systems"]
    metrics = [m for m in next(iter(systems.values())) if m.startswith("recall@")] + ["exact_match", "f1"]
    dense = [m for prefix in ("dense_recall@", "sentence_recall@")
             for m in sorted({m for s in systems.values() for m in s if m.startswith(prefix)},
                             key=lambda m: int(m.split("@")[1]))]
    lines = [results.get("description", "Open-QA quality per system.") + ".", ""]
    if results.get("finetune_retrieval"):
        lines += [f"Fine-tuned and evaluated over `{results['finetune_retrieval']}` retrieval (`--finetune_retrieval`)"
                  + ("; dense_recall@k is each system's dense retriever alone, no reader." if dense else "."), ""]
    sentences = results.get("sentence_vectors")
    if sentences:
        lines += [f"sentence_recall@k: the same dense retriever over its index rebuilt with sentence vectors "
                  f"(block weight {sentences['block_weight']}, the best {sentences['rescore_depth']} blocks "
                  "re-scored).", ""]
    lines += _table(["system"] + metrics + dense + ["train steps", "train wall s"],
                    [[system] + [s.get(m) for m in metrics + dense] + [s.get("budget", {}).get("train_steps"),
                                                               s.get("budget", {}).get("training_wall_seconds")]
                     for system, s in systems.items()])
    lines += _stage_budgets(results) + _resumed_stages(results)
    if results.get("measured", {}).get("statement"):
        lines += [results["measured"]["statement"], ""]
    against = results.get("dense_against_bm25")
    if against:
        k = against["k"]
        lines += [f"Dense retrieval alone against BM25 over the same blocks, recall@{k}: "
                  + ", ".join(f"{name} {_number(value)}" for name, value in against["dense"].items())
                  + ("; with sentence vectors, " + ", ".join(
                      f"{name} {_number(value)}" for name, value in against["dense_with_sentence_vectors"].items())
                     if against.get("dense_with_sentence_vectors") else "")
                  + f"; BM25 {_number(against['bm25'])} (the target, dense at or above BM25: "
                  + ("met" if against["best_dense_at_least_bm25"] else "not met") + ").", ""]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(systems)
    for j, (system, s) in enumerate(systems.items()):
        ax.bar([i + (j - (len(systems) - 1) / 2) * width for i in range(len(metrics))],
               [s.get(m) or 0 for m in metrics], width, label=system)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(metrics)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"{results.get('num_questions', '?')} questions")
    _save(plt, fig, images / f"{name}.png")
    lines += [f"![recall@k, EM and F1 per system]({images.name}/{name}.png)", ""]
    return lines + _pretraining_curves(results, images, plt, name) + _provenance(results)


def hybrid_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    recall, best = results["recall"], results["best"]
    label = lambda f: (f"rrf, c = {f['rrf_constant']:g}" if f["fusion"] == "rrf"  # noqa: E731
                       else f"interpolation, dense weight {f['dense_weight']:g}")
    lines = [f"{results['num_questions']:,} qa_dev questions over {results['num_blocks']:,} blocks "
             f"(`{results['index_version']}`; lexical index {results['lexical_index']}); each retriever proposes "
             f"{results['candidates']} blocks, both score their union, the fusion orders it. The fusion was tuned "
             "on these questions (qa_dev is the tuning set), so its figure is a tuned one.", ""]
    rows = [[name, *(recall[name][f"recall@{k}"] for k in (1, 5, 20))] for name in ("bm25s", "lexical", "dense")]
    rows.append([f"hybrid ({label(best)})", *(best[f"recall@{k}"] for k in (1, 5, 20))])
    lines += _table(["retriever", "recall@1", "recall@5", "recall@20"], rows)
    lines += ["Every fusion of the sweep:", ""]
    lines += _table(["fusion", "recall@1", "recall@5", "recall@20"],
                    [[label(f), *(f[f"recall@{k}"] for k in (1, 5, 20))] for f in results["fusions"]])
    agreement, speed, memory = results["lexical_vs_bm25s"], results["speed"], results["memory"]
    lines += [f"The in-graph lexical retriever (BM25 over WordPiece ids, TF ops) puts bm25s's first block first for "
              f"{_number(agreement['top1_agreement'])} of the questions and shares {_number(agreement['overlap@20'])} "
              f"of its top 20. Ranking every question took {speed['lexical_seconds']:.3f} s in TF ops against "
              f"{speed['bm25s_seconds']:.3f} s for bm25s on the host "
              f"({_times(speed['lexical_speedup_over_bm25s'])} its speed). Its postings take {memory['bytes_per_block']} bytes a block ({memory['postings']:,} "
              "postings).", ""]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = ["bm25s", "lexical", "dense", "hybrid"]
    for i, k in enumerate((1, 5, 20)):
        values = [recall[n][f"recall@{k}"] for n in names[:3]] + [best[f"recall@{k}"]]
        ax.bar([x + 0.27 * (i - 1) for x in range(len(names))], values, width=0.27, label=f"recall@{k}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    _save(plt, fig, images / "hybrid_retrieval.png")
    lines += [f"![recall@k per retriever]({images.name}/hybrid_retrieval.png)", ""]
    return lines + _provenance(results)


def lexical_scale_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    build, serve = results["build"], results["serve"]
    lexical, dense = serve["one_question"]["lexical"], serve["one_question"]["dense_exact"]
    lines = [f"{results['num_blocks']:,} synthetic blocks ({results['synthetic']}; "
             f"{results['distinct_body_terms_per_block']} distinct body terms a block), each stage in its own "
             "process.", ""]
    lines += _table(["stage", "seconds", "peak RSS GiB", "figure"], [
        ["build the lexical index", build["build_seconds"], _gib(build["peak_rss_bytes"]),
         f"{build['postings_per_block']} postings, {build['bytes_per_block']} bytes a block "
         f"({_gib(build['bytes'])} GiB in all)"],
        ["load it as TF variables", serve["load_seconds"], _gib(serve["peak_rss_bytes"]),
         f"RSS {_gib(serve['rss_after_load_bytes'])} GiB after the load, "
         f"{_gib(serve['rss_after_imports_bytes'])} of it TensorFlow's imports (the peak adds the dense "
         "embeddings timed beside it)"]])
    lines += _table(["one question, top " + str(results["candidates"]), "p50 ms", "p99 ms"], [
        ["lexical (BM25 over every block)", lexical["p50_ms"], lexical["p99_ms"]],
        ["dense exact (matmul + top_k, 128-d)", dense["p50_ms"], dense["p99_ms"]]])
    lines += [f"The lexical part costs {_times(results['ratios']['lexical_p50_over_dense_exact_p50'])} the dense "
              "exact search's p50, timed in turns in the same process: what it adds to a hybrid export's retrieval.",
              ""]
    return lines + _provenance(results)


def spans_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    detectors, labels, corpus = results["detectors"], results["labels"], results["corpus"]
    names = list(detectors)
    lines = [f"Each detector masks the sentences of the embedded corpus ({corpus['documents']:,} documents, "
             f"{corpus['blocks']:,} blocks of {corpus['block_length']} wordpieces) with "
             "`beam_pipelines.make_pretraining_examples` on the DirectRunner, and is judged on the "
             f"{labels['sentences']} hand-labelled sentences of `benchmarks/data/{labels['file']}` "
             f"({labels['labelled_spans']} labelled names and dates, from the {len(labels['articles'])} qa_dev "
             "articles' paragraphs; the rules of labelling in `benchmarks/data/README.md`). A span counts as a named "
             "entity or date when it lies inside a labelled one. spaCy's entity types: "
             f"{', '.join(results['entity_types'])}, with the date regex.", ""]
    rows = []
    for name in names:
        run, judged = detectors[name]["pipeline"], detectors[name]["labelled"]
        rows.append([name, run["with_a_span"], run["masked_salient"], judged["entity_or_date"],
                     judged["exactly_a_labelled_span"], judged["masked_span_entity_or_date_expected"],
                     judged["labelled_spans_found_exactly"], run["sentences_per_second"],
                     _times(detectors[name]["pipeline"]["speed_vs_first"])])
    lines += _table(["detector", "sentences with a span", "masked salient", "spans: entity or date",
                     "spans: exactly one", "masked spans: entity or date", "labelled found exactly",
                     "sentences/s", "speed vs " + names[0]], rows)
    lines += [f"Sentences/s: the fastest of {len(detectors[names[0]]['pipeline']['runs_seconds'])} runs each, the "
              "detectors taking turns, each run paying Beam's start and the detector's load "
              f"({results['corpus']['documents']:,} documents; Beam options: "
              f"{' '.join(results['beam_args']) or 'none'}). Masked spans: those the pipeline can mask (1 to "
              "pretrain.max_masked_tokens wordpieces), drawn uniformly per sentence as it draws them.", ""]
    for name in names:
        wrong = detectors[name]["labelled"]["not_entities_or_dates"]
        lines += [f"{name}'s spans that are not a name or date ({len(wrong)}): "
                  + ", ".join(f"\"{w}\"" for w in wrong[:40]) + (", ..." if len(wrong) > 40 else ""), ""]
    return lines + _provenance(results)


def finetune_steps_section(results: Dict, images: pathlib.Path, plt) -> List[str]:
    """Exact match on all of qa_dev at each kept checkpoint of one longer fine-tuning run."""
    budget = results["budget"]["finetune"]
    lines = [f"{results['what']}. Fine-tuning: {budget['steps']:,} steps at batch {budget['batch_size']} "
             f"({budget['examples_seen']:,} questions seen, {budget['qa_train_questions']:,} in qa_train, whose "
             f"articles are not qa_dev's), learning rate {budget['learning_rate']:g} after {budget['warmup_steps']} "
             f"warm-up steps, {budget['trainable']}, the beam {budget['beam']}, {budget['blocks_read']} blocks read; "
             f"lengths {budget['lengths']}; {budget['wall_seconds']:,.0f} s ({budget['seconds_per_step']} s a step), "
             f"{results['budget']['quickstart_total_seconds']:,.0f} s for the whole quickstart; "
             f"{results['budget']['machine']}.", ""]
    # The step a checkpoint was saved at: the number ending its path (".../ckpt-1500").
    step = lambda entry: int(entry["checkpoint"].rsplit("-", 1)[1])  # noqa: E731
    entries = sorted(results["results"].values(), key=lambda e: (step(e), e["top_k"]))
    rows = [[step(e), e["top_k"], e["recall@1"], e["recall@5"], e["recall@20"],
             round(100 * e["exact_match"], 1), round(100 * e["f1"], 1), e.get("evaluation_wall", "-")]
            for e in entries]
    lines += _table(["after step", "blocks read", "recall@1", "recall@5", "recall@20", "EM", "F1",
                     "evaluation (m:ss)"], rows)
    best = max(entries, key=lambda e: e["exact_match"])
    lines += [f"Against the target of exact match at least 40 on all {best['num_questions']:,} qa_dev questions: "
              f"{100 * best['exact_match']:.1f} ({'met' if best['exact_match'] >= 0.4 else 'not met'}). The "
              f"quickstart's own export of the run, through its signature, on the 300-question sample: exact match "
              f"{100 * results['quickstart_export_sample']['exact_match']:.1f}.", ""]
    read_5 = [e for e in entries if e["top_k"] == 5]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [step(e) for e in read_5]
    ax.plot(steps, [100 * e["exact_match"] for e in read_5], "o-", label="exact match")
    ax.plot(steps, [100 * e["f1"] for e in read_5], "s-", label="F1")
    ax.set_xlabel("fine-tuning steps (batch 8)")
    ax.set_ylabel("% on all of qa_dev")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, images / "finetune_steps.png")
    lines += [f"![exact match and F1 against fine-tuning steps]({images.name}/finetune_steps.png)", ""]
    return lines + [f"Commands: `{results['commands']['run']}`, then `{results['commands']['evaluate']}`; "
                    f"commit {results['commit']}, {results['date']}.", ""]


SECTIONS: List[tuple] = [
    # (key, title, section function, the command that makes the results)
    ("retrieval", "Retrieval: ScaNN vs exact, and the recall/throughput curve", retrieval_section,
     "python -m benchmarks.retrieval_latency"),
    ("indexing", "Indexing throughput", indexing_section, "python -m benchmarks.indexing_throughput"),
    ("training", "Training throughput and MFU", training_section, "python -m benchmarks.training_throughput"),
    ("training_gpu", "Training throughput and MFU on a GPU", lambda r, i, p: training_section(
        r, i, p, "training_throughput_gpu"), "python -m benchmarks (on a machine with a GPU)"),
    ("serving", "Serving latency: the QA exports", serving_section, "python -m benchmarks.serving_latency"),
    ("demo", "The demo page: its cost over a direct SavedModel call", demo_section, "python -m benchmarks.demo_page"),
    ("load", "Serving under load: concurrent clients, good and bad requests", load_section,
     "python -m benchmarks.serving_load"),
    ("store", "The block store: compact and memory-mapped vs in memory", store_section,
     "python -m benchmarks.block_store"),
    ("inputs", "Pre-training inputs: streamed and gathered vs held in lists", inputs_section,
     "python -m benchmarks.pretraining_inputs"),
    ("scale", "Scale: the index stages from 100k blocks to Wikipedia's 13.35M", scale_section,
     "python -m benchmarks.scale"),
    ("scale_blocks", "Scale: the block store and the QA export", scale_blocks_section,
     "python -m benchmarks.scale --sizes 100000,1000000 --output benchmarks/results/scale_blocks.json"),
    ("scale_store", "Scale: the block store streamed, up to Wikipedia's 13.35M blocks", scale_store_section,
     "python -m benchmarks.scale --blocks_max 0 --streamed_blocks_max 13353718 --stages store_streamed,store_read,batches "
     "--output benchmarks/results/scale_store.json"),
    ("scale_two_part", "Scale: the two-part deployment at Wikipedia's 13.35M blocks", scale_two_part_section,
     "python -m benchmarks.scale --sizes 13353718 --blocks_max 0 --streamed_blocks_max 13353718 --body_tokens 16 "
     "--stages store_streamed,build,qa_export,qa_serve --qa_retrieval two_part_scann "
     "--output benchmarks/results/scale_two_part.json"),
    ("hybrid", "Hybrid retrieval: dense and lexical fused, on qa_dev", hybrid_section,
     "python -m benchmarks.hybrid_retrieval (after the quickstart)"),
    ("sentences", "Sentence vectors: each block's best sentence beside its own vector", sentence_vectors_section,
     "python -m benchmarks.sentence_vectors --blocks_dir DIR --index DIR (after the quickstart)"),
    ("lexical_scale", "Hybrid retrieval at scale: the lexical index over 1M blocks", lexical_scale_section,
     "python -m benchmarks.lexical_scale"),
    ("spans", "Salient spans: the rules against spaCy's NER", spans_section,
     "python -m benchmarks.salient_spans"),
    ("quality", "Quality: open-QA on squad_open qa_dev", quality_section, "python -m benchmarks.quality"),
    ("quality_full", "Quality at the full budget: every qa_dev question", lambda r, i, p: quality_section(
        r, i, p, "quality_full"), "python -m benchmarks.quality --size full --sample 0"),
    ("finetune_steps", "Fine-tuning longer: exact match against steps on every qa_dev question",
     finetune_steps_section, "the quickstart with more fine-tuning steps, then python -m realm_tf.evaluate"),
]


def _summary_lines(summary: Optional[Dict]) -> List[str]:
    if not summary:
        return ["No summary.json yet: run `python -m benchmarks`.", ""]
    machine = summary.get("machine", {})
    lines = [f"Last suite run: `{summary['suite']}` (size {summary['size']}), {machine.get('cpus')} CPUs, "
             f"{summary.get('gpu') or 'no GPU'}, TensorFlow {machine.get('tensorflow')}, {machine.get('platform')}, "
             f"{machine.get('date')}; {summary['wall_seconds']:.0f} s in all.", ""]
    rows = [[name, e["status"], e.get("wall_seconds"), e.get("size"), e.get("date"), f"`{e['results']}`"]
            for name, e in summary.get("benchmarks", {}).items()]
    return lines + _table(["benchmark", "status", "wall s", "size", "run at", "results"], rows)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Writes the page and its plots; returns {"page": path, "images": [paths]}."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=pathlib.Path, default=RESULTS_DIR)
    parser.add_argument("--output", type=pathlib.Path, default=DOCS, help="the page (default: docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        parser.error(f"--results_dir {args.results_dir}: no such directory")
    plt = _figure_module()
    loaded = {}
    for key, name in FILES.items():
        path = args.results_dir / name
        if path.exists():
            try:
                loaded[key] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                parser.error(f"{path}: not valid JSON: {e}")
    # A results file without its command (written before benchmarks recorded one): take the suite's.
    for key, entry in loaded.get("summary", {}).get("benchmarks", {}).items():
        if key in loaded and "command" not in loaded[key] and entry.get("argv") and entry.get("status") == "ok":
            loaded[key]["command"] = " ".join(["python", "-m", entry["module"], *entry["argv"]])
    images = args.output.parent / args.output.stem
    images.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmarks", "",
             "Generated by `python -m benchmarks.report` from the JSON in `benchmarks/results/`; do not edit by hand. "
             "`python -m benchmarks` re-runs the suite (`--size large` for the larger sizes, `--only NAME[,NAME]` for "
             "some) and regenerates this page. Every figure is measured against its baseline in the same run; the "
             "machine is shared (2 CPU cores here, other work running), so compare within a run, not across runs. "
             "The load average recorded with each result says how busy the machine was.", "",
             "## Suite", ""] + _summary_lines(loaded.get("summary"))
    for key, title, section, command in SECTIONS:
        if key == "training_gpu" and key not in loaded:
            continue
        lines += [f"## {title}", ""]
        entry = loaded.get("summary", {}).get("benchmarks", {}).get(key, {})
        if entry and entry.get("status") != "ok":
            lines += [f"**The last suite run's {key} benchmark {entry['status']}** ({entry.get('date')}); "
                      + ("the figures below come from an earlier run." if key in loaded else "no figures yet."), ""]
        if key == "scale_two_part":  # Its plot spans the smaller sizes' exports too.
            section = functools.partial(section, smaller=loaded.get("scale_blocks"))
        if key in loaded:
            try:
                lines += section(loaded[key], images, plt)
            except (KeyError, TypeError, ZeroDivisionError) as e:
                lines += [f"`{FILES[key]}` does not have the expected layout ({type(e).__name__}: {e}); re-run "
                          f"`{command}`.", ""]
        else:
            lines += [f"Not measured yet: `{command}` writes `benchmarks/results/{FILES[key]}`.", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    written = sorted(str(p) for p in images.glob("*.png"))
    print(f"wrote {args.output} and {len(written)} plots in {images}")
    return {"page": str(args.output), "images": written}


if __name__ == "__main__":
    main()
    sys.exit(0)

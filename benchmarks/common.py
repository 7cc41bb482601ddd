"""What the benchmark modules share: results files, machine info, timing in turns, small real pipelines.

    from benchmarks import common
    seconds, outputs = common.timed_in_turns({"a": call_a, "b": call_b}, inputs, warmup=10)
    common.latency_ms(seconds["a"])          # {"p50_ms", "p99_ms", "mean_ms"}
    common.write_results(path, results)      # JSON, with the machine and the command that made it

Figures of a benchmark are compared with a baseline measured in the same run, and the
systems compared take turns call by call (`timed_in_turns`), so that load from other
work on a shared machine falls on all alike. The load average is recorded at the start
and the end of each benchmark: on 2 shared cores it says how much other work there was.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
QA_DIR = REPO / "realm_tf" / "assets" / "squad_open"
CORPUS = QA_DIR / "corpus.jsonl"
# Written last into a prepared pipeline directory: what it was built with.
PREPARED = "prepared.json"


def load_average() -> List[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(load, 2) for load in os.getloadavg()]


def gpu_names() -> List[str]:
    """Names of the GPUs TensorFlow sees (e.g. ["NVIDIA H100 80GB HBM3"]); [] on CPU."""
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def rss_bytes() -> int:
    """This process's resident memory now."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB.


def children_peak_rss_bytes() -> int:
    """The peak resident memory of the largest child process this process has waited for."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def report_stage(figures: Dict[str, Any], started: float) -> None:
    """Ends a `run_stage`: adds its seconds since `started` (perf_counter) and this process's
    peak RSS to `figures`, and prints them on the "STAGE {json}" line `stage_in_child` reads."""
    figures["seconds"] = round(time.perf_counter() - started, 2)
    figures["peak_rss_bytes"] = peak_rss_bytes()
    print("STAGE " + json.dumps(figures), flush=True)


def stage_in_child(module: str, stage: str, *args: Any) -> Dict[str, Any]:
    """Runs `module.run_stage(stage, *args)` (as strings) in a new Python, so that its peak RSS
    is its own, and returns the figures it printed on its last "STAGE {json}" line."""
    code = f"import sys, {module} as m; m.run_stage(*sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, stage, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("STAGE ")]
    if done.returncode or not lines:
        raise RuntimeError(f"stage {stage} ({' '.join(map(str, args))}) failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("STAGE "):])


def machine_info() -> Dict[str, Any]:
    """CPU count, platform, Python and TensorFlow versions, GPUs, load average and the date (UTC)."""
    import tensorflow as tf

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": gpu_names(),
        "load_average_1_5_15_min_at_start": load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def command_line(module: str, argv: Optional[Sequence[str]]) -> str:
    """The command that reproduces a run, e.g. "python -m benchmarks.serving_latency --calls 50"."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module] + [shlex.quote(str(a)) for a in args])


def write_results(path: pathlib.Path, results: Dict[str, Any]) -> Dict[str, Any]:
    """Writes `results` as JSON to `path`, adding the load average at the end to its "machine"."""
    results.setdefault("machine", {})["load_average_1_5_15_min_at_end"] = load_average()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return results


def latency_ms(seconds: Sequence[float]) -> Dict[str, float]:
    """p50, p99 and mean, in milliseconds, of wall times in seconds."""
    if len(seconds) == 0:
        raise ValueError("no timings to summarize")
    ms = 1000 * np.asarray(seconds, np.float64)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def ratio(figure: float, baseline: float, digits: int = 3) -> float:
    """figure / baseline, rounded; a "times the baseline" figure (0.0 when the baseline is 0)."""
    return round(float(figure) / float(baseline), digits) if baseline else 0.0


def timed_in_turns(calls: Mapping[str, Callable[[Any], Any]], inputs: Sequence[Any], warmup: int = 0
                   ) -> Tuple[Dict[str, List[float]], Dict[str, List[Any]]]:
    """Calls every system on every input, in turns, timing each call.

    For input i, the systems run one after another, the first rotating with i, so that
    none always runs on caches another warmed and load from other work falls on all
    alike. Each call must return its result fetched to the host (e.g. `.numpy()`), so
    that its wall time covers the work.

    Args:
      calls: name -> function of one input.
      inputs: the inputs, in order; the first `warmup` are not timed.
      warmup: how many inputs to run untimed first.

    Returns:
      (seconds: name -> wall times of the timed calls, outputs: name -> every call's
      result, warm-up included, in input order).
    """
    names = list(calls)
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    outputs: Dict[str, List[Any]] = {name: [] for name in names}
    for i, x in enumerate(inputs):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            begin = time.perf_counter()
            outputs[name].append(calls[name](x))
            if i >= warmup:
                seconds[name].append(time.perf_counter() - begin)
    return seconds, outputs


def read_questions(parser, path: pathlib.Path) -> List[str]:
    """The questions of `--questions` (a QA file in any format realm_tf.evaluation.qa_data
    reads), or parser.error() naming the file and what is wrong with it."""
    from realm_tf.evaluation.qa_data import QaDataError, read_qa

    try:
        return [example.question for example in read_qa(str(path))]
    except QaDataError as e:
        parser.error(f"--questions {e}")


def int_list(text: str) -> List[int]:
    """"1,2" -> [1, 2], as an argparse type (ArgumentTypeError naming the text)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def check_at_least(parser, args, least: Mapping[str, int]) -> None:
    """parser.error() naming the first option below its least value (e.g. {"steps": 1})."""
    for name, minimum in least.items():
        value = getattr(args, name)
        if value is not None and value < minimum:
            parser.error(f"--{name} must be at least {minimum}, got {value}")


def parse_names(text: str, known: Sequence[str], what: str) -> List[str]:
    """"a,b" -> ["a", "b"], every name one of `known`; ValueError naming the unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no {what} given; choose from {', '.join(known)}")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
    return names


def write_docs(workdir: pathlib.Path, num_docs: int = 0) -> Tuple[pathlib.Path, int]:
    """The first `num_docs` documents of the embedded corpus (0: all) in workdir/docs.jsonl;
    returns its path and how many documents it holds."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:num_docs or None]
    workdir.mkdir(parents=True, exist_ok=True)
    docs = workdir / "docs.jsonl"
    docs.write_text("".join(lines), encoding="utf-8")
    return docs, len(lines)


def prepare_pipeline(workdir: pathlib.Path, num_docs: int = 0, config: str = "tiny",
                     overrides: Sequence[str] = (), examples: bool = False) -> Dict[str, Any]:
    """A small real pipeline for timing: blocks, an embedder export, an index version, examples.

    The first `num_docs` documents of the embedded corpus (0: all 2,067) are chunked with
    beam_pipelines.chunk_corpus, embedded with an untrained embedder of the config's size
    (speed does not depend on what the weights learned) by beam_pipelines.embed_and_index,
    and, with `examples`, masked by beam_pipelines.make_pretraining_examples. A directory
    already prepared with the same arguments is reused; otherwise it is rebuilt.

    Returns:
      {"blocks_dir", "embedder_export", "index_root", "examples_dir" (None without
      `examples`), "num_blocks", "num_docs"}: paths as str.
    """
    from beam_pipelines import chunk_corpus, embed_and_index, make_pretraining_examples
    from realm_tf.configs import load_config
    from realm_tf.retrieval.embedder_export import export_embedder
    from realm_tf.features import Featurizer
    from realm_tf.modeling import Retriever

    if num_docs < 0:
        raise ValueError(f"num_docs must be 0 (all) or positive, got {num_docs}")
    workdir = pathlib.Path(workdir)
    wanted = {"num_docs": num_docs, "config": config, "overrides": list(overrides), "examples": examples}
    marker = workdir / PREPARED
    if marker.exists():
        prepared = json.loads(marker.read_text(encoding="utf-8"))
        if prepared.get("arguments") == wanted:
            print(f"reusing the pipeline prepared in {workdir}", flush=True)
            return prepared["paths"]
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    docs, written = write_docs(workdir, num_docs)
    experiment = load_config(config, overrides)
    blocks_dir = str(workdir / "blocks")
    manifest = chunk_corpus.chunk_corpus([str(docs)], blocks_dir, experiment)
    featurizer = Featurizer(experiment.features)
    retriever = Retriever(experiment.retriever)
    retriever.embed_blocks(featurizer.block_features([""], [""]))  # Creates the variables.
    embedder_export = str(workdir / "embedder")
    export_embedder(retriever, featurizer, embedder_export, step=0)
    index_root = str(workdir / "index")
    embed_and_index.embed_and_index(blocks_dir, embedder_export, index_root, experiment)
    examples_dir = None
    if examples:
        examples_dir = str(workdir / "examples")
        make_pretraining_examples.make_pretraining_examples(blocks_dir, examples_dir, experiment)
    paths = {"blocks_dir": blocks_dir, "embedder_export": embedder_export, "index_root": index_root,
             "examples_dir": examples_dir, "num_blocks": manifest.num_blocks, "num_docs": written}
    marker.write_text(json.dumps({"arguments": wanted, "paths": paths}, indent=2) + "\n", encoding="utf-8")
    print(f"pipeline prepared in {workdir} ({manifest.num_blocks} blocks) in {time.perf_counter() - started:.0f}s",
          flush=True)
    return paths

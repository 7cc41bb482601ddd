"""Examples/s and model-FLOPs utilisation of the REALM pre-training and fine-tuning steps, with and without the refresher.

    python -m benchmarks.training_throughput [--sizes tiny,small] [--tasks pretrain,finetune]
        [--warmup 2] [--steps 5] [--precision float32|mixed_bfloat16|mixed_float16]
        [--strategy default|mirrored] [--jit_compile] [--refresher both|off] [--workdir runs/bench/training]

Each (task, model size) is trained the way `python -m realm_tf.train` trains it: the task
(`PretrainTask`, `FinetuneTask`) with its real input pipeline (host-side retrieval from an
index version, packing, `tf.data` prefetch), the `Trainer`'s model, optimizer and train
step under the `--strategy`, and the task's `after_step` after every step. The data are
small but real: the first `--num_docs` documents of the embedded corpus chunked, embedded
with an untrained embedder into an index version, and masked into pre-training examples by
the project's Beam pipelines (`benchmarks.common.prepare_pipeline`); fine-tuning reads
qa_train. Speed does not depend on what the weights learned.

Model sizes (both towers and the reader): `tiny` is configs/tiny.yaml (2 layers, hidden
128, 2 heads, intermediate 512); `small` is 4 layers, hidden 256, 4 heads, intermediate
1024; `medium` 6 layers, hidden 512, 8 heads, intermediate 2048. Lengths are the tiny
config's (query 32, block 128, reader 160), batch 8, pre-training top_k 4, fine-tuning
top_k 5 and a beam of min(500, blocks).

Timing: `--warmup` steps first (tracing included) are not timed; then `--steps` steps per
phase, each timed as the wait for the next batch ("input") plus the step itself with its
metrics fetched to the host ("step") plus `after_step`. examples/s = batch x steps / the
phase's wall time; step examples/s leaves out the input wait.

The refresher (pre-training only; fine-tuning's index is fixed): phases without, with, and
again without `python -m beam_pipelines.refresh` running beside the trainer (started by
`beam_pipelines.refresh.start_background_refresher`, as `--refresh_in_background` does),
the two "without" phases pooled, so that a drift in the machine's load falls on both
sides. The refresher is kept busy, the worst case of REALM's asynchronous refresh: it is
handed a new embedder export (`PretrainTask.export_embedder`) as soon as it publishes an
index version, and the timed phase starts once it has published its first one (it is then
past its start-up). The exports are not timed (the trainer's schedule,
`pretrain.refresh_every_steps`, is set out of reach so that both phases do the same work);
the IndexWatcher's swapping in of new versions is, being part of the cost. The figure is
the ratio "with refresher / without" of examples/s.

MFU = (model FLOPs per step / step time) / peak, the peak being the dense matmul FLOP/s of
this machine measured in the same run: the best of several `tf.matmul`s of two n x n
matrices in the step's compute dtype (float32, bfloat16 or float16), timed before and after
the steps (other work on a shared machine may slow either). Model FLOPs are
counted analytically, matmuls only (layer norms, softmax, GELU, the optimizer update and
embedding lookups are left out, as is usual for MFU). For a BERT encoder of hidden size h,
intermediate size i and l layers over n sequences of length s:

    forward = l * n * (s * 2 * (4 h^2 + 2 h i)  +  2 * 2 * s^2 * h)
               (Q, K, V, output projections and the feed-forward; then Q K^T and attention x V)

plus, per sequence, the pooler (2 h^2) and the retrieval projection (2 h p) of an embedder.
Backward costs 2x forward for every trained part, and every part that runs in these steps
trains, so a step costs 3x forward. What runs (B questions, K candidates, M masked tokens;
Q, Lb, Lr the query, block and reader lengths; V the vocabulary; p the projection; C the
fine-tuning beam; S the span head width, W the longest span):

  pre-training (RealmPretrainer):
    query tower        encoder over B x Q, pooler, projection
    document tower     encoder over B*K x Lb, pooler, projection (the candidates are
                       re-embedded with the current weights: gradients reach both towers)
    retrieval scores   2 B K p
    reader             encoder over B*K x Lr
    masked-LM head     B*K*M positions x (2 h^2 + 2 h V)
  fine-tuning (OpenQaModel):
    query tower        encoder over B x Q, pooler, projection
    document tower     never runs: the candidates' embeddings come from the fixed index
    retrieval scores   2 B C p
    reader             encoder over B*K x Lr
    span head          B*K x (Lr x 2 h 2S  +  Lr x W x 2 S)

Host-side work in the loop but not in the step (and not counted): embedding the queries
for the search with the index's export (pre-training) or the host's copy of the query tower
(fine-tuning), the search, packing.

GPU: with a GPU visible the step runs there (`python -m benchmarks` then passes
`--precision mixed_float16`) and the peak is that GPU's float16 matmul FLOP/s. Writes
benchmarks/results/training_throughput.json.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import realm_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

from benchmarks import common

RESULTS = common.RESULTS_DIR / "training_throughput.json"
TASKS = ("pretrain", "finetune")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# (num_layers, hidden_size, num_attention_heads, intermediate_size) of both towers and the reader.
MODEL_SIZES = {
    "tiny": (2, 128, 2, 512),  # configs/tiny.yaml
    "small": (4, 256, 4, 1024),
    "medium": (6, 512, 8, 2048),
}
# The compute dtype of a precision policy: the dtype the peak matmul is measured in.
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
# Out of reach: the benchmark hands exports to the refresher itself (see the module docstring).
NEVER = 10**9


def size_overrides(size: str) -> List[str]:
    """Config overrides (KEY=VALUE) giving both towers and the reader the sizes of `size`."""
    layers, hidden, heads, intermediate = MODEL_SIZES[size]
    return [f"{part}.encoder.{key}={value}" for part in ("retriever", "reader")
            for key, value in (("num_layers", layers), ("hidden_size", hidden), ("num_attention_heads", heads),
                               ("intermediate_size", intermediate))]


# --- model FLOPs -----------------------------------------------------------------------

def encoder_forward_flops(bert, sequences: int, length: int) -> int:
    """Matmul FLOPs of a forward pass of a BERT encoder (`BertConfig`) over sequences x length tokens."""
    h, i = bert.hidden_size, bert.intermediate_size
    per_token = 2 * (4 * h * h + 2 * h * i)  # Q, K, V and output projections; the two feed-forward matmuls.
    attention = 2 * 2 * length * length * h  # Q K^T and attention x V, all heads together.
    return bert.num_layers * sequences * (length * per_token + attention)


def embedder_forward_flops(retriever, sequences: int, length: int) -> int:
    """An embedder tower (`RetrieverConfig`): encoder, pooler and retrieval projection."""
    h = retriever.encoder.hidden_size
    return encoder_forward_flops(retriever.encoder, sequences, length) + sequences * (
        2 * h * h + 2 * h * retriever.projection_size)


def step_flops(task: str, config, batch_size: int, beam_size: int = 0) -> Dict:
    """Model FLOPs of one training step (see the module docstring).

    Args:
      task: "pretrain" or "finetune".
      config: the `ExperimentConfig` trained.
      batch_size: B, the global batch.
      beam_size: C, fine-tuning's retriever beam (the task's `beam_size`).

    Returns:
      {"forward_by_part": {part: FLOPs}, "forward": sum, "train": 3 x forward (backward is
      2x forward and every part that runs trains)}.
    """
    f, r, reader = config.features, config.retriever, config.reader
    b, p = batch_size, r.projection_size
    parts = {"query_tower": embedder_forward_flops(r, b, f.query_length)}
    if task == "pretrain":
        k, m, h = config.pretrain.top_k, config.pretrain.max_masked_tokens, reader.encoder.hidden_size
        parts["document_tower"] = embedder_forward_flops(r, b * k, f.block_length)
        parts["retrieval_scores"] = 2 * b * k * p
        parts["reader"] = encoder_forward_flops(reader.encoder, b * k, f.reader_length)
        parts["masked_lm_head"] = b * k * m * (2 * h * h + 2 * h * reader.encoder.vocab_size)
    elif task == "finetune":
        k, h = config.finetune.top_k, reader.encoder.hidden_size
        s, w, length = reader.span_hidden_size, reader.max_span_length, f.reader_length
        parts["retrieval_scores"] = 2 * b * beam_size * p
        parts["reader"] = encoder_forward_flops(reader.encoder, b * k, length)
        parts["span_head"] = b * k * (length * 2 * h * 2 * s + length * w * 2 * s)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    forward = sum(parts.values())
    return {"forward_by_part": parts, "forward": forward, "train": 3 * forward}


def peak_matmul_flops(dtype: str, n: int = 0, min_seconds: float = 1.0) -> Dict:
    """This machine's dense matmul FLOP/s in `dtype`, on the device TensorFlow places matmuls on.

    Times `tf.matmul` of two n x n matrices (n: 8192 on a GPU, 2048 on a CPU when 0),
    the product reduced to a scalar fetched to the host so that the wall time covers the
    work, until `min_seconds` have passed and at least 3 timed calls; reports the best.

    Returns:
      {"dtype", "n", "calls", "flops_per_second"}.
    """
    import tensorflow as tf

    n = n or (8192 if tf.config.list_logical_devices("GPU") else 2048)
    a = tf.cast(tf.random.normal([n, n], seed=1), dtype)
    b = tf.cast(tf.random.normal([n, n], seed=2), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
    product(a, b).numpy()  # Traces, and warms up the kernels.
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 3 or spent < min_seconds:
        begin = time.perf_counter()
        product(a, b).numpy()
        seconds = time.perf_counter() - begin
        best, spent, calls = min(best, seconds), spent + seconds, calls + 1
    return {"dtype": dtype, "n": n, "calls": calls, "flops_per_second": round(2 * n ** 3 / best)}


# --- timing ----------------------------------------------------------------------------

class _Loop:
    """The Trainer's step loop, one step at a time, timed (see the module docstring).

    Args:
      trainer: a `Trainer` of the task (its model, optimizer and strategy).
      task: the task; its dataset is read from step 0 with seed 0.
      batch_size: the global batch.
    """

    def __init__(self, trainer, task, batch_size: int):
        self.trainer = trainer
        self.task = task
        self.train_step = trainer.build_train_step()  # The Trainer's own step (strategy.run, optimizer).
        dataset = task.build_train_dataset(batch_size, seed=0, start_step=trainer.step)
        self.iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
        self.after_step = getattr(task, "after_step", None)

    def step(self) -> Dict[str, float]:
        """One step; returns {"input", "step", "loop"} seconds."""
        begin = time.perf_counter()
        batch = next(self.iterator)
        fetched = time.perf_counter()
        metrics = {k: float(v) for k, v in self.train_step(batch).items()}  # float(): waits for the step.
        stepped = time.perf_counter()
        if self.after_step is not None:
            self.after_step(self.trainer, self.trainer.step, metrics)
        return {"input": fetched - begin, "step": stepped - fetched, "loop": time.perf_counter() - begin}


def _phase_figures(timings: List[Dict[str, float]], batch_size: int, train_flops: int) -> Dict:
    """examples/s, step examples/s, step time percentiles and model FLOP/s of timed steps (MFU: `_add_mfu`)."""
    loop = sum(t["loop"] for t in timings)
    step = sum(t["step"] for t in timings)
    flops_per_second = train_flops * len(timings) / step
    return {
        "steps": len(timings),
        "examples_per_second": round(batch_size * len(timings) / loop, 3),
        "step_examples_per_second": round(batch_size * len(timings) / step, 3),
        "step_seconds_p50": round(float(np.percentile([t["step"] for t in timings], 50)), 4),
        "input_wait_seconds_mean": round(float(np.mean([t["input"] for t in timings])), 4),
        "loop_seconds": round(loop, 3),
        "model_flops_per_second": round(flops_per_second),
    }


def _add_mfu(run: Dict, peak: float) -> None:
    """Adds MFU = model FLOP/s / `peak` to each phase of a run, and its with/without ratio."""
    for phase in ("without_refresher", "with_refresher"):
        if phase in run:
            run[phase]["mfu"] = round(run[phase]["model_flops_per_second"] / peak, 4)
    if "with_refresher" in run:
        run["with_over_without_refresher"]["mfu"] = common.ratio(run["with_refresher"]["mfu"],
                                                                 run["without_refresher"]["mfu"])


def _stop(process: subprocess.Popen) -> None:
    """Stops the refresher this benchmark started (its own child), waiting for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _with_refresher(loop: _Loop, task, args, config_overrides: List[str], paths: Dict, index_root: str,
                    model_dir: str) -> Dict:
    """Times `args.steps` steps with the refresher running and kept busy; returns their timings
    and what the refresher did."""
    from beam_pipelines.refresh import start_background_refresher
    from realm_tf.artifacts.index_version import latest_version
    from realm_tf.artifacts.model_dir import ModelDir

    log = ModelDir(model_dir).refresh_log
    process = start_background_refresher(model_dir, paths["blocks_dir"], index_root, args.config, config_overrides,
                                         log, poll_seconds=0.5)
    try:
        def check_alive():
            if process.poll() is not None:
                raise RuntimeError(f"the refresher exited with status {process.returncode}; its log, {log}:\n"
                                   + _log_tail(log))

        initial = latest_version(index_root)
        task.export_embedder(loop.trainer.model, loop.trainer.step)
        print(f"  refresher started (log {log}); waiting for its first index version", flush=True)
        started = time.monotonic()
        deadline = started + args.refresher_timeout
        while latest_version(index_root) == initial:
            check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the refresher published no index version within --refresher_timeout="
                                   f"{args.refresher_timeout}s; its log, {log}:\n" + _log_tail(log))
            time.sleep(0.5)
        seen = latest_version(index_root)
        first_version_seconds = round(time.monotonic() - started, 1)
        loop.step()  # Untimed: a new step number for the next export.
        task.export_embedder(loop.trainer.model, loop.trainer.step)
        timings, published, exports = [], 0, 1
        for _ in range(args.steps):
            timings.append(loop.step())
            check_alive()
            newest = latest_version(index_root)
            if newest != seen:  # Published: hand it the next export at once (untimed).
                seen, published = newest, published + 1
                exports += task.export_embedder(loop.trainer.model, loop.trainer.step) is not None
        return {"timings": timings, "index_versions_published": published, "exports_handed": exports,
                "alive_throughout": process.poll() is None, "first_version_seconds": first_version_seconds,
                "log": log}
    finally:
        _stop(process)


def measure(task_name: str, size: str, args, paths: Dict, strategy) -> Dict:
    """Builds the task and the Trainer for `size`, times the phases; returns the run's figures."""
    from realm_tf.configs import load_config
    from realm_tf.training.trainer import Trainer

    overrides = size_overrides(size) + [f"pretrain.refresh_every_steps={NEVER}",
                                        f"{task_name}.training.train_steps={NEVER}"]
    if args.batch_size:
        overrides.append(f"{task_name}.training.batch_size={args.batch_size}")
    config = load_config(args.config, overrides)
    model_dir = str(args.workdir / f"{task_name}-{size}-{args.precision}")
    shutil.rmtree(model_dir, ignore_errors=True)
    print(f"{task_name} {size}: building the task and the Trainer ({args.precision}, {args.strategy})", flush=True)
    index_root = paths["index_root"]
    if task_name == "pretrain":
        from realm_tf.tasks.pretrain import PretrainTask

        # A private copy: the refresher publishes into it and prunes old versions.
        index_root = os.path.join(model_dir, "index")
        shutil.copytree(paths["index_root"], index_root)
        task = PretrainTask(config, paths["examples_dir"], paths["blocks_dir"], index_root, model_dir,
                            poll_seconds=0.5)
        training = config.pretrain.training
    else:
        from realm_tf.tasks.finetune import FinetuneTask

        task = FinetuneTask(config, str(args.qa_train), paths["blocks_dir"], paths["index_root"])
        training = config.finetune.training
    try:
        trainer = Trainer(task, training, model_dir, strategy=strategy, seed=0, jit_compile=args.jit_compile)
        loop = _Loop(trainer, task, training.batch_size)
        started = time.perf_counter()
        for _ in range(args.warmup):
            loop.step()
        print(f"  {args.warmup} warm-up steps in {time.perf_counter() - started:.1f}s", flush=True)
        flops = step_flops(task_name, config, training.batch_size, getattr(task, "beam_size", 0))
        figures = lambda timings: _phase_figures(timings, training.batch_size, flops["train"])  # noqa: E731
        without = [loop.step() for _ in range(args.steps)]
        result = {
            "task": task_name, "model_size": size,
            "encoder": dict(zip(("num_layers", "hidden_size", "num_attention_heads", "intermediate_size"),
                                MODEL_SIZES[size])),
            "batch_size": training.batch_size, "warmup_steps": args.warmup, "timed_steps_per_phase": args.steps,
            "flops_per_step": flops,
        }
        if task_name == "pretrain" and args.refresher == "both":
            on = _with_refresher(loop, task, args, overrides, paths, index_root, model_dir)
            without += [loop.step() for _ in range(args.steps)]
            result["without_refresher"] = dict(figures(without), phases=2)
            result["with_refresher"] = dict(figures(on.pop("timings")), **on)
            result["with_over_without_refresher"] = {
                key: common.ratio(result["with_refresher"][key], result["without_refresher"][key])
                for key in ("examples_per_second", "step_examples_per_second")}
        else:
            result["without_refresher"] = dict(figures(without), phases=1)
            result["refresher"] = ("none in fine-tuning: the index is fixed" if task_name == "finetune"
                                   else "not measured (--refresher off)")
        w = result["without_refresher"]
        print(f"  without refresher: {w['examples_per_second']:.2f} examples/s, step {w['step_seconds_p50']:.3f}s, "
              f"{w['model_flops_per_second'] / 1e9:.1f} model GFLOP/s", flush=True)
        if "with_refresher" in result:
            r = result["with_refresher"]
            print(f"  with refresher:    {r['examples_per_second']:.2f} examples/s, "
                  f"{r['model_flops_per_second'] / 1e9:.1f} model GFLOP/s "
                  f"({r['index_versions_published']} index versions published while timed); ratio "
                  f"{result['with_over_without_refresher']['examples_per_second']:.3f}", flush=True)
        return result
    finally:
        if task_name == "pretrain":
            task.finish()


def build_arg_parser() -> argparse.ArgumentParser:
    from realm_tf.training.strategies import STRATEGIES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small", help=f"model sizes, of {', '.join(MODEL_SIZES)} "
                        "(default: %(default)s)")
    parser.add_argument("--tasks", default="pretrain,finetune", help="steps to time (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per phase (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=0, help="global batch (default: the config's, 8)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="Keras dtype policy of the models (default: %(default)s)")
    parser.add_argument("--strategy", choices=[s for s in STRATEGIES if s != "tpu"], default="default",
                        help="tf.distribute strategy, as realm_tf.train's (default: %(default)s)")
    parser.add_argument("--jit_compile", action="store_true", help="compile forward and backward with XLA")
    parser.add_argument("--refresher", choices=("both", "off"), default="both",
                        help="pre-training: time with and without the refresher, or without only")
    parser.add_argument("--refresher_timeout", type=float, default=300.0,
                        help="seconds to wait for the refresher's first index version (default: %(default)s)")
    parser.add_argument("--config", default="tiny", help="base config; --sizes override its encoders")
    parser.add_argument("--num_docs", type=int, default=300,
                        help="documents of the embedded corpus to chunk; 0: all (default: %(default)s)")
    parser.add_argument("--blocks_dir", help="use these blocks instead of preparing them (with --index_root)")
    parser.add_argument("--index_root", help="an index of --blocks_dir")
    parser.add_argument("--examples_dir", help="pre-training examples of --blocks_dir")
    parser.add_argument("--qa_train", type=pathlib.Path, default=common.QA_DIR / "qa_train.jsonl",
                        help="fine-tuning questions (default: the embedded qa_train)")
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/bench/training"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; returns the results written to --output."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    common.check_at_least(parser, args, {"warmup": 1, "steps": 1, "batch_size": 0, "num_docs": 0})
    try:
        sizes = common.parse_names(args.sizes, tuple(MODEL_SIZES), "model size")
        tasks = common.parse_names(args.tasks, TASKS, "task")
    except ValueError as e:
        parser.error(str(e))
    given = [flag for flag in ("blocks_dir", "index_root", "examples_dir") if getattr(args, flag)]
    needed = ["blocks_dir", "index_root"] + (["examples_dir"] if "pretrain" in tasks else [])
    if given and not set(needed) <= set(given):
        parser.error(f"with --{given[0]}, give also --{' --'.join(sorted(set(needed) - set(given)))}")
    if not args.qa_train.is_file() and "finetune" in tasks:
        parser.error(f"--qa_train {args.qa_train}: no such file")

    machine = common.machine_info()
    import tf_keras

    from realm_tf.training.strategies import build_strategy

    strategy = build_strategy(args.strategy)  # Before anything else touches the devices.
    args.workdir.mkdir(parents=True, exist_ok=True)
    if given:
        from realm_tf.artifacts.manifests import BlocksManifest

        paths = {"blocks_dir": args.blocks_dir, "index_root": args.index_root, "examples_dir": args.examples_dir,
                 "num_blocks": BlocksManifest.read(args.blocks_dir).num_blocks}
    else:
        paths = common.prepare_pipeline(args.workdir / "pipeline", args.num_docs, args.config, examples=True)
    gpus = common.gpu_names()
    # Measured before and after the steps, the best of both: other work on a shared machine
    # may slow one of them, and MFU's denominator is what the machine can do.
    peaks = [peak_matmul_flops(COMPUTE_DTYPES[args.precision])]
    print(f"peak dense matmul: {peaks[0]['flops_per_second'] / 1e9:.1f} GFLOP/s in {peaks[0]['dtype']} "
          f"(n={peaks[0]['n']}, on {gpus[0] if gpus else 'CPU'}); measured again at the end", flush=True)
    previous_policy = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(args.precision)
    runs = []
    try:
        for size in sizes:
            for task_name in tasks:
                runs.append(measure(task_name, size, args, paths, strategy))
    finally:
        tf_keras.mixed_precision.set_global_policy(previous_policy)
    peaks.append(peak_matmul_flops(COMPUTE_DTYPES[args.precision]))
    peak = dict(max(peaks, key=lambda p: p["flops_per_second"]),
                measured_flops_per_second=[p["flops_per_second"] for p in peaks])
    for run in runs:
        _add_mfu(run, peak["flops_per_second"])
        for phase in ("without_refresher", "with_refresher"):
            if phase in run:
                print(f"{run['task']} {run['model_size']} {phase.replace('_', ' ')}: "
                      f"{run[phase]['examples_per_second']:.2f} examples/s, MFU {run[phase]['mfu']:.3f}")
    results = {
        "benchmark": "training_throughput",
        "command": common.command_line("benchmarks.training_throughput", argv),
        "device": gpus[0] if gpus else "CPU",
        "precision": args.precision,
        "strategy": args.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "jit_compile": args.jit_compile,
        "config": args.config,
        "corpus": {"num_blocks": paths["num_blocks"], "blocks_dir": str(paths["blocks_dir"])},
        "peak_matmul": peak,
        "mfu_definition": "model FLOPs per step (matmuls, forward + backward = 3x forward) / step seconds / "
                          "peak_matmul.flops_per_second",
        "machine": machine,
        "runs": runs,
    }
    return common.write_results(args.output, results)


if __name__ == "__main__":
    main()
